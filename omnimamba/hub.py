"""From a model id to a ready model: Hub assets, the shared cache, offline mode, one-time conversion.

The official model is spread over five files in four repositories (reference §2.9, §10). Each is fetched
alone (hustvl/OmniMamba also holds 2 GB of training JSON we never download), through the standard
Hugging Face cache (HF_HOME / HF_HUB_CACHE, HF_HUB_OFFLINE, HF_TOKEN, resumable downloads, progress bars).

The first load reads the pickles once (weights_only=True), checks every key, and writes one safetensors
file keyed by the identity of its sources; every later start memory-maps that file straight onto the
device into a model built on the meta device: no pickle, no random init of 2 B parameters.
"""
from __future__ import annotations

import hashlib
import json
import logging
import os
import re
import time
from dataclasses import dataclass, replace
from pathlib import Path

import torch
from huggingface_hub import constants, hf_hub_download
from huggingface_hub import errors as hub_errors

from . import checkpoint
from .checkpoint import config_from_json
from .config import OmniMambaConfig
from .model import OmniMamba
from .model.vision import create_tower
from .sampling import ImageDefaults

log = logging.getLogger(__name__)

CONVERTED_FORMAT = 1  # bump when the converted layout changes
# a file or repo the Hub says does not exist (the class name changed across huggingface_hub releases)
_MISSING_ON_HUB = (hub_errors.RepositoryNotFoundError, hub_errors.RevisionNotFoundError,
                   getattr(hub_errors, "RemoteEntryNotFoundError", hub_errors.EntryNotFoundError))


@dataclass(frozen=True)
class Asset:
    what: str
    repo_id: str
    filename: str
    revision: str = "main"

    def describe(self) -> str:
        return f"{self.what} ({self.repo_id}, file {self.filename}, revision {self.revision})"


ASSETS = {
    "omnimamba": Asset("OmniMamba weights", "hustvl/OmniMamba", "OmniMamba-1.3b.pth"),
    "vq": Asset("LlamaGen VQ-16 tokenizer", "peizesun/llamagen_t2i", "vq_ds16_t2i.pt"),
    "dino": Asset("DINOv2 tower", "timm/vit_large_patch14_reg4_dinov2.lvd142m", "model.safetensors"),
    "siglip": Asset("SigLIP tower", "timm/vit_so400m_patch14_siglip_384.webli", "model.safetensors"),
}
DEFAULT_MODEL = ASSETS["omnimamba"].repo_id


AUTO, SHAPES, TINY_RANDOM = "auto", "shapes", "tiny-random"  # model names besides Hub ids and paths
SHIPPED_SHAPES = Path(__file__).resolve().parent / "shapes" / "weights" / "model.safetensors"
CONFIG_KEY = checkpoint.TRAINED_CONFIG_KEY  # a packed checkpoint's metadata: the OmniMambaConfig as JSON
GET_OFFICIAL = ("To use the real OmniMamba-1.3B: run `python -m omnimamba download` once where the Hugging Face Hub "
                "is reachable (about 5 GB into its cache), then start again; or start with --model hustvl/OmniMamba.")


class AssetUnavailable(RuntimeError):
    """An asset is neither in the cache nor downloadable; the message says which and the ways out."""


@dataclass(frozen=True)
class ModelChoice:
    """What a model name resolves to: `model` is what `load_model` (and Engine.load) takes, `label` names it in
    the app and logs, `notice` says why it is not the official model and how to get that ("" when it is)."""
    model: str
    label: str
    notice: str = ""


def choose_model(name: str | None = AUTO, revision: str | None = None, cache_dir: str | os.PathLike | None = None
                 ) -> ModelChoice:
    """The one resolution of a model name for the app and every command. AUTO (or nothing): the official weights
    when all of them are in the local cache, else the small `shapes` model shipped in the package (no network, no
    wait); SHAPES: the shipped model; TINY_RANDOM: random tiny weights (tests); anything else: a Hub id or a path."""
    name = (name or AUTO).strip()
    if name == AUTO:
        if official_cached(revision, cache_dir):
            return ModelChoice(DEFAULT_MODEL, official_label(DEFAULT_MODEL, revision))
        if not SHIPPED_SHAPES.is_file():
            log.warning("the shipped shapes model is missing (%s); trying the official weights", SHIPPED_SHAPES)
            return ModelChoice(DEFAULT_MODEL, official_label(DEFAULT_MODEL, revision))
        return shapes_choice(f"The official weights are not in this machine's cache, so this is the small model "
                             f"trained on a world of coloured shapes that ships with the package. {GET_OFFICIAL}")
    if name == SHAPES:
        return shapes_choice(f"The small shapes model shipped with the package. {GET_OFFICIAL}")
    if name == TINY_RANDOM:
        return ModelChoice(TINY_RANDOM, "tiny-random (random weights: outputs are noise)",
                           "Random weights: the tiny test model, so answers and images are noise. Start without "
                           "--model tiny-random for a model that works.")
    return ModelChoice(name, model_label(name, revision))


def model_label(model: str, revision: str | None = None) -> str:
    """How the app and the log name a model loaded from `model`: a trained file or folder is not the release."""
    path = Path(model).expanduser()
    if is_packed(path) or (path.is_dir() and checkpoint.trained_model_file(path) is not None):
        return f"OmniMamba, a trained checkpoint ({model})"
    return official_label(model, revision)


def official_label(model: str, revision: str | None) -> str:
    return f"OmniMamba-1.3B ({model}{'@' + revision if revision else ''})"


def shapes_choice(notice: str) -> ModelChoice:
    if not SHIPPED_SHAPES.is_file():
        raise AssetUnavailable(f"the shapes model that ships with the package is missing: expected {SHIPPED_SHAPES}. "
                               "Reinstall omnimamba (or check out the repository with its weights), or use "
                               "--model hustvl/OmniMamba (the official weights) or --model tiny-random (random).")
    return ModelChoice(str(SHIPPED_SHAPES), "OmniMamba shapes (small model shipped with the package)", notice)


def official_cached(revision: str | None = None, cache_dir: str | os.PathLike | None = None) -> bool:
    """Every official file is in the local cache (checked without the network)."""
    try:
        for key, asset in ASSETS.items():
            fetch(replace(asset, revision=revision) if key == "omnimamba" and revision else asset, cache_dir,
                  offline=True)
    except AssetUnavailable:
        return False
    return True


def is_packed(path: Path) -> bool:
    """A single .safetensors file that carries its own config (the shipped model, a trained one)."""
    return path.suffix == ".safetensors" and checkpoint.trained_model_file(path) is not None


def default_cache_dir() -> Path:
    """Where converted checkpoints live: $OMNIMAMBA_CACHE, else $HF_HOME/omnimamba."""
    return Path(os.environ.get("OMNIMAMBA_CACHE") or Path(constants.HF_HOME) / "omnimamba")


def fetch(asset: Asset, cache_dir: str | os.PathLike | None = None, offline: bool | None = None,
          force: bool = False) -> Path:
    """Path of `asset` in the Hub cache, downloading it (resumable, with a progress bar) if needed."""
    offline = constants.HF_HUB_OFFLINE if offline is None else offline
    try:
        return Path(hf_hub_download(asset.repo_id, asset.filename, revision=asset.revision, cache_dir=cache_dir,
                                    local_files_only=offline, force_download=force))
    except hub_errors.LocalEntryNotFoundError as exc:
        raise _unavailable(asset, cache_dir, offline) from exc
    except _MISSING_ON_HUB as exc:
        raise AssetUnavailable(f"{asset.describe()} does not exist on the Hub ({type(exc).__name__}); "
                               f"check the id and the revision") from exc
    except OSError as exc:  # no network
        raise _unavailable(asset, cache_dir, offline) from exc


def _unavailable(asset: Asset, cache_dir: str | os.PathLike | None, offline: bool,
                 beside: Path | None = None) -> AssetUnavailable:
    """The message for a missing asset; `beside`: the folder of a local OmniMamba-1.3b.pth (its VQ may go there)."""
    where = cache_dir or constants.HF_HUB_CACHE
    why = "offline mode is on (HF_HUB_OFFLINE=1 or --offline)" if offline else "the Hub could not be reached"
    fill = (f"Where the Hub is reachable, `huggingface-cli download {asset.repo_id} {asset.filename}` (or "
            "`python -m omnimamba download`, every file) fills the cache; then offline works")
    if asset.filename == "OmniMamba-1.3b.pth":
        fill += ",\nor point at the local file: --model /path/to/OmniMamba-1.3b.pth (or a folder holding it)"
    elif asset.filename == "vq_ds16_t2i.pt":
        fill += (f",\nor copy {asset.filename} (it draws the images) into {beside}, beside the weights"
                 if beside else f",\nor copy {asset.filename} into the folder of OmniMamba-1.3b.pth and pass "
                                "that folder: --model /path/to/folder")
    return AssetUnavailable(f"{asset.describe()} is not in the Hugging Face cache ({where}) and {why}.\n{fill}.")


def resolve_sources(model: str = DEFAULT_MODEL, revision: str | None = None, cache_dir: str | os.PathLike | None = None,
                    offline: bool | None = None) -> dict[str, Path]:
    """Local paths of every weight file: `model` is a Hub id, a folder holding OmniMamba-1.3b.pth (and
    optionally vq_ds16_t2i.pt), or the .pth itself; the rest comes from the Hub cache."""
    local = Path(model).expanduser()
    sources: dict[str, Path] = {}  # (a trained folder/file never gets here: load_model reads it directly)
    folder = local.parent if local.is_file() else local if local.is_dir() else None
    if local.is_file():
        sources["omnimamba"] = local
    if folder is not None:  # the VQ may sit beside the weights
        for key in ("omnimamba", "vq"):
            if key not in sources and (folder / ASSETS[key].filename).is_file():
                sources[key] = folder / ASSETS[key].filename
        if "omnimamba" not in sources:
            raise AssetUnavailable(f"{local} holds no {ASSETS['omnimamba'].filename}")
    elif not re.fullmatch(r"[\w.-]+/[\w.-]+", model):
        raise AssetUnavailable(f"{model} is neither a file nor a folder, nor a Hub id (owner/name), nor one of "
                               f"{AUTO}, {SHAPES}, {TINY_RANDOM}")
    for key in ("omnimamba", "vq", "dino", "siglip"):
        if key not in sources:
            asset = ASSETS[key]
            if key == "omnimamba":
                asset = replace(asset, repo_id=model, revision=revision or asset.revision)
            try:
                sources[key] = fetch(asset, cache_dir, offline)
            except AssetUnavailable as exc:
                if folder is None or not isinstance(exc.__cause__, (hub_errors.LocalEntryNotFoundError, OSError)):
                    raise
                offline_now = constants.HF_HUB_OFFLINE if offline is None else offline
                raise _unavailable(asset, cache_dir, offline_now, folder) from exc.__cause__
    return sources


def _identity(path: Path) -> str:
    """Who a source file is: its resolved path (in the Hub cache, the blob named by its hash) and size."""
    real = path.resolve()
    stat = real.stat()
    return f"{real}:{stat.st_size}:{int(stat.st_mtime)}"


def converted_path(sources: dict[str, Path], config: OmniMambaConfig, cache_dir: Path | None = None) -> Path:
    key_text = json.dumps({"format": CONVERTED_FORMAT, "config": repr(config),
                           "sources": {k: _identity(v) for k, v in sorted(sources.items())}}, sort_keys=True)
    key = hashlib.sha256(key_text.encode()).hexdigest()[:24]
    return (cache_dir or default_cache_dir()) / "converted" / key / "model.safetensors"


def convert(sources: dict[str, Path], config: OmniMambaConfig, out: Path) -> dict[str, float]:
    """Read every source once, check it, write one safetensors file. Returns timings in seconds."""
    from safetensors.torch import save_file

    t0 = time.perf_counter()
    with torch.device("meta"):
        model = OmniMamba(config)
    main = checkpoint.read_state_dict(sources["omnimamba"])
    checkpoint.check_state_dict({k: v.shape for k, v in model.state_dict().items()}, main,
                                checkpoint.EXTERNAL_GROUPS)
    bad = sorted({str(v.dtype) for v in main.values() if not v.is_floating_point()})
    if bad:
        raise checkpoint.CheckpointError(f"{sources['omnimamba']} holds non-float tensors ({bad}); not an OmniMamba checkpoint")
    dtypes = sorted({str(v.dtype) for v in main.values()})
    if dtypes != ["torch.float16"]:
        log.warning("%s stores %s; the released checkpoint stores torch.float16", sources["omnimamba"], dtypes)
    vq = {f"llm_backbone.vqvae.{k}": v for k, v in checkpoint.read_state_dict(sources["vq"], key="model").items()}
    towers = {f"vision_backbone.{name}.{k}": v for name, key in (("dino_featurizer", "dino"),
                                                              ("siglip_featurizer", "siglip"))
              for k, v in _timm_tower_state(config, key, sources[key]).items()}
    full = {**main, **vq, **towers}
    for head in checkpoint.TIED_KEYS:  # safetensors stores no shared tensors; the loader re-ties them
        full.pop(head, None)
    checkpoint.check_state_dict({k: v.shape for k, v in model.state_dict().items()}, full)
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = out.with_suffix(".tmp")
    save_file({k: v.contiguous() for k, v in full.items()}, str(tmp),
              metadata={"format": str(CONVERTED_FORMAT), "sources": json.dumps({k: str(v) for k, v in sources.items()})})
    tmp.replace(out)  # atomic: an interrupted conversion never leaves a half file behind
    return {"convert_s": time.perf_counter() - t0}


def _timm_tower_state(config: OmniMambaConfig, key: str, path: Path) -> dict[str, torch.Tensor]:
    """A tower's weights exactly as timm's pretrained loading leaves them (its checkpoint filter resamples
    DINOv2's 37x37 position table to 27x27 with bicubic + antialias, as the official run got them)."""
    vcfg = config.vision
    name, overrides = ((vcfg.dino_model, vcfg.dino_overrides) if key == "dino"
                       else (vcfg.siglip_model, vcfg.siglip_overrides))
    tower = create_tower(name, vcfg.image_size, overrides, pretrained=True, pretrained_cfg_overlay={"file": str(path)})
    return tower.state_dict()


def load_model(model: str = DEFAULT_MODEL, revision: str | None = None, device: str | torch.device | None = None,
               dtype: torch.dtype | None = None, config: OmniMambaConfig | None = None,
               cache_dir: str | os.PathLike | None = None, offline: bool | None = None,
               converted_dir: Path | None = None) -> tuple[OmniMamba, dict]:
    """Ready model + a report {source paths, converted file, whether it was converted now, timings}.
    A folder or .safetensors written by `python -m omnimamba train` loads as it is (its config is inside)."""
    trained = checkpoint.trained_model_file(model)  # a packed file (the shipped model) or a trained folder
    if trained is not None:
        t0 = time.perf_counter()
        from safetensors import safe_open

        with safe_open(str(trained), framework="pt") as f:
            metadata = f.metadata()
        trained_config = config_from_json(metadata[CONFIG_KEY])
        device = torch.device(device or ("cuda" if torch.cuda.is_available() else "cpu"))
        net = _load_converted(trained, trained_config, device, dtype or (
            torch.bfloat16 if device.type == "cuda" else torch.float32))
        return net, {"sources": {"trained": str(trained)}, "converted": None, "converted_now": False,
                     "load_s": time.perf_counter() - t0, "image_defaults": image_defaults(metadata, trained)}
    config = config or OmniMambaConfig.official()
    device = torch.device(device or ("cuda" if torch.cuda.is_available() else "cpu"))
    dtype = dtype or (torch.bfloat16 if device.type == "cuda" else torch.float32)
    t0 = time.perf_counter()
    sources = resolve_sources(model, revision, cache_dir, offline)
    out = converted_path(sources, config, converted_dir)
    report: dict = {"sources": {k: str(v) for k, v in sources.items()}, "converted": str(out),
                    "converted_now": not out.is_file()}
    if report["converted_now"]:
        log.info("first load: converting %s into %s (once)", sources["omnimamba"], out)
        report.update(convert(sources, config, out))
    t1 = time.perf_counter()
    net = _load_converted(out, config, device, dtype)
    report.update(resolve_s=t1 - t0 - report.get("convert_s", 0.0), load_s=time.perf_counter() - t1)
    return net, report


def image_defaults(metadata: dict[str, str], path: Path) -> ImageDefaults:
    """The text-to-image settings a trained checkpoint suggests (the official ones when it names none)."""
    text = metadata.get(checkpoint.IMAGE_DEFAULTS_KEY)
    try:
        return ImageDefaults.from_json(text) if text is not None else ImageDefaults()
    except ValueError as exc:
        raise checkpoint.CheckpointError(f"{path}: {checkpoint.IMAGE_DEFAULTS_KEY} in the metadata: {exc}") from None


def from_pretrained(model: str = DEFAULT_MODEL, revision: str | None = None,
                    device: str | torch.device | None = None, dtype: torch.dtype | None = None,
                    **kwargs) -> OmniMamba:
    """The released model from the Hub (cached; converted to safetensors on first use), or from a local
    OmniMamba-1.3b.pth / folder. `kwargs` are `load_model`'s options (config, cache_dir, offline, ...)."""
    return load_model(model, revision, device, dtype, **kwargs)[0]


def _load_converted(path: Path, config: OmniMambaConfig, device: torch.device, dtype: torch.dtype) -> OmniMamba:
    from safetensors.torch import load_file

    with torch.device("meta"):
        model = OmniMamba(config)
    model.to(dtype)  # free on meta: sets the dtype every tensor lands in
    try:
        sd = load_file(str(path), device=str(device))  # memory-mapped, straight onto the device
    except Exception as exc:
        raise checkpoint.CheckpointError(f"the checkpoint {path} is unreadable ({type(exc).__name__}: {exc}); if it "
                                         "is a converted one, delete it and it is rebuilt from the downloads") from exc
    checkpoint.load_into(model, sd)
    checkpoint.materialize(model, device)
    return model.eval()


def download(revision: str | None = None, cache_dir: str | os.PathLike | None = None,
             convert_now: bool = True) -> list[tuple[str, Path, int]]:
    """Fetch every asset ahead of time (a Space build, an offline box); returns (what, path, bytes)."""
    rows = []
    for key, asset in ASSETS.items():
        if key == "omnimamba" and revision:
            asset = replace(asset, revision=revision)
        path = fetch(asset, cache_dir, offline=False)
        rows.append((asset.describe(), path, path.resolve().stat().st_size))
    if convert_now:
        sources = resolve_sources(DEFAULT_MODEL, revision, cache_dir, offline=True)
        out = converted_path(sources, OmniMambaConfig.official())
        if not out.is_file():
            convert(sources, OmniMambaConfig.official(), out)
        rows.append(("converted safetensors (fast start)", out, out.stat().st_size))
    return rows
