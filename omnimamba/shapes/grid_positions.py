"""Start the image rows of both position tables as a 2-D sine-cosine grid (the shapes recipe's init).

The backbone reads an image patch by patch, row by row. Which row a patch is in, it can tell from the order; which
column, only from the position table, whose rows start random and must learn the grid. Relations along a row
(left-most, "to the left of") were the shapes model's weakest answers and drawings (docs/shapes-model.md), so the
recipe starts the image rows with the grid written in (MAE's fixed 2-D sin-cos code, here only a starting
point: the tables train as before). Same parameters and shapes as the official model; only their init differs.

    mmu_pos_embed[2 + i]         patch i of the chat image ([mmu][soi] come first)
    pos_embed[prefix_len + j]    image token j, fed to predict token j + 1 (the prefix ends with [soi])
"""
from __future__ import annotations

import torch
from torch import Tensor

from ..config import OmniMambaConfig
from ..model import OmniMamba

MMU_IMAGE_START = 2  # [mmu][soi], then the patches
# Each table's code is sized to what it is added to, or the backbone cannot read it. Text-to-image: image-token
# embeddings of RMS ~0.1 (the shipped model), so 0.05 (the tables' random init is 0.02 randn). Chat: projected
# tower features of RMS 1.4 at the training init and 4.3 in the fifth run, which had 0.05 here too and
# answered left/right at chance while above/below (readable from the order) held at 93-96%; 1.5 (RMS 1.06) is
# of the features' size at the start: the sixth run (shipped) answers left/right 94%.
AMPLITUDE = 0.05
MMU_AMPLITUDE = 1.5


def sincos_grid(grid: int, dim: int, amplitude: float = AMPLITUDE) -> Tensor:
    """(grid * grid, dim) in raster order: the first half of the channels codes the row, the second the column,
    each as sines and cosines of geometric frequencies."""
    if dim % 4:
        raise ValueError(f"dim must be a multiple of 4, got {dim}")
    quarter = dim // 4
    freqs = 1.0 / (100.0 ** (torch.arange(quarter, dtype=torch.float64) / quarter))  # 1 .. 1/100 per cell

    def code(coord: Tensor) -> Tensor:
        angles = coord[:, None].double() * freqs[None]
        return torch.cat([angles.sin(), angles.cos()], dim=1)

    index = torch.arange(grid * grid)
    rows, cols = index // grid, index % grid
    return (amplitude * torch.cat([code(rows), code(cols)], dim=1)).float()


@torch.no_grad()
def write_grid_positions_(model: OmniMamba, config: OmniMambaConfig, mmu_amplitude: float = MMU_AMPLITUDE,
                          t2i_amplitude: float = AMPLITUDE) -> None:
    """Overwrite the image rows of `mmu_pos_embed` and `pos_embed` with the grid of their patches / tokens."""
    backbone = model.backbone
    mmu = sincos_grid(config.vision.image_size // config.vision.patch_size, config.d_model, mmu_amplitude)
    backbone.mmu_pos_embed[0, MMU_IMAGE_START:MMU_IMAGE_START + len(mmu)] = mmu.to(backbone.mmu_pos_embed)
    t2i = sincos_grid(config.image_grid, config.d_model, t2i_amplitude)
    start = config.t2i_prefix_len
    backbone.pos_embed[0, start:start + len(t2i)] = t2i.to(backbone.pos_embed)
