"""Run the benchmarks: ``python -m benchmarks.run [--only NAME] [--quick]``.

Collects ``BENCHMARKS`` from every ``benchmarks/bench_*.py`` module, runs
them, prints a table and writes benchmarks/results.json. A benchmark that
raises becomes an error row; the run itself does not fail.
"""

from __future__ import annotations

import argparse
import contextlib
import importlib
import shutil
import sys
import tempfile
import time
import traceback
from collections.abc import Callable, Sequence
from pathlib import Path

from benchmarks.harness import (
    BENCH_DIR,
    RESULTS_PATH,
    Options,
    Row,
    prepare_interpreter,
    print_table,
)
from benchmarks.scratchfs import scratch_fs

Benchmark = Callable[[Options], list[Row]]


def discover() -> list[tuple[str, Benchmark]]:
    """(qualified name, callable) for every benchmark, in file then list order."""
    found = []
    for path in sorted(BENCH_DIR.glob("bench_*.py")):
        module = importlib.import_module(f"benchmarks.{path.stem}")
        for fn in getattr(module, "BENCHMARKS", []):
            found.append((f"{path.stem}.{fn.__name__}", fn))
    return found


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.run", description=__doc__)
    parser.add_argument(
        "--only",
        action="append",
        metavar="NAME",
        help="run benchmarks whose 'module.function' name contains NAME (repeatable)",
    )
    parser.add_argument(
        "--quick", action="store_true", help="one repetition, small trees (smoke test)"
    )
    parser.add_argument("--repeat", type=int, help="repetitions per measurement (default 3)")
    parser.add_argument("--list", action="store_true", help="list benchmarks and exit")
    parser.add_argument("--json", type=Path, default=RESULTS_PATH, help="results file")
    parser.add_argument(
        "--workdir", type=Path, help="scratch directory (default: a new temp dir, removed after)"
    )
    parser.add_argument(
        "--host-fs", action="store_true",
        help="measure on the workdir's own filesystem, not on a new ext4 (benchmarks/scratchfs.py)",
    )
    args = parser.parse_args(argv)

    benchmarks = discover()
    if args.only:
        benchmarks = [(n, fn) for n, fn in benchmarks if any(o in n for o in args.only)]
        if not benchmarks:
            parser.error(f"no benchmark matches {args.only}")
    if args.list:
        for name, fn in benchmarks:
            print(f"{name:40} {((fn.__doc__ or '').strip().splitlines() or [''])[0]}")
        return 0

    prepare_interpreter()
    repeat = args.repeat or (1 if args.quick else 3)
    workdir = args.workdir or Path(tempfile.mkdtemp(prefix="layerctl-bench-"))
    workdir.mkdir(parents=True, exist_ok=True)
    opts = Options(workdir=workdir, quick=args.quick, repeat=repeat)
    rows: list[Row] = []
    fs = (contextlib.nullcontext("scratch filesystem: the host's (--host-fs)")
          if args.host_fs else scratch_fs(workdir))
    where = ""
    try:
        with fs as where:
            print(where, file=sys.stderr, flush=True)
            _run_all(benchmarks, opts, rows)
    finally:
        if args.workdir is None:
            shutil.rmtree(workdir, ignore_errors=True)
    print()
    print(where)
    print_table(rows, args.json)
    return 0


def _run_all(benchmarks: list[tuple[str, Benchmark]], opts: Options,
             rows: list[Row]) -> None:
    for name, fn in benchmarks:
        print(f"running {name} ...", file=sys.stderr, flush=True)
        t0 = time.perf_counter()
        try:
            rows.extend(fn(opts))
        except Exception as e:  # a broken benchmark must not hide the others
            traceback.print_exc()
            rows.append(Row(name, None, "-", None, f"error: {type(e).__name__}: {e}"))
        print(f"  done in {time.perf_counter() - t0:.1f} s", file=sys.stderr, flush=True)


if __name__ == "__main__":
    sys.exit(main())
