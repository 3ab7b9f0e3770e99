"""OmniMamba: a faithful, fast reimplementation of hustvl/OmniMamba (arXiv 2503.08686)."""
from .config import OmniMambaConfig
from .model import InferenceState, OmniMamba
from .sampling import SamplingParams

__all__ = ["Engine", "InferenceState", "OmniMamba", "OmniMambaConfig", "SamplingParams"]


def __getattr__(name: str):
    if name == "Engine":  # imported lazily: the model alone does not need the serving stack
        from .engine import Engine
        return Engine
    raise AttributeError(name)
__version__ = "0.1.0"
