"""History editing (moving into a package: see sequencer.py for now)."""

from layerctl.rewrite.sequencer import *  # noqa: F403
from layerctl.rewrite.sequencer import _image_holding  # noqa: F401
