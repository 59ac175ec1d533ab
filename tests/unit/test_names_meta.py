"""Property tests: name mangling and metadata records round-trip any input."""

from hypothesis import given
from hypothesis import strategies as st

from layerctl.store.meta import DIR, FILE, Meta, format_record, parse_record
from layerctl.store.names import escape, mangle, needs_mangling, unescape, unmangle

names = st.binary(min_size=1, max_size=40).filter(lambda b: b"/" not in b and b"\0" not in b)
special_names = st.sampled_from(
    [
        b".git",
        b".GIT",
        b".Git",
        b".gitmodules",
        b".gitattributes",
        b".",
        b"..",
        b"%",
        b"%41",
        b"git~1",
        b".wh.foo",
        b".wh..wh..opq",
        b"a\nb",
        b"\xff\xfe",
        b"\xe4\xb8\xad\xe6\x96\x87",
        b".\xe2\x80\x8cgit",
        b" ",
        b"-",
        b"=",
    ]
)


def git_rejects(name: bytes) -> bool:
    lowered = name.lower()
    return name in (b".", b"..") or lowered == b".git" or lowered.startswith(b".git")


@given(st.one_of(names, special_names))
def test_mangle_round_trips_and_is_git_safe(name):
    stored = mangle(name)
    assert unmangle(stored) == name
    assert b"/" not in stored and b"\0" not in stored
    assert not git_rejects(stored)
    assert stored != b"%"  # the record's reserved name
    if not needs_mangling(name):
        assert stored == name


def test_ordinary_names_are_stored_verbatim():
    for name in (b"etc", b"os-release", b"libc.so.6", "中文".encode(), b"a b"):
        assert mangle(name) == name


@given(st.binary(max_size=64))
def test_escape_round_trips_to_one_token(data):
    token = escape(data)
    assert " " not in token and "\n" not in token and "=" not in token
    assert unescape(token) == data


metas = st.builds(
    Meta,
    kind=st.sampled_from(["-", "l", "c", "b", "p", "s"]),
    mode=st.integers(0, 0o7777),
    uid=st.integers(0, 2**32 - 1),
    gid=st.integers(0, 2**32 - 1),
    mtime_ns=st.integers(-(2**62), 2**62),
    size=st.integers(0, 2**40),
    rdev=st.one_of(st.none(), st.tuples(st.integers(0, 4095), st.integers(0, 2**20))),
    xattrs=st.lists(
        st.tuples(st.binary(min_size=1, max_size=20), st.binary(max_size=40)),
        max_size=3,
        unique_by=lambda x: x[0],
    ).map(lambda x: tuple(sorted(x))),
    link=st.one_of(st.none(), st.binary(min_size=1, max_size=30)),
)


@given(st.dictionaries(names, metas, max_size=8), st.integers(0, 0o7777))
def test_record_round_trips(children, mode):
    children = {
        n: (m if m.kind == FILE else m.replace(size=0)) for n, m in children.items()
    }
    own = Meta(DIR, mode, 5, 6, 123)
    data = format_record(own, children)
    assert data.decode("ascii").count("\n") == len(children) + 1
    assert parse_record(data) == (own, children)
    assert format_record(own, dict(reversed(list(children.items())))) == data  # deterministic
