"""An automatic checker for images of the shapes world (rendered, VQ-reconstructed or generated).

segment: each pixel takes the nearest palette colour (the background tint is estimated from the border), but
only when it is close to it, so blurred edges between two colours stay unlabelled; each colour mask is
opened (3 x 3) to drop thin rims and specks; connected components above MIN_AREA become blobs, classified by
how much of their bounding box they fill: square ~1, circle ~pi/4, upright triangle ~1/2.
check: every prompted colour / (colour, shape) is found, and every stated relation holds between centres.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from PIL import Image

from .language import Description, parse_caption
from .world import COLOURS, SIZE, holds

MAX_COLOUR_DIST = 70.0  # RGB distance to the nearest palette colour; farther pixels stay unlabelled
MIN_AREA = 200  # px at 256 x 256; the smallest shape (a 32 px triangle) covers about 500
WORK = 128  # segmentation runs at half resolution (4x cheaper; the smallest shape is still 16 px wide)
ASPECT_RANGE = (0.67, 1.5)  # every shape of the world has a square bounding box
FILL_SQUARE, FILL_CIRCLE, FILL_MIN = 0.88, 0.63, 0.33
TRIANGLE_TOP = 0.6  # a triangle's top third is ~1/5 as full as its bottom third; a circle's about as full
_NAMES = list(COLOURS)
_PALETTE = np.array([COLOURS[n] for n in _NAMES], dtype=np.float32)


@dataclass(frozen=True)
class Blob:
    colour: str
    kind: str  # circle, square, triangle, or "other"
    box: tuple[int, int, int, int]  # x0, y0, x1, y1 (end exclusive)
    area: int

    @property
    def centre(self) -> tuple[float, float]:
        return (self.box[0] + self.box[2]) / 2, (self.box[1] + self.box[3]) / 2


@dataclass(frozen=True)
class Check:
    colours_found: bool  # every prompted colour is present
    objects_found: bool  # every prompted (colour, shape) is present
    relations_hold: bool | None  # every stated relation holds; None when the caption states none
    exact: bool  # the image holds exactly the prompted shapes, nothing else
    blobs: tuple[Blob, ...]


def segment(image: Image.Image) -> list[Blob]:
    """The flat-coloured shapes found in the image, largest first."""
    pixels = np.asarray(image.convert("RGB").resize((WORK, WORK), Image.BILINEAR), dtype=np.float32)
    border = np.concatenate([pixels[:2].reshape(-1, 3), pixels[-2:].reshape(-1, 3),
                             pixels[:, :2].reshape(-1, 3), pixels[:, -2:].reshape(-1, 3)])
    palette = np.concatenate([np.median(border, axis=0)[None], _PALETTE])  # index 0: the background
    flat = pixels.reshape(-1, 3)
    sq = (flat**2).sum(1, keepdims=True) - 2 * flat @ palette.T + (palette**2).sum(1)  # squared distances
    nearest = sq.argmin(1)
    nearest[sq.min(1) > MAX_COLOUR_DIST**2] = -1
    nearest = nearest.reshape(WORK, WORK)
    min_area = MIN_AREA * (WORK / SIZE) ** 2
    blobs = []
    for index, name in enumerate(_NAMES, start=1):
        mask = nearest == index
        if mask.sum() < min_area:
            continue
        for component in _components(_open(mask)):
            if component.sum() >= min_area:
                blobs.append(_blob(name, component))
    return sorted(blobs, key=lambda b: -b.area)


def _blob(colour: str, mask: np.ndarray) -> Blob:
    ys, xs = np.nonzero(mask)
    x0, y0, x1, y1 = int(xs.min()), int(ys.min()), int(xs.max()) + 1, int(ys.max()) + 1
    k = SIZE // WORK  # report in 256-px coordinates
    return Blob(colour, classify(mask[y0:y1, x0:x1]), (x0 * k, y0 * k, x1 * k, y1 * k), int(mask.sum()) * k * k)


def classify(crop: np.ndarray) -> str:
    """Kind of one component cropped to its bounding box."""
    h, w = crop.shape
    if not ASPECT_RANGE[0] <= w / h <= ASPECT_RANGE[1]:
        return "other"
    fill = crop.mean()
    if fill >= FILL_SQUARE:
        return "square"
    top, bottom = crop[: max(h // 3, 1)].mean(), crop[-max(h // 3, 1):].mean()
    if fill >= FILL_MIN and top < TRIANGLE_TOP * bottom:  # upright triangle: narrow top, wide base
        return "triangle"
    return "circle" if fill >= FILL_CIRCLE else "other"


def _shift_all(mask: np.ndarray, op) -> np.ndarray:
    padded = np.pad(mask, 1, constant_values=op is np.logical_and)
    h, w = mask.shape
    out = mask.copy()
    for dy in range(3):
        for dx in range(3):
            out = op(out, padded[dy:dy + h, dx:dx + w])
    return out


def _open(mask: np.ndarray) -> np.ndarray:
    """3 x 3 erosion then dilation: removes rims and specks thinner than 3 px."""
    eroded = _shift_all(mask, np.logical_and)
    return _shift_all(eroded, np.logical_or) & mask


def _components(mask: np.ndarray) -> list[np.ndarray]:
    """4-connected components, by union of horizontal runs that overlap between neighbouring rows."""
    edges = np.diff(np.pad(mask.astype(np.int8), ((0, 0), (1, 1))), axis=1)
    starts, ends = np.argwhere(edges == 1), np.argwhere(edges == -1)  # row-major, so they pair up
    rows, begin, end = starts[:, 0], starts[:, 1], ends[:, 1]
    parent = list(range(len(rows)))

    def find(i: int) -> int:
        while parent[i] != i:
            parent[i] = parent[parent[i]]
            i = parent[i]
        return i

    row_first = np.searchsorted(rows, np.arange(mask.shape[0] + 1))  # runs of row y: row_first[y]..row_first[y+1]
    for i in range(len(rows)):
        y = rows[i]
        for p in range(row_first[y - 1], row_first[y]) if y > 0 else ():
            if begin[p] < end[i] and begin[i] < end[p]:
                parent[find(p)] = find(i)
    groups: dict[int, np.ndarray] = {}
    for i in range(len(rows)):
        groups.setdefault(find(i), np.zeros_like(mask))[rows[i], begin[i]:end[i]] = True
    return list(groups.values())


def check(image: Image.Image, description: Description) -> Check:
    blobs = segment(image)
    found = {(b.colour, b.kind) for b in blobs}
    wanted = description.objects
    colours_found = {c for c, _ in wanted} <= {b.colour for b in blobs}
    objects_found = set(wanted) <= found
    exact = sorted((b.colour, b.kind) for b in blobs) == sorted(wanted)
    relations = None
    if description.relations:
        relations = all(_relation_holds(blobs, wanted[i], rel, wanted[j]) for i, rel, j in description.relations)
    return Check(colours_found, objects_found, relations, exact, tuple(blobs))


def check_caption(image: Image.Image, caption: str) -> Check:
    return check(image, parse_caption(caption))


def _relation_holds(blobs: list[Blob], a: tuple[str, str], rel: str, b: tuple[str, str]) -> bool:
    """Some blob for a is `rel` of some other blob for b. A blob matches an object by colour and shape, or by
    colour alone when no blob has both (shape mistakes are counted by objects_found, not here)."""
    first, second = _candidates(blobs, a), _candidates(blobs, b)
    return any(holds(rel, x.centre, y.centre) for x in first for y in second if x is not y)


def _candidates(blobs: list[Blob], obj: tuple[str, str]) -> list[Blob]:
    exact = [b for b in blobs if (b.colour, b.kind) == obj]
    return exact or [b for b in blobs if b.colour == obj[0]]
