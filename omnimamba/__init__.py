"""OmniMamba: a faithful, fast reimplementation of hustvl/OmniMamba (arXiv 2503.08686)."""
from .config import OmniMambaConfig
from .model import InferenceState, OmniMamba

__all__ = ["InferenceState", "OmniMamba", "OmniMambaConfig"]
__version__ = "0.1.0"
