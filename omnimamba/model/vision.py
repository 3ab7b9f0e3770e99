"""MMU image features: DINOv2-L/14 (4 registers) + SigLIP-SO400M/14 through timm (reference §5).

Each tower gives the output of its second-to-last block with no final norm and its prefix tokens (DINOv2's
cls + 4 registers) dropped; the two are concatenated, DINOv2 first: [b, 729, 1024 + 1152 = 2176].
The image transform is the official "resize-naive": bicubic resize to 384 x 384 (aspect ratio not kept),
then each tower's own normalisation.
"""
from __future__ import annotations

import os
import warnings

import numpy as np
import timm
import torch
from PIL import Image, ImageOps, UnidentifiedImageError
from torch import Tensor, nn

from ..config import VisionConfig

PixelValues = dict[str, Tensor]  # {"dino": (b, 3, S, S), "siglip": (b, 3, S, S)}
MAX_IMAGE_PIXELS = 40_000_000  # larger inputs are refused before decoding (decompression bombs)


class ImageError(ValueError):
    """An input image that cannot be used; `too_large` tells a size refusal from an unreadable file."""

    def __init__(self, message: str, too_large: bool = False):
        super().__init__(message)
        self.too_large = too_large


def load_image(path: str | os.PathLike, max_pixels: int = MAX_IMAGE_PIXELS) -> Image.Image:
    """The one way every door (app, API, CLI, compare) reads an input image: size checked from the header before
    any pixel is decoded, EXIF orientation applied (a phone photo is seen upright), then RGB."""
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("error", Image.DecompressionBombWarning)
            with Image.open(path) as image:
                if image.width * image.height > max_pixels:
                    raise ImageError(f"the image is {image.width}x{image.height}; images up to "
                                     f"{max_pixels // 1_000_000} megapixels are accepted", too_large=True)
                return ImageOps.exif_transpose(image).convert("RGB")
    except ImageError:
        raise
    except FileNotFoundError:
        raise ImageError(f"image file not found: {path}") from None
    except (Image.DecompressionBombError, Image.DecompressionBombWarning):
        raise ImageError(f"the image is far too large (a possible decompression bomb); images up to "
                         f"{max_pixels // 1_000_000} megapixels are accepted", too_large=True) from None
    except (UnidentifiedImageError, OSError, SyntaxError, ValueError, EOFError) as exc:
        raise ImageError(f"{os.fspath(path)} could not be read as an image ({type(exc).__name__}); "
                         "use a PNG, JPEG or WebP file") from None


def create_tower(name: str, image_size: int, overrides: dict, pretrained: bool = False, **timm_kwargs) -> nn.Module:
    """A timm VisionTransformer as OmniMamba builds it (no classifier, 384 px input)."""
    return timm.create_model(name, pretrained=pretrained, num_classes=0, img_size=image_size, **overrides,
                             **timm_kwargs)


class VisionBackbone(nn.Module):
    """`vision_backbone`: SigLIP is registered first, as in the official state_dict."""

    def __init__(self, cfg: VisionConfig):
        super().__init__()
        self.siglip_featurizer = create_tower(cfg.siglip_model, cfg.image_size, cfg.siglip_overrides)
        self.dino_featurizer = create_tower(cfg.dino_model, cfg.image_size, cfg.dino_overrides)

    @property
    def embed_dim(self) -> int:
        return self.dino_featurizer.embed_dim + self.siglip_featurizer.embed_dim

    def forward(self, pixel_values: PixelValues) -> Tensor:
        """-> (b, num_patches, dino_dim + siglip_dim), in the towers' dtype."""
        dino = penultimate_patch_tokens(self.dino_featurizer, pixel_values["dino"])
        siglip = penultimate_patch_tokens(self.siglip_featurizer, pixel_values["siglip"])
        return torch.cat([dino, siglip], dim=-1)


def penultimate_patch_tokens(vit: nn.Module, x: Tensor) -> Tensor:
    """Patch tokens after block depth-2 (no final norm, prefix tokens removed): (b, num_patches, dim)."""
    index = len(vit.blocks) - 2
    (tokens,) = vit.forward_intermediates(x.to(vit.patch_embed.proj.weight.dtype), indices=[index], norm=False,
                                          output_fmt="NLC", intermediates_only=True, stop_early=True)
    return tokens


def preprocess_image(image: Image.Image, cfg: VisionConfig) -> PixelValues:
    """PIL image -> {"dino", "siglip"} tensors (3, S, S): bicubic resize to S x S, [0, 1], per-tower normalisation."""
    return normalize_pixels(resize_image(image, cfg), cfg)


def resize_image(image: Image.Image, cfg: VisionConfig) -> Tensor:
    """The transform's only lossy part: RGB, bicubic resize to S x S, as uint8 (3, S, S). A quarter of the bytes
    of one normalised tower input, which is why training batches carry this and normalise on the device."""
    rgb = image.convert("RGB").resize((cfg.image_size, cfg.image_size), Image.BICUBIC)
    return torch.from_numpy(np.asarray(rgb, dtype=np.uint8).copy()).permute(2, 0, 1)


def normalize_pixels(images: Tensor, cfg: VisionConfig) -> PixelValues:
    """uint8 (..., 3, S, S) from `resize_image` -> each tower's input, in fp32, on the images' device (the same
    float operations wherever it runs)."""
    pixels = images.to(torch.float32) / 255.0
    return {
        "dino": _normalize(pixels, cfg.dino_mean, cfg.dino_std),
        "siglip": _normalize(pixels, cfg.siglip_mean, cfg.siglip_std),
    }


def stack_pixel_values(items: list[PixelValues]) -> PixelValues:
    return {key: torch.stack([item[key] for item in items]) for key in ("dino", "siglip")}


def _normalize(pixels: Tensor, mean: tuple[float, ...], std: tuple[float, ...]) -> Tensor:
    mean_t, std_t = (torch.tensor(v, device=pixels.device)[:, None, None] for v in (mean, std))
    return (pixels - mean_t) / std_t
