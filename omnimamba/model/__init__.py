"""The OmniMamba network: Mamba-2 backbone, vision towers, VQ codec, and the composite model."""
from .backbone import InferenceState, PositionLimitError
from .omnimamba import OmniMamba

__all__ = ["InferenceState", "OmniMamba", "PositionLimitError"]
