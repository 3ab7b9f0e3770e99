"""OmniMamba: a faithful, fast reimplementation of hustvl/OmniMamba (arXiv 2503.08686)."""
from .config import OmniMambaConfig
from .model import InferenceState, OmniMamba
from .sampling import SamplingParams

__all__ = ["Engine", "InferenceState", "OmniMamba", "OmniMambaConfig", "SamplingParams", "from_pretrained"]


def __getattr__(name: str):
    # imported lazily: the model alone needs neither the serving stack nor the Hub client
    if name == "Engine":
        from .engine import Engine
        return Engine
    if name == "from_pretrained":
        from .hub import from_pretrained
        return from_pretrained
    raise AttributeError(name)
__version__ = "0.1.0"
