"""Image transform, vision features and the VQ codec."""
import numpy as np
import pytest
import torch
from PIL import Image

from omnimamba.config import VisionConfig
from omnimamba.model.vision import preprocess_image


def test_transform_is_the_official_resize_naive_pipeline():
    tv = pytest.importorskip("torchvision.transforms")
    rng = np.random.default_rng(0)
    image = Image.fromarray(rng.integers(0, 256, (61, 93, 3), dtype=np.uint8))
    cfg = VisionConfig()
    ours = preprocess_image(image, cfg)
    for tower, mean, std in [("dino", cfg.dino_mean, cfg.dino_std), ("siglip", cfg.siglip_mean, cfg.siglip_std)]:
        official = tv.Compose([tv.Resize((384, 384), interpolation=tv.InterpolationMode.BICUBIC), tv.CenterCrop(384),
                               tv.ToTensor(), tv.Normalize(mean, std)])(image)
        assert torch.equal(ours[tower], official)


def test_non_rgb_images_are_converted():
    out = preprocess_image(Image.new("L", (20, 30), 128), VisionConfig(image_size=28))
    assert out["dino"].shape == out["siglip"].shape == (3, 28, 28)


def test_vision_features_are_penultimate_patch_tokens(tiny_model):
    pixels = {"dino": torch.randn(2, 3, 28, 28), "siglip": torch.randn(2, 3, 28, 28)}
    with torch.no_grad():
        feats = tiny_model.vision_backbone(pixels)
        dino = tiny_model.vision_backbone.dino_featurizer
        x = dino.patch_embed(pixels["dino"])
        x = dino._pos_embed(x)
        for block in dino.blocks[:-1]:  # all but the last block, no final norm
            x = block(x)
    assert feats.shape == (2, 4, 32 + 48)
    torch.testing.assert_close(feats[..., :32], x[:, dino.num_prefix_tokens:])


def test_vq_decode_shape_and_encode_round_trip(tiny_model):
    codes = torch.randint(0, 64, (2, 64))
    with torch.no_grad():
        images = tiny_model.decode_images(codes)
        assert images.shape == (2, 3, 64, 64)
        again = tiny_model.vq.encode_codes(images)
    assert again.shape == codes.shape and again.dtype == torch.long
    with pytest.raises(ValueError, match="square"):
        tiny_model.decode_images(torch.zeros(1, 10, dtype=torch.long))
