"""The shapes recipe end to end at toy step counts: every step runs, the shipped file is what the app loads."""
from __future__ import annotations

import json

import pytest
import torch
from safetensors import safe_open

from omnimamba import OmniMamba
from omnimamba.config import OmniMambaConfig
from omnimamba.engine import Engine
from omnimamba.sampling import SamplingParams
from omnimamba.packed_rows import KEPT_IDS
from omnimamba.shapes.recipe import DONE, IMAGE_DEFAULTS, TEXT_TABLE, ShapesRecipe, run
from omnimamba.shapes.vocab import world_token_ids
from omnimamba.tokenizer import OmniTokenizer
from omnimamba.shapes.sources import WorldRecords, encode_t2i_corpus
from omnimamba.train import checkpoints
from omnimamba.train.prepare import CodeShards
from omnimamba.train.records import ChatRecord, TextRecord


def test_world_records_are_a_pure_function_of_seed_and_index():
    config = OmniMambaConfig.shapes()
    chats = WorldRecords("mmu", 1000, seed=3, config=config)
    first, again, other = chats[5], chats[5], WorldRecords("mmu", 1000, seed=4, config=config)[5]
    assert isinstance(first, ChatRecord) and first.turns == again.turns
    assert first.turns != other.turns or first.image != other.image
    assert isinstance(WorldRecords("text", 10, 0, config)[0], TextRecord)
    with pytest.raises(IndexError):
        chats[1000]
    with pytest.raises(ValueError, match="t2i needs VQ codes"):
        WorldRecords("t2i", 10, 0, config)


def test_the_t2i_corpus_holds_one_code_per_vq_cell():
    from omnimamba.model.vq import VQModel

    config = OmniMambaConfig.shapes()
    records = encode_t2i_corpus(VQModel(config.vq), 3, seed=0, device=torch.device("cpu"), batch_size=2,
                                num_workers=0)
    assert len(records) == 3 and all(len(r.codes) == config.num_image_tokens for r in records)
    assert all(0 <= c < config.image_vocab_size for r in records for c in r.codes)


def test_a_kept_corpus_is_used_again_only_for_the_same_vq_and_size(tmp_path, monkeypatch):
    from omnimamba.model.vq import VQModel
    from omnimamba.shapes import recipe as shapes_recipe

    config, encoded = OmniMambaConfig.shapes(), []
    real = shapes_recipe.encode_t2i_corpus
    monkeypatch.setattr(shapes_recipe, "encode_t2i_corpus",
                        lambda *a, **k: encoded.append(a[1]) or real(*a, **{**k, "batch_size": 2, "num_workers": 0}))
    recipe = ShapesRecipe(cpu=True, t2i_corpus=2, num_workers=0)
    vq_sd = {k: v.clone() for k, v in VQModel(config.vq).state_dict().items()}
    folder = tmp_path / "t2i-corpus"
    shapes_recipe.register_world(recipe, config, vq_sd, torch.device("cpu"), folder)
    shapes_recipe.register_world(recipe, config, vq_sd, torch.device("cpu"), folder)
    assert encoded == [2], "the second time reads the kept corpus"
    other_vq = {k: v + 1.0 if v.is_floating_point() else v for k, v in vq_sd.items()}
    shapes_recipe.register_world(recipe, config, other_vq, torch.device("cpu"), folder)
    shapes_recipe.register_world(ShapesRecipe(cpu=True, t2i_corpus=3, num_workers=0), config, other_vq,
                                 torch.device("cpu"), folder)
    assert encoded == [2, 2, 3]


@pytest.mark.slow
def test_every_step_runs_and_ships_a_bf16_model_with_its_config(tmp_path):
    recipe = ShapesRecipe(cpu=True, vq_seconds=1, tower_seconds=1, vq_batch=1, tower_batch=1, t2i_corpus=4,
                          steps=(1, 1, 1, 1), batch=(2, 1, 2, 1), num_workers=0)
    # a run split in parts (sessions of limited length): a time limit stops before the next stage, `until` after
    # the stage it names
    assert run(recipe, tmp_path, time_limit=0) is None and not (tmp_path / "stage0-text").exists()
    assert run(recipe, tmp_path, until="stage1-t2i") == tmp_path / "stage1-t2i"
    assert (tmp_path / "stage1-t2i" / DONE).is_file() and not (tmp_path / "stage2").exists()
    shipped = run(recipe, tmp_path)
    for step in ("init", "stage0-text", "stage1-mmu", "stage1-t2i", "stage2"):
        assert (tmp_path / step / DONE).is_file(), step
    assert len(CodeShards(tmp_path / "t2i-corpus", OmniMambaConfig.shapes())) == 4, "the corpus is kept"
    with safe_open(str(shipped), "pt") as f:
        kept_ids = f.get_tensor(TEXT_TABLE + KEPT_IDS)
        assert {f.get_tensor(k).dtype for k in f.keys() if k != TEXT_TABLE + KEPT_IDS} == {torch.bfloat16}
        assert json.loads(f.metadata()["recipe"])["steps"] == [1, 1, 1, 1]
    # the text rows the world never uses started equal, stayed equal through training, and are stored once
    used = world_token_ids(OmniMambaConfig.shapes(), OmniTokenizer.from_file(), chat_mix=recipe.chat_mix)
    assert set(kept_ids.tolist()) <= set(used)
    assert shipped.stat().st_size <= 40_000_000  # what ships inside the package
    model = checkpoints.load_trained(shipped, "cpu", torch.float32)  # strict: every key
    assert model.config == OmniMambaConfig.shapes()
    engine = Engine.load(str(shipped), device="cpu", offline=True)  # the app's and the CLI's loader
    defaults = engine.image_defaults
    assert defaults == IMAGE_DEFAULTS
    assert not SamplingParams(defaults.temperature, defaults.top_k, defaults.top_p).greedy
    # a second run finds every step done and only ships again
    assert run(recipe, tmp_path) == shipped


def test_an_earlier_models_vq_and_towers_become_the_pre_steps(tmp_path):
    from omnimamba.shapes.recipe import pretrain

    torch.manual_seed(0)
    earlier = OmniMamba(OmniMambaConfig.shapes())
    checkpoints.save(earlier, tmp_path / "earlier")
    recipe = ShapesRecipe(cpu=True, pretrained_from=str(tmp_path / "earlier"))
    parts = pretrain(recipe, OmniMambaConfig.shapes(), tmp_path / "run" / "pretrain", torch.device("cpu"))
    for module, name in ((earlier.vq, "vq"), (earlier.vision_backbone.dino_featurizer, "dino"),
                         (earlier.vision_backbone.siglip_featurizer, "siglip")):
        assert parts[name].keys() == module.state_dict().keys()
        assert all(torch.equal(parts[name][k], v) for k, v in module.state_dict().items()), name


def test_where_questions_reach_the_training_chats_only_when_the_recipe_asks(tmp_path):
    from omnimamba.model.vq import VQModel
    from omnimamba.shapes import recipe as shapes_recipe
    from omnimamba.train.data import open_source

    config = OmniMambaConfig.shapes()
    vq_sd = VQModel(config.vq).state_dict()
    for where, expected in ((False, False), (True, True)):
        recipe = ShapesRecipe(cpu=True, t2i_corpus=2, num_workers=0, where_questions=where)
        shapes_recipe.register_world(recipe, config, vq_sd, torch.device("cpu"), tmp_path / "t2i-corpus")
        chats = open_source("mmu", shapes_recipe.SOURCE, config)
        questions = [q for i in range(150) for q, _ in chats[i].turns]
        assert any(q.startswith("Where is") or q.startswith("In which part") for q in questions) == expected


def test_the_init_starts_the_image_positions_as_a_grid_unless_asked_not_to(tmp_path):
    from omnimamba.shapes.grid_positions import MMU_IMAGE_START, sincos_grid
    from omnimamba.shapes.recipe import build_init

    config = OmniMambaConfig.shapes()
    donor = OmniMamba(config)
    parts = {"vq": donor.vq.state_dict(), "dino": donor.vision_backbone.dino_featurizer.state_dict(),
             "siglip": donor.vision_backbone.siglip_featurizer.state_dict()}
    grid = sincos_grid(config.vision.image_size // config.vision.patch_size, config.d_model,
                       ShapesRecipe().mmu_grid_amplitude)
    rows = slice(MMU_IMAGE_START, MMU_IMAGE_START + len(grid))
    for on in (True, False):
        folder = tmp_path / str(on)
        build_init(config, parts, folder, ShapesRecipe(cpu=True, grid_positions=on))
        sd, _ = checkpoints.read(folder)
        assert torch.equal(sd["llm_backbone.mamba.backbone.mmu_pos_embed"][0, rows], grid) == on


def test_the_recipe_command_names_a_bad_batch_option():
    from omnimamba.shapes.recipe import main

    with pytest.raises(SystemExit, match="--batch takes four positive whole numbers"):
        main(["--batch", "128,64,0,64"])
