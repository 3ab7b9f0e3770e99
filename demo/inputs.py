"""What a visitor may send, checked before any GPU work: limits, numbers, text, images. A refusal is a
`gr.Error` toast that says what was expected and what was found."""
from __future__ import annotations

import math
import random
from pathlib import Path
from typing import Any

import gradio as gr
from PIL import Image

from omnimamba.model.vision import MAX_IMAGE_PIXELS, ImageError, load_image
from omnimamba.sampling import SamplingParams

MAX_NEW_TOKENS = 1024
DEFAULT_NEW_TOKENS = 256
MAX_QUESTION_CHARS = 4000
MAX_PROMPT_CHARS = 2000  # the model keeps only its first 68 tokens anyway (the note says so)
MAX_SEED = 2**31 - 1
DEFAULT_QUESTION = "Describe this image in detail."
COMPARE_NEW_TOKENS = 100  # the compare command's default answer length


def refuse(message: str) -> gr.Error:
    """An error the user sees as a toast; expected, so the server log does not get its traceback."""
    return gr.Error(message, print_exception=False)


def is_whole(value: Any) -> bool:
    return isinstance(value, (int, float)) and math.isfinite(value) and int(value) == value


def sampling(temperature: float, top_k: float, top_p: float, seed: float | None) -> SamplingParams:
    """Settings -> SamplingParams with a concrete seed (drawn when `seed` is empty or -1), so a turn can be replayed."""
    if seed is None or (is_whole(seed) and seed < 0):
        seed = random.randint(0, MAX_SEED)
    if not is_whole(seed) or seed > MAX_SEED:
        raise refuse(f"seed must be a whole number in 0..{MAX_SEED} (or -1 for a random one), got {seed}")
    if not is_whole(top_k):
        raise refuse(f"top_k must be a whole number (1 = greedy, 0 = off), got {top_k}")
    for name, value in (("temperature", temperature), ("top_p", top_p)):
        if not isinstance(value, (int, float)) or not math.isfinite(value):
            raise refuse(f"{name} must be a number, got {value}")
    try:
        return SamplingParams(float(temperature), int(top_k), float(top_p), int(seed))
    except ValueError as exc:
        raise refuse(str(exc)) from None


def seeded(seed: float, temperature: float, top_k: float, top_p: float) -> SamplingParams:
    """Settings with a seed that must be given (a Show-o pair's own seed, or the one typed in)."""
    if not is_whole(seed) or seed < 0:
        raise refuse(f"seed must be a whole number in 0..{MAX_SEED}, got {seed}")
    return sampling(temperature, top_k, top_p, seed)


def whole_number(value: float | None, what: str, low: int, high: int) -> int:
    if not is_whole(value) or not low <= value <= high:
        raise refuse(f"{what} must be a whole number in {low}..{high}, got {value}")
    return int(value)


def new_tokens(value: float | None) -> int:
    return whole_number(value, "max new tokens", 1, MAX_NEW_TOKENS)


def text_input(text: str | None, what: str, limit: int) -> str:
    if text is not None and not isinstance(text, str):  # the API passes JSON through as it came
        raise refuse(f"The {what} must be text, got {type(text).__name__}.")
    text = (text or "").strip()
    if not text:
        raise refuse(f"The {what} is empty: type something first.")
    if len(text) > limit:
        raise refuse(f"The {what} is {len(text):,} characters long; the limit is {limit:,}.")
    return text


def check_guidance(guidance_scale: float | None) -> float:
    if not isinstance(guidance_scale, (int, float)) or not 0.0 <= guidance_scale <= 20.0:
        raise refuse(f"guidance scale must be in [0, 20] (1 = off, the official setting), got {guidance_scale}")
    return float(guidance_scale)


def open_image(path: str | Path) -> Image.Image:
    """An uploaded file -> an upright RGB image (omnimamba's one loader), refusing non-images and oversized ones
    before decoding them; the message never shows the server's path."""
    try:
        return load_image(path, MAX_IMAGE_PIXELS)
    except ImageError as exc:
        if exc.too_large:
            raise refuse(str(exc)[0].upper() + str(exc)[1:] + ".") from None
        raise refuse("That file could not be read as an image; upload a PNG, JPEG or WebP file.") from None
