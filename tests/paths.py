"""Where the checkout is, for tests that run `python -m layerctl` or read the package's files."""

from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parent.parent
