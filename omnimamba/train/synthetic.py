"""A tiny built-in dataset for `--preset tiny-smoke`: one coloured square on a grey canvas, in 6 colours x 4 places.

Per scene: two one-turn image chats (its colour, its place), a caption with VQ codes drawn from the same layout
(background code 0, the square's cells code 1 + colour), and a sentence of plain text; plus a few text-only
chats. The codes are a pattern, not the VQ's encoding of the picture, so a tiny random model can learn them
from the caption in a few dozen CPU steps and the loss visibly falls.
"""
from __future__ import annotations

from PIL import Image, ImageDraw

from ..config import OmniMambaConfig

COLOURS = {"red": (220, 40, 40), "green": (40, 180, 60), "blue": (40, 70, 220), "yellow": (235, 210, 40),
           "purple": (140, 50, 180), "orange": (245, 140, 30)}
PLACES = ("left", "right", "top", "bottom")
BACKGROUND = (128, 128, 128)
TEXT_ONLY_CHATS = [("What can you see without an image?", "Nothing: there is no image."),
                   ("Which shapes do the pictures show?", "They show one square each."),
                   ("How many colours are there?", "There are six colours.")]


def _cells(place: str, grid: int) -> tuple[int, int, int, int]:
    """(row0, col0, row1, col1), end-exclusive: the grid cells the square covers."""
    half, quarter = grid // 2, grid // 4
    return {"left": (quarter, 0, quarter + half, half), "right": (quarter, half, quarter + half, grid),
            "top": (0, quarter, half, quarter + half), "bottom": (half, quarter, grid, quarter + half)}[place]


def scene_image(colour: str, place: str, size: int, grid: int = 8) -> Image.Image:
    r0, c0, r1, c1 = _cells(place, grid)
    cell = size / grid
    image = Image.new("RGB", (size, size), BACKGROUND)
    ImageDraw.Draw(image).rectangle([c0 * cell, r0 * cell, c1 * cell - 1, r1 * cell - 1], fill=COLOURS[colour])
    return image


def scene_codes(colour: str, place: str, grid: int, vocab: int) -> list[int]:
    r0, c0, r1, c1 = _cells(place, grid)
    code = (1 + list(COLOURS).index(colour)) % vocab
    return [code if r0 <= r < r1 and c0 <= c < c1 else 0 for r in range(grid) for c in range(grid)]


def _chat(image: Image.Image | None, question: str, answer: str) -> dict:
    return {"image": image, "conversations": [{"from": "human", "value": question}, {"from": "gpt", "value": answer}]}


def synthetic_items(task: str, config: OmniMambaConfig) -> list[dict]:
    """The record dicts of `task` ("mmu", "t2i" or "text") for a model of `config`."""
    scenes = [(colour, place) for colour in COLOURS for place in PLACES]
    if task == "mmu":
        items = []
        for colour, place in scenes:
            image = scene_image(colour, place, config.vision.image_size * 2, config.image_grid)
            items.append(_chat(image, "What colour is the square?", f"The square is {colour}."))
            items.append(_chat(image, "Where is the square?", f"It is on the {place}."))
        return items + [_chat(None, q, a) for q, a in TEXT_ONLY_CHATS]
    if task == "t2i":
        return [{"caption": f"a {colour} square on the {place}",
                 "codes": scene_codes(colour, place, config.image_grid, config.image_vocab_size)}
                for colour, place in scenes]
    if task == "text":
        return [{"text": f"The {colour} square is on the {place}."} for colour, place in scenes]
    raise ValueError(f"no synthetic data for task {task!r}; tasks: mmu, t2i, text")
