"""The reference path reproduces the official code's outputs (CPU, fp32). Needs the goldens folder
(../shared/reference/goldens or $OMNIMAMBA_GOLDENS) and about 2 minutes; skipped where it is absent."""
import pytest
from PIL import Image
import torch

from omnimamba.config import VisionConfig
from omnimamba.model.vision import preprocess_image

from ..conftest import goldens_dir
from ..golden_checks import check_all, det_model, load

GOLDENS = goldens_dir()
pytestmark = pytest.mark.skipif(GOLDENS is None, reason="goldens folder not found")


def test_image_transform_reproduces_the_official_pixels():
    pixels = preprocess_image(Image.open(GOLDENS / "mmu_input.png"), VisionConfig())
    golden = load(GOLDENS, "golden_mmu.pt")["pixel_values"]
    for tower in ("dino", "siglip"):
        assert torch.equal(pixels[tower], golden[tower])


@pytest.mark.slow
def test_reference_path_reproduces_official_logits_features_and_pixels():
    torch.set_num_threads(max(torch.get_num_threads(), 2))
    check_all(det_model(GOLDENS, "cpu"), GOLDENS)
