"""Trained models as DIR/model.safetensors: the official key layout plus the model config in the metadata.

The file holds every tensor of `OmniMamba.state_dict()` (vision towers and VQ included, so a folder is a
complete model) with the tied heads left out (safetensors stores no shared tensors; the loader re-ties them,
as checkpoint.py does for the released file). Metadata:
    omnimamba_config   the OmniMambaConfig as JSON (rebuilds non-official sizes, e.g. the tiny or shapes model)
    train_config       the TrainConfig that produced it (provenance)
    trained_keys       JSON list of the tensors this run trained (lets two stage-1 runs be merged exactly)
Reading is safetensors only (no pickle) and strict: every key of the model, nothing else.
"""
from __future__ import annotations

import json
import logging
import os
from pathlib import Path
from typing import Any

import torch
from torch import Tensor

from .. import checkpoint
from ..model import OmniMamba

log = logging.getLogger(__name__)

FILENAME = "model.safetensors"
CONFIG_KEY = checkpoint.TRAINED_CONFIG_KEY


config_to_json, config_from_json = checkpoint.config_to_json, checkpoint.config_from_json


def model_file(path: str | os.PathLike) -> Path:
    """DIR -> DIR/model.safetensors; a file stays itself."""
    path = Path(path).expanduser()
    return path / FILENAME if path.is_dir() else path


def is_trained_checkpoint(path: str | os.PathLike) -> bool:
    """True for a folder or .safetensors file written by `save` (it carries the model config)."""
    file = model_file(path)
    return file.suffix == ".safetensors" and file.is_file() and CONFIG_KEY in read_metadata(file)


def read_metadata(path: str | os.PathLike) -> dict[str, str]:
    from safetensors import safe_open

    with safe_open(str(model_file(path)), framework="pt") as f:
        return dict(f.metadata() or {})


def save(model: OmniMamba, path: str | os.PathLike, train_config: dict[str, Any] | None = None,
         trained_keys: list[str] | None = None) -> Path:
    """Write `model` to path (a folder gets model.safetensors); atomic. Returns the file written."""
    from safetensors.torch import save_file

    path = Path(path)
    out = path / FILENAME if path.suffix != ".safetensors" else path
    out.parent.mkdir(parents=True, exist_ok=True)
    sd = {k: v.detach().contiguous().cpu() for k, v in model.state_dict().items()
          if k not in checkpoint.TIED_KEYS}
    metadata = {CONFIG_KEY: config_to_json(model.config), "format": "omnimamba-trained-1",
                "train_config": json.dumps(train_config or {}, default=str),
                "trained_keys": json.dumps(trained_keys or [])}
    tmp = out.with_suffix(".tmp")
    save_file(sd, str(tmp), metadata=metadata)
    tmp.replace(out)  # an interrupted save never leaves half a file where a good one was
    return out


def read(path: str | os.PathLike, device: str | torch.device = "cpu") -> tuple[dict[str, Tensor], dict[str, str]]:
    """(state_dict, metadata) of a trained checkpoint; a clear error if it is not one."""
    from safetensors.torch import load_file

    file = model_file(path)
    if not file.is_file():
        raise FileNotFoundError(f"no trained checkpoint at {path} (expected a folder holding {FILENAME} or the file)")
    metadata = read_metadata(file)
    if CONFIG_KEY not in metadata:
        raise checkpoint.CheckpointError(f"{file} has no {CONFIG_KEY!r} metadata: it was not written by "
                                         f"omnimamba.train (load an official .pth with load_official_state_dict)")
    return load_file(str(file), device=str(device)), metadata


def load_trained(path: str | os.PathLike, device: str | torch.device | None = None,
                 dtype: torch.dtype | None = None) -> OmniMamba:
    """A trained folder/file -> a ready OmniMamba (eval mode) of the config stored in it. Strict: all keys."""
    device = torch.device(device or ("cuda" if torch.cuda.is_available() else "cpu"))
    dtype = dtype or (torch.bfloat16 if device.type == "cuda" else torch.float32)
    sd, metadata = read(path, device)
    with torch.device("meta"):
        model = OmniMamba(config_from_json(metadata[CONFIG_KEY]))
    model.to(dtype)  # free on meta: the dtype every loaded tensor is cast to
    checkpoint.load_into(model, sd)
    checkpoint.materialize(model, device)  # nothing should be left on meta; this only re-ties the heads
    return model.eval()


def trained_keys(path: str | os.PathLike) -> list[str]:
    return json.loads(read_metadata(path).get("trained_keys", "[]"))
