from __future__ import annotations

import copy
import os
from pathlib import Path

import pytest
import torch

from omnimamba import OmniMamba, OmniMambaConfig
from omnimamba.model.init import init_random_
from omnimamba.tokenizer import SHIPPED_TOKENIZER, OmniTokenizer

GOLDENS_CANDIDATES = [os.environ.get("OMNIMAMBA_GOLDENS", ""), ".gpu/goldens",
                      str(Path(__file__).resolve().parents[2] / "shared/reference/goldens")]


def goldens_dir() -> Path | None:
    for candidate in GOLDENS_CANDIDATES:
        if candidate and (Path(candidate) / "golden_t2i.pt").is_file():
            return Path(candidate)
    return None


def pytest_collection_modifyitems(config, items):
    if not torch.cuda.is_available():
        skip = pytest.mark.skip(reason="needs a CUDA GPU")
        for item in items:
            if "gpu" in item.keywords:
                item.add_marker(skip)


@pytest.fixture(scope="session")
def tiny_model_shared() -> OmniMamba:
    torch.manual_seed(0)
    return init_random_(OmniMamba(OmniMambaConfig.tiny()), seed=0).eval()


@pytest.fixture
def tiny_model(tiny_model_shared) -> OmniMamba:
    """A private copy: tests may change its weights or merge its LoRA."""
    return copy.deepcopy(tiny_model_shared)


@pytest.fixture(scope="session")
def tokenizer_file() -> Path:
    """The GPT-NeoX-20B tokenizer.json shipped in the package (the tests need no network)."""
    return SHIPPED_TOKENIZER


@pytest.fixture(scope="session")
def tokenizer() -> OmniTokenizer:
    return OmniTokenizer.from_file()


@pytest.fixture
def tiny_engine(tiny_model, tokenizer):
    """An Engine on a private tiny random model (CPU, no CUDA graphs)."""
    from omnimamba.engine import Engine
    return Engine(tiny_model, tokenizer, label="tiny-random (test)", use_cuda_graphs=False)
