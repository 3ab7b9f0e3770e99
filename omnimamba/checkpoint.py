"""Official-layout state_dicts: read safely, check strictly, load into any dtype/device.

A checkpoint is untrusted input: pickles are read with `weights_only=True`, and nothing loads until every key
and shape has been checked. The only absences tolerated are whole groups that have their own checkpoints
(the timm vision towers, the LlamaGen VQ) and the tied head keys when their table is present.
"""
from __future__ import annotations

import logging
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Iterable, Mapping

import torch
from torch import Tensor, nn

from . import packed_rows

log = logging.getLogger(__name__)

StateDict = Mapping[str, Tensor]

# groups of the official model whose weights come from their own files, not from OmniMamba-1.3b.pth
EXTERNAL_GROUPS = {
    "vision_backbone.": "the timm DINOv2/SigLIP towers",
    "llm_backbone.vqvae.": "LlamaGen's vq_ds16_t2i.pt",
}
# head key -> the table it is tied to (both are written by torch.save of a tied model)
TIED_KEYS = {
    "llm_backbone.mamba.img_head.weight": "llm_backbone.mamba.backbone.img_embeddings.word_embeddings.weight",
    "llm_backbone.mamba.lm_head.weight": "llm_backbone.mamba.backbone.embedding.weight",
}


class CheckpointError(ValueError):
    """A checkpoint that does not fit the model; the message names the keys."""


@dataclass
class LoadReport:
    loaded: list[str] = field(default_factory=list)
    external_missing: dict[str, int] = field(default_factory=dict)  # group prefix -> keys left to its own loader

    def summary(self) -> str:
        left = ", ".join(f"{n} keys of {p}* ({EXTERNAL_GROUPS.get(p, 'own loader')})"
                         for p, n in self.external_missing.items())
        return f"loaded {len(self.loaded)} keys" + (f"; left for their own loaders: {left}" if left else "")


def read_state_dict(path: str | os.PathLike, key: str | None = None) -> dict[str, Tensor]:
    """Read a .safetensors file, or a torch pickle with weights_only=True (memory-mapped when possible).

    `key` unwraps a container such as LlamaGen's {"model": state_dict}.
    """
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"checkpoint not found: {path}")
    if path.stat().st_size == 0:
        raise CheckpointError(f"{path} is empty (0 bytes): an interrupted download or copy; delete it and fetch it "
                              "again")
    if path.suffix == ".safetensors":
        return read_safetensors(path)
    try:
        obj = _torch_load(path)
    except Exception as exc:
        hint = ("it is not a plain tensor checkpoint and will not be unpickled" if "weights_only" in str(exc).lower()
                else "it may be truncated or corrupt: delete it and download it again")
        raise CheckpointError(f"{path} could not be read as a PyTorch checkpoint "
                              f"({_first_line(exc)}); {hint}") from exc
    if key is not None:
        if not isinstance(obj, Mapping) or key not in obj:
            found = list(obj)[:5] if isinstance(obj, Mapping) else type(obj).__name__
            raise CheckpointError(f"{path}: expected a dict with key {key!r}, found {found}")
        obj = obj[key]
    if not isinstance(obj, Mapping) or not all(isinstance(v, Tensor) for v in obj.values()):
        raise CheckpointError(f"{path} does not hold a state_dict (a mapping of names to tensors)")
    return dict(obj)


def read_safetensors(path: str | os.PathLike, device: str = "cpu") -> dict[str, Tensor]:
    """A .safetensors file's tensors (memory-mapped); CheckpointError naming the file when it is unreadable."""
    from safetensors.torch import load_file

    try:
        return load_file(str(path), device=device)
    except Exception as exc:  # SafetensorError, OSError, a header that is not JSON, ...
        raise CheckpointError(f"{path} could not be read as a safetensors file ({_first_line(exc)}); it may be "
                              "truncated or corrupt: delete it and fetch it again") from exc


def _first_line(exc: BaseException) -> str:
    """'Type: first line of the message' (an exception may have an empty message)."""
    lines = str(exc).strip().splitlines()
    return type(exc).__name__ + (f": {lines[0][:200]}" if lines else "")


def _torch_load(path: Path) -> object:
    try:  # zip-format checkpoints (torch.save's default) can be memory-mapped: no 3 GB copy in RAM
        return torch.load(path, map_location="cpu", weights_only=True, mmap=True)
    except RuntimeError as exc:
        if "mmap" not in str(exc):
            raise
        return torch.load(path, map_location="cpu", weights_only=True)  # legacy (non-zip) format


def check_state_dict(expected: Mapping[str, torch.Size], sd: StateDict,
                     external_groups: Iterable[str] = ()) -> dict[str, int]:
    """Raise CheckpointError unless `sd` fits `expected` exactly, apart from whole `external_groups` and tied heads.

    Returns {group prefix: number of its keys absent from sd} for the tolerated groups.
    """
    external_groups = tuple(external_groups)
    missing = [k for k in expected if k not in sd]
    unexpected = [k for k in sd if k not in expected]
    wrong_shape = [f"{k}: checkpoint {list(sd[k].shape)} vs model {list(expected[k])}"
                   for k in expected if k in sd and tuple(sd[k].shape) != tuple(expected[k])]
    left: dict[str, int] = {}
    for group in external_groups:
        in_group = [k for k in expected if k.startswith(group)]
        absent = [k for k in in_group if k not in sd]
        if in_group and len(absent) == len(in_group):  # a whole group comes from its own file
            left[group] = len(absent)
            missing = [k for k in missing if not k.startswith(group)]
    missing = [k for k in missing if not (k in TIED_KEYS and TIED_KEYS[k] in sd)]
    if missing or unexpected or wrong_shape:
        raise CheckpointError(_mismatch_report(missing, unexpected, wrong_shape))
    return left


def _mismatch_report(missing: list[str], unexpected: list[str], wrong_shape: list[str], limit: int = 12) -> str:
    lines = ["checkpoint does not match the model (is it an OmniMamba-1.3B checkpoint for this config?):"]
    for title, items in (("missing", missing), ("unexpected", unexpected), ("wrong shape", wrong_shape)):
        if items:
            shown = "\n    ".join(items[:limit])
            more = f"\n    ... and {len(items) - limit} more" if len(items) > limit else ""
            lines.append(f"  {title} ({len(items)}):\n    {shown}{more}")
    return "\n".join(lines)


def _resolve_ties(sd: StateDict) -> dict[str, Tensor]:
    """Drop tied head keys; if a stored head differs from its table, the head wins (as in the official load)."""
    out = dict(sd)
    for head, table in TIED_KEYS.items():
        if head in out and table in out:
            head_value = out.pop(head)
            if head_value.data_ptr() != out[table].data_ptr() and not torch.equal(head_value, out[table]):
                log.warning("%s differs from its tied table %s; using the head's values for both", head, table)
                out[table] = head_value
        elif head in out:
            out[table] = out.pop(head)
    return out


@torch.no_grad()
def load_into(module: nn.Module, sd: StateDict, external_groups: Iterable[str] = (), prefix: str = "") -> LoadReport:
    """Check `sd` strictly against `module` (keys relative to `prefix`), then copy it in.

    Values are cast to each target's dtype and device. Parameters on the meta device are replaced by new
    tensors on `sd`'s device (a model built on meta loads without ever allocating random weights).
    """
    expected = {prefix + k: v.shape for k, v in module.state_dict(keep_vars=True).items()}
    try:
        sd = packed_rows.unpack(sd, expected)  # a table stored with its shared row once (the shapes model)
    except packed_rows.PackedRowsError as exc:
        raise CheckpointError(str(exc)) from exc
    external = check_state_dict(expected, sd, external_groups)
    targets = dict(module.named_parameters(remove_duplicate=False)) | dict(module.named_buffers())
    _check_kinds(targets, sd, prefix)
    resolved = _resolve_ties(sd)
    for key, value in resolved.items():
        name = key[len(prefix):]
        _set_tensor(module, name, targets[name], value)
    _retie(module)
    return LoadReport(loaded=sorted(sd), external_missing=external)


def _check_kinds(targets: Mapping[str, Tensor], sd: StateDict, prefix: str) -> None:
    """Refuse integer or boolean values for float weights: a cast would load them silently (and wrongly)."""
    wrong = [f"{key}: {value.dtype} for a {targets[key[len(prefix):]].dtype} weight" for key, value in sd.items()
             if key[len(prefix):] in targets and targets[key[len(prefix):]].is_floating_point()
             and not value.is_floating_point()]
    if wrong:
        more = f" and {len(wrong) - 5} more" if len(wrong) > 5 else ""
        raise CheckpointError("checkpoint holds non-float tensors where the model has float weights (not an "
                              f"OmniMamba checkpoint?): {'; '.join(wrong[:5])}{more}")


def _set_tensor(module: nn.Module, name: str, target: Tensor, value: Tensor) -> None:
    if target.is_meta:
        owner_name, _, attr = name.rpartition(".")
        owner = module.get_submodule(owner_name)
        new = value.to(target.dtype)
        if attr in owner._parameters:
            owner._parameters[attr] = nn.Parameter(new, requires_grad=target.requires_grad)
        else:
            owner._buffers[attr] = new
    else:
        target.copy_(value)


def _retie(module: nn.Module) -> None:
    for sub in module.modules():
        if hasattr(sub, "tie_weights"):
            sub.tie_weights()


def materialize(module: nn.Module, device: torch.device | str = "cpu") -> None:
    """Give any tensor still on the meta device real (uninitialised) storage, e.g. unused buffers."""
    for sub in module.modules():
        for registry in (sub._parameters, sub._buffers):
            for name, t in registry.items():
                if t is not None and t.is_meta:
                    new = torch.zeros(t.shape, dtype=t.dtype, device=device)
                    registry[name] = nn.Parameter(new, requires_grad=t.requires_grad) if isinstance(
                        t, nn.Parameter) else new
    _retie(module)


# ----- trained checkpoints (written by omnimamba.train): one model.safetensors with the config in its metadata
TRAINED_CONFIG_KEY = "omnimamba_config"
IMAGE_DEFAULTS_KEY = "omnimamba_image_defaults"  # optional: sampling.ImageDefaults as JSON


def config_to_json(config) -> str:
    import dataclasses
    import json

    return json.dumps(dataclasses.asdict(config), sort_keys=True)


def config_from_json(text: str):
    """Inverse of config_to_json (JSON lists back to the dataclasses' tuples)."""
    import json

    from .config import OmniMambaConfig, VisionConfig, VQConfig

    try:
        data = json.loads(text)
        vision = {k: tuple(v) if isinstance(v, list) else v for k, v in data.pop("vision").items()}
        vq = {k: tuple(v) if isinstance(v, list) else v for k, v in data.pop("vq").items()}
        return OmniMambaConfig(**data, vision=VisionConfig(**vision), vq=VQConfig(**vq))
    except (ValueError, TypeError, KeyError, AttributeError) as exc:  # JSONDecodeError is a ValueError
        raise CheckpointError(f"its omnimamba_config metadata is not an OmniMambaConfig ({type(exc).__name__}: "
                              f"{exc}); the file is damaged or was written by another program") from exc


def trained_model_file(path: str | os.PathLike) -> Path | None:
    """DIR/model.safetensors or the file itself, when it carries a model config (a trained checkpoint)."""
    from safetensors import safe_open

    path = Path(path).expanduser()
    file = path / "model.safetensors" if path.is_dir() else path
    if file.suffix != ".safetensors" or not file.is_file():
        return None
    try:
        with safe_open(str(file), framework="pt") as f:
            return file if TRAINED_CONFIG_KEY in (f.metadata() or {}) else None
    except Exception as exc:  # SafetensorError (no common base class to name), OSError
        raise CheckpointError(f"{file} could not be read as a safetensors file ({type(exc).__name__}: {exc}); "
                              f"it may be truncated or corrupt") from exc
