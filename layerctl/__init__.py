"""layerctl: git for container filesystems."""

__version__ = "0.1.0"
