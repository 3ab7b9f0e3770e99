"""Images in and out: one loader for everything that opens a user's image (training data, prepare, the CLI), and
the model's pixels as an image (`to_pil`).

EXIF orientation is applied (a phone photo stored sideways is seen upright, as every viewer shows it), the
result is RGB, and oversized files are refused before they are decoded (decompression bombs).
"""
from __future__ import annotations

import os

import numpy as np
import torch
from PIL import Image, ImageOps, UnidentifiedImageError

MAX_IMAGE_PIXELS = 40_000_000


class ImageFileError(ValueError):
    """An image file that cannot be used; the message names the file and says what to do."""


def open_image(path: str | os.PathLike, max_pixels: int = MAX_IMAGE_PIXELS) -> Image.Image:
    """The image at `path`, upright (EXIF orientation applied) and RGB, fully loaded (the file is closed)."""
    try:
        with Image.open(path) as image:
            if image.width * image.height > max_pixels:
                raise ImageFileError(f"{path}: {image.width}x{image.height} pixels is over the limit of "
                                     f"{max_pixels:,}; downscale it")
            return ImageOps.exif_transpose(image).convert("RGB")
    except FileNotFoundError:
        raise ImageFileError(f"{path}: no such image file") from None
    except Image.DecompressionBombError:
        raise ImageFileError(f"{path}: far too large (a possible decompression bomb); downscale it") from None
    except (UnidentifiedImageError, OSError, SyntaxError, ValueError) as exc:
        if isinstance(exc, ImageFileError):
            raise
        raise ImageFileError(f"{path}: not a readable image ({exc}); re-save it as PNG or JPEG") from None


def to_pil(pixels: torch.Tensor) -> Image.Image:
    """(3, H, W) in [-1, 1] -> RGB image, the way the official script scales it ((x + 1) / 2, rounded)."""
    array = ((pixels.clamp(-1, 1) + 1) / 2 * 255).round().to(torch.uint8).permute(1, 2, 0).cpu().numpy()
    return Image.fromarray(np.ascontiguousarray(array))
