"""`python -m omnimamba train --preset shapes`: the small shapes model, every part trained here, on one GPU.

Steps (each writes its own folder under OUT and is skipped when that folder is complete, so a run can be
continued; docs/shapes-model.md gives the numbers):
  pretrain      the VQ (LlamaGen VQ-16 design) and the two towers (timm DINOv2-reg / SigLIP classes), pretrain.py
  init          a training-initialised OmniMamba holding those weights              -> OUT/init
  t2i corpus    t2i_corpus scenes rendered and VQ-encoded once                      -> OUT/t2i-corpus
  stage0-text   the backbone as a plain language model on the world's text          -> OUT/stage0-text
  stage1-mmu    paper stage 1, image chat: projector + MMU LoRA (+ MMU positions)   -> OUT/stage1-mmu
  stage1-t2i    paper stage 1, text to image: T2I LoRA + image table/head, project_in, caption MLP, positions
  stage2        paper stage 2: both stage-1 runs merged, everything but the towers and the VQ trained, the two
                losses summed                                                        -> OUT/stage2
  ship          stage 2 in bf16 with the config in the metadata                     -> OUT/model.safetensors
The two stage-1 runs start from stage 0 independently and touch disjoint tensors (the decoupled recipe).
"""
from __future__ import annotations

import dataclasses
import hashlib
import json
import logging
import shutil
import time
from dataclasses import dataclass
from pathlib import Path

import torch
from safetensors.torch import load_file, save_file

from .. import packed_rows
from ..checkpoint import IMAGE_DEFAULTS_KEY, TIED_KEYS
from ..config import OmniMambaConfig
from ..sampling import ImageDefaults
from ..tokenizer import OmniTokenizer
from ..train import checkpoints
from ..train.config import STAGE1_MMU, STAGE1_T2I, STAGE2, TrainConfig
from ..train.data import register_source
from .grid_positions import MMU_AMPLITUDE, write_grid_positions_
from .pretrain import train_towers, train_vq, vq_quality
from .records import WHERE_MIX
from .sources import WorldRecords, encode_t2i_corpus
from .vocab import share_unused_rows_, world_token_ids

log = logging.getLogger(__name__)
SOURCE = "shapes"  # the TrainConfig data name of the world's records
DONE = "done.json"  # written when a step has finished
TEXT_STAGE = ("blocks", "norm_f", "text_embedding")  # stage 0: the backbone as a plain Mamba-2 LM
SHARD_SIZE = 16_384  # T2I corpus rows per shard: few enough shards that a reader keeps them all open
TEXT_TABLE = TIED_KEYS["llm_backbone.mamba.lm_head.weight"]  # the tied text table, packed in the shipped file
# rows this close to the shared one are stored as it: equal rows get equal updates, but not always bit for bit
SHARED_ROW_ATOL = 1e-3
# the frozen parts an earlier run can lend (`--pretrained-from`): pre-step file name -> key prefix in a model file
PRETRAINED_PARTS = {"vq": "llm_backbone.vqvae.", "dino": "vision_backbone.dino_featurizer.",
                    "siglip": "vision_backbone.siglip_featurizer."}
STAGES = ("stage0-text", "stage1-mmu", "stage1-t2i", "stage2")
# what the shipped file suggests for text to image (docs/shapes-model.md, Quality): full sampling with guidance;
# greedy decoding draws the background alone
IMAGE_DEFAULTS = ImageDefaults(temperature=1.0, top_k=0, top_p=0.0, guidance_scale=3.0)


@dataclass(frozen=True)
class ShapesRecipe:
    """The defaults are the shipped (sixth) run's settings (docs/shapes-model.md)."""
    seed: int = 0
    vq_seconds: float = 150.0  # the pre-steps stop at a time budget (the second run's, whose VQ and towers ship)
    tower_seconds: float = 60.0
    # the towers also trained on where things are (patch row/column, clear extremes): the third run did, and its
    # image chat got worse than the second run's without them; off by default (docs/shapes-model.md)
    tower_where: bool = False
    vq_batch: int = 64
    tower_batch: int = 128
    t2i_corpus: int = 120_000  # text-to-image scenes rendered and VQ-encoded once
    chat_records: int = 4_000_000  # image chats and text are made on demand: this only bounds the index space
    steps: tuple[int, int, int, int] = (200, 400, 600, 5000)  # stage0, stage1-mmu, stage1-t2i, stage2
    # text, stage-1 chats, images, stage-2 chats: large, since a step of a model this small is bound by kernel
    # launches, not arithmetic, on a big GPU (four times the first run's batches cost about the same step time;
    # the fifth run's 1.5x images and chats: 0.144 s a step, the fourth run's batches 0.116 s)
    batch: tuple[int, int, int, int] = (128, 64, 384, 96)
    lr: tuple[float, float, float, float] = (2e-3, 1.5e-3, 1.5e-3, 1e-3)  # peaks: larger than the 1.3B presets
    num_workers: int = 14
    cpu: bool = False
    tokenizer: str | None = None  # tokenizer.json (default: the GPT-NeoX-20B file shipped in the package)
    pretrained_from: str | None = None  # an earlier shapes model whose VQ and towers this run reuses (provenance)
    # image chats also ask where a named shape is (records.WHERE_MIX): for the relation answers (the fifth run)
    where_questions: bool = True
    # the image rows of both position tables start as a 2-D sin-cos grid (grid_positions.py; the fifth run)
    grid_positions: bool = True
    # the chat grid's amplitude (grid_positions.MMU_AMPLITUDE; the fifth run had 0.05, drowned by the features)
    mmu_grid_amplitude: float = MMU_AMPLITUDE

    @property
    def chat_mix(self) -> dict[str, float] | None:
        return WHERE_MIX if self.where_questions else None

    def stages(self) -> list[tuple[str, TrainConfig]]:
        """(folder, config) of the four training stages, in order."""
        s0, s1m, s1t, s2 = self.steps
        b_text, b_mmu, b_t2i, b_mmu2 = self.batch
        lr0, lr1m, lr1t, lr2 = self.lr
        common = dict(model="shapes", seed=self.seed, tokenizer=self.tokenizer, num_workers=self.num_workers,
                      cpu=self.cpu, lora_dropout=0.0, mixed_precision="no" if self.cpu else "bf16", save_every=250,
                      log_every=10)
        data = {"mmu": SOURCE, "t2i": SOURCE, "text": SOURCE}
        return [
            ("stage0-text", TrainConfig("shapes-stage0-text", {"text": b_text}, TEXT_STAGE, init=("init",), lr=lr0,
                                        warmup_steps=50, steps=s0, data={"text": SOURCE}, **common)),
            ("stage1-mmu", TrainConfig("shapes-stage1-mmu", {"mmu": b_mmu}, STAGE1_MMU, init=("stage0-text",), lr=lr1m,
                                       warmup_steps=100, steps=s1m, data={"mmu": SOURCE}, **common)),
            ("stage1-t2i", TrainConfig("shapes-stage1-t2i", {"t2i": b_t2i}, STAGE1_T2I, init=("stage0-text",),
                                       lr=lr1t, warmup_steps=100, steps=s1t, data={"t2i": SOURCE}, **common)),
            ("stage2", TrainConfig("shapes-stage2", {"mmu": b_mmu2, "t2i": b_t2i}, STAGE2,
                                   init=("stage1-mmu", "stage1-t2i"), lr=lr2, warmup_steps=100, steps=s2,
                                   data=data, **common)),
        ]


def run(recipe: ShapesRecipe, out: str | Path, max_steps: int | None = None, until: str | None = None,
        time_limit: float | None = None) -> Path | None:
    """All steps into `out`; returns the shipped file. `max_steps` caps every stage (smoke runs); `until` stops
    after that stage and returns its folder; `time_limit` (seconds) saves the stage in progress and returns None
    once it has passed (a run split across sessions of limited length: run the same command again)."""
    deadline = None if time_limit is None else time.monotonic() + time_limit
    if until is not None and until not in STAGES:
        raise ValueError(f"until must be one of {STAGES}, not {until!r}")
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    device = torch.device("cpu" if recipe.cpu or not torch.cuda.is_available() else "cuda")
    config = OmniMambaConfig.shapes()
    timings: dict[str, float] = {}
    with _timed(timings, "pretrain"):
        pretrained = pretrain(recipe, config, out / "pretrain", device)
    with _timed(timings, "init"):
        build_init(config, pretrained, out / "init", recipe)
    with _timed(timings, "t2i_corpus"):
        register_world(recipe, config, pretrained["vq"], device, out / "t2i-corpus")
    from ..train.loop import latest_checkpoint, train

    for folder, cfg in recipe.stages():
        if _complete(out / folder):
            log.info("%s: done already, skipped", folder)
            continue
        cfg = cfg.replace(init=tuple(str(out / name) for name in cfg.init))
        if deadline is not None and time.monotonic() >= deadline:
            log.info("out of time before %s; run the same command again to continue", folder)
            return None
        with _timed(timings, folder):
            # a stage cut short (a time cap) continues from its last save, with the same data position
            train(cfg, out / folder, max_steps=max_steps, resume=latest_checkpoint(out / folder) is not None,
                  deadline=deadline)
        end = min(cfg.steps, max_steps if max_steps is not None else cfg.steps)
        if latest_checkpoint(out / folder) != out / folder / "checkpoints" / f"step_{end}":
            log.info("%s stopped by the time limit; run the same command again to continue", folder)
            return None
        (out / folder / DONE).write_text(json.dumps({"seconds": timings[folder]}))
        if folder == until:
            return out / folder
    shipped = ship(out / "stage2", out / "model.safetensors", recipe)
    (out / "timings.json").write_text(json.dumps(timings, indent=2))
    log.info("shapes model: %s (%.1f MB); seconds per step %s", shipped, shipped.stat().st_size / 1e6, timings)
    return shipped


def pretrain(recipe: ShapesRecipe, config: OmniMambaConfig, folder: Path, device: torch.device) -> dict:
    """{"vq": sd, "dino": sd, "siglip": sd}: each part read from `folder` when there, else trained and written."""
    folder.mkdir(parents=True, exist_ok=True)
    if recipe.pretrained_from and not all((folder / f"{n}.safetensors").is_file() for n in PRETRAINED_PARTS):
        reuse_pretrained(recipe.pretrained_from, folder)
    have = {n: load_file(str(folder / f"{n}.safetensors")) for n in ("vq", "dino", "siglip")
            if (folder / f"{n}.safetensors").is_file()}
    if "vq" not in have:
        have["vq"] = train_vq(config, 40_000, recipe.vq_batch, device, log.info, seconds=recipe.vq_seconds,
                              seed=recipe.seed)
        quality = vq_quality(config, have["vq"], 200, seed=recipe.seed + 1000, device=device)
        (folder / "quality.json").write_text(json.dumps({"vq": quality}, indent=2))
        log.info("VQ round trips: %s", quality)
        _save(have["vq"], folder / "vq.safetensors")
    if "dino" not in have or "siglip" not in have:
        probes: dict = {}
        have["dino"], have["siglip"] = train_towers(config, 10_000, recipe.tower_batch, device, log.info,
                                                    seconds=recipe.tower_seconds, seed=recipe.seed, report=probes,
                                                    shape_where=recipe.tower_where)
        log.info("tower probes on fresh scenes: %s", probes)
        quality = json.loads((folder / "quality.json").read_text()) if (folder / "quality.json").is_file() else {}
        (folder / "quality.json").write_text(json.dumps({**quality, "towers": probes}, indent=2))
        _save(have["dino"], folder / "dino.safetensors")
        _save(have["siglip"], folder / "siglip.safetensors")
    return have


def reuse_pretrained(model_file: str | Path, folder: Path) -> None:
    """Write the VQ and towers of an earlier shapes model (a trained file) as this run's pre-steps: they are
    frozen from stage 0 on, so a new backbone can be trained on them without training them again."""
    sd, _ = checkpoints.read(model_file)
    folder.mkdir(parents=True, exist_ok=True)
    for part, prefix in PRETRAINED_PARTS.items():
        tensors = {k[len(prefix):]: v.float() for k, v in sd.items() if k.startswith(prefix)}
        if not tensors:
            raise ValueError(f"{model_file} holds no {prefix}* tensors: not a shapes model file")
        _save(tensors, folder / f"{part}.safetensors")
    (folder / "quality.json").write_text(json.dumps({"reused_from": str(model_file)}))


def _save(sd: dict, path: Path) -> None:
    save_file({k: v.contiguous().cpu() for k, v in sd.items()}, str(path))


@torch.no_grad()
def build_init(config: OmniMambaConfig, pretrained: dict, folder: Path, recipe: ShapesRecipe) -> None:
    """The starting point of stage 0: the training init, with the pretrained VQ and towers in place."""
    if _complete(folder):
        return
    from ..train.setup import training_init_
    from ..model import OmniMamba

    model = training_init_(OmniMamba(config), recipe.seed)
    if recipe.grid_positions:
        write_grid_positions_(model, config, mmu_amplitude=recipe.mmu_grid_amplitude)
    # the world's ~100 text ids keep their random rows; the other ~50k share one, so the shipped file stores it once
    used = world_token_ids(config, OmniTokenizer.from_file(recipe.tokenizer), recipe.seed, chat_mix=recipe.chat_mix)
    shared = share_unused_rows_(model.backbone.embedding.weight, used)
    log.info("text table: %d rows the world uses, %d sharing one value", len(used), shared)
    model.vq.load_state_dict(pretrained["vq"], strict=True)
    model.vision_backbone.dino_featurizer.load_state_dict(pretrained["dino"], strict=True)
    model.vision_backbone.siglip_featurizer.load_state_dict(pretrained["siglip"], strict=True)
    checkpoints.save(model, folder, {"stage": "shapes-init"})
    (folder / DONE).write_text("{}")


def register_world(recipe: ShapesRecipe, config: OmniMambaConfig, vq_sd: dict, device: torch.device,
                   corpus_folder: Path) -> None:
    """Make the world's records the training data named SOURCE: chats and text on demand, T2I encoded once
    (kept in `corpus_folder` as a prepared folder; encoded again when the recipe asks for another corpus or the VQ
    is another one)."""
    from ..model.vq import VQModel
    from ..train.prepare import INDEX, CodeShards, write_prepared

    made_for = json.dumps({"t2i_corpus": recipe.t2i_corpus, "seed": recipe.seed, "vq": _fingerprint(vq_sd)})
    corpus = CodeShards(corpus_folder, config) if (corpus_folder / INDEX).is_file() else None
    if corpus is None or corpus.fingerprint != made_for:
        vq = VQModel(config.vq)
        vq.load_state_dict(vq_sd, strict=True)
        records = encode_t2i_corpus(vq, recipe.t2i_corpus, recipe.seed, device, num_workers=recipe.num_workers)
        shutil.rmtree(corpus_folder, ignore_errors=True)  # an earlier corpus may have had more shards
        write_prepared(corpus_folder, torch.tensor([list(r.codes) for r in records]), [r.caption for r in records],
                       made_for, config, source=f"shapes world, seed {recipe.seed}",
                       shard_size=SHARD_SIZE)
        corpus = CodeShards(corpus_folder, config)
    sources = {"t2i": corpus,
               "mmu": WorldRecords("mmu", recipe.chat_records, recipe.seed, config, recipe.chat_mix),
               "text": WorldRecords("text", recipe.chat_records, recipe.seed, config)}
    register_source(SOURCE, lambda task, _config: sources[task])


def _fingerprint(sd: dict[str, torch.Tensor]) -> str:
    """A digest of a state_dict's values (which VQ encoded a corpus)."""
    digest = hashlib.sha256()
    for key in sorted(sd):
        digest.update(key.encode())
        digest.update(sd[key].detach().float().cpu().contiguous().numpy().tobytes())
    return digest.hexdigest()[:16]


def ship(stage_dir: Path, out_file: Path, recipe: ShapesRecipe) -> Path:
    """The last stage's weights in bf16 (the shipped file), its config and recipe in the metadata."""
    sd, metadata = checkpoints.read(stage_dir)
    sd = {k: v.to(torch.bfloat16).contiguous() for k, v in sd.items()}
    kept = packed_rows.pack_into(sd, TEXT_TABLE, atol=SHARED_ROW_ATOL)
    log.info("text table stored as %d kept rows and the shared one", kept)
    metadata = {**metadata, "recipe": json.dumps(dataclasses.asdict(recipe)), "format": "omnimamba-trained-1",
                IMAGE_DEFAULTS_KEY: json.dumps(dataclasses.asdict(IMAGE_DEFAULTS))}
    save_file(sd, str(out_file), metadata=metadata)
    return out_file


def _complete(folder: Path) -> bool:
    return (folder / DONE).is_file()  # model.safetensors alone may be a mid-run save


class _timed:
    def __init__(self, timings: dict[str, float], name: str):
        self.timings, self.name = timings, name

    def __enter__(self) -> None:
        self.start = time.monotonic()

    def __exit__(self, *exc) -> None:
        self.timings[self.name] = round(time.monotonic() - self.start, 1)


def main(argv: list[str] | None = None) -> None:
    """`python -m omnimamba.shapes.recipe --out DIR [--steps S0,S1M,S1T,S2] [...]` (also `train --preset shapes`)."""
    import argparse

    defaults = ShapesRecipe()
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--out", default="runs/shapes", help="run folder; finished steps in it are skipped")
    p.add_argument("--steps", default=",".join(map(str, defaults.steps)), help="stage0,stage1-mmu,stage1-t2i,stage2")
    p.add_argument("--max-steps", type=int, default=None, help="cap every stage (smoke runs)")
    p.add_argument("--until", choices=STAGES, default=None, help="stop after this stage (continue later, same --out)")
    p.add_argument("--time-limit", type=float, default=None,
                   help="seconds: save the stage in progress and stop (continue later with the same --out)")
    p.add_argument("--pretrained-from", default=None,
                   help="take the VQ and the towers from this earlier shapes model file instead of training them")
    p.add_argument("--vq-seconds", type=float, default=defaults.vq_seconds)
    p.add_argument("--tower-seconds", type=float, default=defaults.tower_seconds)
    p.add_argument("--tower-where", action="store_true", help="train the towers on where things are (the third run)")
    p.add_argument("--no-where-questions", dest="where_questions", action="store_false",
                   help="image chats do not ask where a named shape is (the first four runs)")
    p.add_argument("--random-positions", dest="grid_positions", action="store_false",
                   help="the position tables start random, not as a grid (the first four runs)")
    p.add_argument("--mmu-grid-amplitude", type=float, default=defaults.mmu_grid_amplitude,
                   help="size of the chat image rows' grid code (0.05: the fifth run)")
    p.add_argument("--batch", default=",".join(map(str, defaults.batch)),
                   help="samples per step: stage0 text, stage1 chats, images (stage1 and 2), stage2 chats")
    p.add_argument("--t2i-corpus", type=int, default=defaults.t2i_corpus)
    p.add_argument("--num-workers", type=int, default=defaults.num_workers)
    p.add_argument("--seed", type=int, default=defaults.seed)
    p.add_argument("--cpu", action="store_true")
    p.add_argument("--tokenizer", default=None, help="tokenizer.json (default: the shipped GPT-NeoX-20B file)")
    args = p.parse_args(argv)
    steps, batch = _four(args.steps, "--steps"), _four(args.batch, "--batch")
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s: %(message)s")
    recipe = dataclasses.replace(defaults, steps=steps, vq_seconds=args.vq_seconds, tower_seconds=args.tower_seconds,
                                 tower_where=args.tower_where, t2i_corpus=args.t2i_corpus,
                                 num_workers=args.num_workers, seed=args.seed, cpu=args.cpu, tokenizer=args.tokenizer,
                                 pretrained_from=args.pretrained_from, where_questions=args.where_questions,
                                 grid_positions=args.grid_positions, mmu_grid_amplitude=args.mmu_grid_amplitude,
                                 batch=batch)
    result = run(recipe, args.out, args.max_steps, args.until, args.time_limit)
    if result is None:
        print(f"stopped by the time limit; continue with the same command (--out {args.out})")
    else:
        print(f"stopped after {args.until}: {result}" if args.until else f"shipped: {result}")


def _four(text: str, option: str) -> tuple[int, int, int, int]:
    try:
        values = tuple(int(v) for v in text.split(","))
    except ValueError:
        values = ()
    if len(values) != 4 or min(values) < 1:
        raise SystemExit(f"error: {option} takes four positive whole numbers, comma-separated, got {text!r}")
    return values


if __name__ == "__main__":
    main()
