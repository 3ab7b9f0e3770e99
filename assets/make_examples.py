"""Draw the app's example images (simple PIL scenes, no third-party photos) and write assets/examples/examples.json.

    python assets/make_examples.py

Deterministic: the same PNG bytes on every run, so the files can be committed and re-made at will.
"""
from __future__ import annotations

import json
import math
from pathlib import Path

from PIL import Image, ImageDraw, ImageFont

OUT = Path(__file__).resolve().parent / "examples"
SIZE = (512, 384)

# (file, question) for the image-chat examples
CHAT_EXAMPLES = [
    ("house.png", "What color is the roof of the house?"),
    ("fruit.png", "How many apples are on the plate?"),
    ("shapes.png", "Which shapes are in the picture, and what color is each one?"),
    ("chart.png", "Which day had the most visitors?"),
    ("sailboat.png", "Describe this scene in detail."),
    ("cat.png", "What animal is this, and what is it sitting on?"),
]

TEXT_TO_IMAGE_EXAMPLES = [
    "A red double-decker bus driving through a snowy city street at dusk.",
    "A lighthouse on a rocky cliff under a starry night sky.",
    "A bowl of ramen with a soft-boiled egg, top view, studio lighting.",
    "A watercolor painting of a fox in an autumn forest.",
    "A corgi wearing sunglasses on a sunny beach.",
    "A cozy wooden cabin by a lake surrounded by pine trees, morning mist.",
]


def vertical_gradient(size: tuple[int, int], top: tuple[int, int, int], bottom: tuple[int, int, int]) -> Image.Image:
    w, h = size
    image = Image.new("RGB", size)
    draw = ImageDraw.Draw(image)
    for y in range(h):
        t = y / max(h - 1, 1)
        draw.line([(0, y), (w, y)], fill=tuple(round(a + (b - a) * t) for a, b in zip(top, bottom)))
    return image


def house() -> Image.Image:
    image = vertical_gradient(SIZE, (110, 170, 235), (200, 228, 250))
    d = ImageDraw.Draw(image)
    d.ellipse([410, 30, 480, 100], fill=(255, 214, 70))
    d.rectangle([0, 280, 512, 384], fill=(96, 168, 72))
    d.rectangle([150, 170, 350, 300], fill=(238, 226, 196), outline=(120, 100, 80), width=3)
    d.polygon([(130, 175), (250, 85), (370, 175)], fill=(196, 40, 40), outline=(120, 20, 20))
    d.rectangle([230, 225, 272, 300], fill=(110, 70, 40))
    for x in (170, 295):
        d.rectangle([x, 195, x + 38, 230], fill=(150, 200, 240), outline=(90, 90, 90), width=3)
    d.rectangle([420, 200, 436, 290], fill=(110, 75, 45))
    d.ellipse([380, 130, 476, 225], fill=(48, 128, 56))
    return image


def fruit() -> Image.Image:
    image = Image.new("RGB", SIZE, (236, 228, 214))
    d = ImageDraw.Draw(image)
    d.rectangle([0, 230, 512, 384], fill=(150, 102, 62))
    d.ellipse([96, 200, 416, 300], fill=(250, 250, 250), outline=(200, 200, 200), width=3)
    for x, y in [(150, 200), (215, 190), (280, 200)]:  # three apples
        d.ellipse([x, y, x + 62, y + 62], fill=(200, 30, 36))
        d.line([(x + 31, y + 4), (x + 36, y - 10)], fill=(90, 60, 30), width=4)
        d.ellipse([x + 36, y - 14, x + 54, y - 4], fill=(70, 150, 60))
    for x, y in [(330, 215), (120, 228)]:  # two oranges
        d.ellipse([x, y, x + 52, y + 52], fill=(245, 150, 30))
    d.arc([190, 236, 330, 300], start=20, end=160, fill=(245, 215, 60), width=16)  # a banana
    return image


def shapes() -> Image.Image:
    image = Image.new("RGB", SIZE, (250, 250, 246))
    d = ImageDraw.Draw(image)
    d.ellipse([40, 60, 180, 200], fill=(220, 40, 50))
    d.rectangle([300, 50, 450, 200], fill=(40, 90, 210))
    d.polygon([(110, 340), (190, 220), (270, 340)], fill=(40, 160, 80))
    cx, cy, r_out, r_in = 390, 285, 70, 30
    star = [(cx + (r_out if i % 2 == 0 else r_in) * math.sin(i * math.pi / 5),
             cy - (r_out if i % 2 == 0 else r_in) * math.cos(i * math.pi / 5)) for i in range(10)]
    d.polygon(star, fill=(245, 200, 30))
    return image


def chart() -> Image.Image:
    image = Image.new("RGB", SIZE, (255, 255, 255))
    d = ImageDraw.Draw(image)
    font = ImageFont.load_default(size=20)
    d.text((160, 16), "Visitors per day", fill=(30, 30, 30), font=font)
    d.line([(60, 330), (480, 330)], fill=(40, 40, 40), width=2)
    d.line([(60, 60), (60, 330)], fill=(40, 40, 40), width=2)
    for i, (day, value) in enumerate([("Mon", 120), ("Tue", 180), ("Wed", 250), ("Thu", 90), ("Fri", 160)]):
        x = 85 + i * 78
        d.rectangle([x, 330 - value, x + 50, 330], fill=(70, 120, 200) if day != "Wed" else (230, 120, 40))
        d.text((x + 6, 338), day, fill=(30, 30, 30), font=font)
        d.text((x + 6, 330 - value - 24), str(value), fill=(60, 60, 60), font=font)
    return image


def sailboat() -> Image.Image:
    image = vertical_gradient(SIZE, (250, 150, 90), (255, 222, 160))
    d = ImageDraw.Draw(image)
    d.ellipse([200, 150, 312, 262], fill=(255, 236, 120))
    d.rectangle([0, 230, 512, 384], fill=(40, 90, 150))
    for y in range(245, 384, 18):
        d.line([(0, y), (512, y + 4)], fill=(70, 125, 185), width=2)
    d.polygon([(120, 290), (300, 290), (270, 320), (150, 320)], fill=(120, 70, 40))
    d.line([(210, 290), (210, 130)], fill=(80, 50, 30), width=5)
    d.polygon([(214, 135), (214, 282), (290, 282)], fill=(250, 250, 245))
    d.polygon([(206, 150), (206, 282), (150, 282)], fill=(235, 235, 230))
    for x, y in [(360, 90), (400, 70), (430, 105)]:  # birds
        d.arc([x, y, x + 20, y + 14], start=200, end=340, fill=(40, 40, 40), width=3)
        d.arc([x + 18, y, x + 38, y + 14], start=200, end=340, fill=(40, 40, 40), width=3)
    return image


def cat() -> Image.Image:
    image = Image.new("RGB", SIZE, (214, 232, 240))
    d = ImageDraw.Draw(image)
    d.rectangle([0, 300, 512, 384], fill=(170, 120, 80))  # floor
    d.rectangle([140, 250, 380, 320], fill=(150, 40, 60))  # a red cushion
    d.ellipse([180, 170, 340, 290], fill=(120, 120, 125))  # body
    d.ellipse([200, 90, 300, 190], fill=(130, 130, 135))  # head
    d.polygon([(205, 120), (215, 70), (245, 100)], fill=(130, 130, 135))
    d.polygon([(295, 120), (285, 70), (255, 100)], fill=(130, 130, 135))
    for x in (228, 262):
        d.ellipse([x, 125, x + 14, 141], fill=(90, 200, 90))
    d.polygon([(245, 152), (255, 152), (250, 160)], fill=(240, 150, 160))
    for dy in (-6, 4):
        d.line([(200, 158 + dy), (238, 158)], fill=(40, 40, 40), width=2)
        d.line([(262, 158), (300, 158 + dy)], fill=(40, 40, 40), width=2)
    d.arc([300, 180, 400, 300], start=270, end=80, fill=(120, 120, 125), width=14)  # tail
    return image


SCENES = {"house.png": house, "fruit.png": fruit, "shapes.png": shapes, "chart.png": chart,
          "sailboat.png": sailboat, "cat.png": cat}


def main() -> None:
    OUT.mkdir(parents=True, exist_ok=True)
    for name, draw in SCENES.items():
        draw().save(OUT / name, optimize=True)
    examples = {"chat": [{"image": name, "question": q} for name, q in CHAT_EXAMPLES],
                "text_to_image": TEXT_TO_IMAGE_EXAMPLES}
    (OUT / "examples.json").write_text(json.dumps(examples, indent=1) + "\n", encoding="utf-8")
    print(f"wrote {len(SCENES)} images and examples.json to {OUT}")


if __name__ == "__main__":
    main()
