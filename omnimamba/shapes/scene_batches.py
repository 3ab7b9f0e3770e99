"""Batches of rendered scenes for the pre-steps (VQ and vision towers), made by data-loader workers.

Each item: "image" uint8 (3, 256, 256); with towers, also the towers' pixel values (exactly
`vision.preprocess_image`, the inference transform) and supervision: per-patch colour / kind classes on the
towers' patch grid (0 = background), which clear extremes (left-, right-, top-, bottom-most) each patch's shape
is, colours and kinds present (multi-hot), and the shape count - 1.
"""
from __future__ import annotations

from typing import Iterator

import numpy as np
import torch
from torch.utils.data import DataLoader, IterableDataset, get_worker_info

from ..config import VisionConfig
from ..model.vision import preprocess_image
from .records import stream_rng
from .world import (ALL_COMBOS, COLOURS, HELD_OUT, KINDS, RELATIONS, SIZE, TRAIN_COMBOS, Scene, extreme,
                    label_maps, render, sample_scene, shape_map)


class SceneStream(IterableDataset):
    def __init__(self, seed: int, vision: VisionConfig | None = None, held_out: bool = False):
        """vision: also make tower inputs and targets. held_out: draw from all 21 combos (evaluation)."""
        super().__init__()
        self.seed, self.vision = seed, vision
        self.combos = ALL_COMBOS if held_out else TRAIN_COMBOS

    def __iter__(self) -> Iterator[dict[str, torch.Tensor]]:
        info = get_worker_info()
        rng = stream_rng(self.seed, f"scenes-{info.id if info else 0}")  # one stream per worker
        while True:
            yield scene_item(sample_scene(rng, self.combos), self.vision)


def scene_item(scene: Scene, vision: VisionConfig | None) -> dict[str, torch.Tensor]:
    image = render(scene)
    item = {"image": torch.from_numpy(np.asarray(image).copy()).permute(2, 0, 1)}
    if vision is not None:
        pixels = preprocess_image(image, vision)
        item["dino"], item["siglip"] = pixels["dino"], pixels["siglip"]
        item.update(tower_targets(scene, vision.image_size // vision.patch_size))
    return item


def tower_targets(scene: Scene, grid: int) -> dict[str, torch.Tensor]:
    """Classes at the centre of each patch (in 256-px coordinates) and what the whole image holds.

    patch_extreme (grid * grid, 4): for each direction of RELATIONS, 1 where the patch's shape is clearly the most
    left / right / above / below one of the scene (the chat's relation questions ask exactly that)."""
    colour_map, kind_map = label_maps(scene)
    centres = ((np.arange(grid) + 0.5) * SIZE / grid).astype(int)
    owner = shape_map(scene)[np.ix_(centres, centres)].flatten().astype(np.int64)  # shape index + 1, 0 = none
    shape_extremes = np.zeros((len(scene.shapes) + 1, len(RELATIONS)), dtype=np.float32)  # row 0: background
    if len(scene.shapes) > 1:
        for d, direction in enumerate(RELATIONS):
            found = extreme([s.centre for s in scene.shapes], direction)
            if found is not None:
                shape_extremes[found + 1, d] = 1.0
    names = list(COLOURS)
    colours = torch.zeros(len(COLOURS))
    kinds = torch.zeros(len(KINDS))
    for shape in scene.shapes:
        colours[names.index(shape.colour)] = 1.0
        kinds[KINDS.index(shape.kind)] = 1.0
    return {
        "patch_colour": torch.from_numpy(colour_map[np.ix_(centres, centres)].astype(np.int64)).flatten(),
        "patch_kind": torch.from_numpy(kind_map[np.ix_(centres, centres)].astype(np.int64)).flatten(),
        "patch_extreme": torch.from_numpy(shape_extremes[owner]),
        "colours": colours, "kinds": kinds, "count": torch.tensor(len(scene.shapes) - 1),
    }


def scene_loader(seed: int, batch_size: int, vision: VisionConfig | None = None, held_out: bool = False,
                 num_workers: int = 0) -> Iterator[dict[str, torch.Tensor]]:
    loader = DataLoader(SceneStream(seed, vision, held_out), batch_size=batch_size, num_workers=num_workers,
                        pin_memory=torch.cuda.is_available(), persistent_workers=num_workers > 0,
                        prefetch_factor=4 if num_workers else None)
    return iter(loader)


def eval_scenes(seed: int, n: int) -> list[Scene]:
    """Fresh evaluation scenes (all 21 combos; every other one forced to hold a held-out combo)."""
    rng = stream_rng(seed, "eval-scenes")
    held = sorted(HELD_OUT)
    return [sample_scene(rng, ALL_COMBOS, include=held[i // 2 % len(held)] if i % 2 == 0 else None)
            for i in range(n)]
