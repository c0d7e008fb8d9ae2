"""Re-export of :mod:`pathstats.stats`, the one statistics module (kept for code that imports it from here)."""

from pathstats.stats import *  # noqa: F401,F403 - a re-export, no second copy
from pathstats.stats import __all__  # noqa: F401
