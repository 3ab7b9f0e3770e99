"""The shapes recipe's init of the image position rows: a 2-D grid that a column can be read from."""
import pytest
import torch

from omnimamba.config import OmniMambaConfig
from omnimamba.model import OmniMamba
from omnimamba.shapes.grid_positions import AMPLITUDE, MMU_AMPLITUDE, MMU_IMAGE_START, sincos_grid, write_grid_positions_


def test_grid_codes_rows_and_columns_apart_and_near_cells_stay_near():
    grid = sincos_grid(16, 64)
    assert grid.shape == (256, 64)
    rows, cols = grid[:, :32], grid[:, 32:]
    assert torch.equal(rows[0], rows[15]) and not torch.equal(rows[0], rows[16])  # one row, one row code
    assert torch.equal(cols[0], cols[16]) and not torch.equal(cols[0], cols[1])  # one column, one column code
    first = cols[0]
    distances = [(cols[c] - first).norm().item() for c in range(16)]
    assert distances[1] < distances[4] < distances[15]  # the next column is nearer than a far one


def test_a_linear_probe_reads_the_column_of_every_cell():
    grid = sincos_grid(16, 64).double()
    column = (torch.arange(256) % 16).double()
    design = torch.cat([grid, torch.ones(256, 1, dtype=torch.float64)], dim=1)
    fit = torch.linalg.lstsq(design, column[:, None]).solution
    assert (design @ fit).squeeze(1).sub(column).abs().max() < 0.5


def test_dim_must_split_in_four():
    with pytest.raises(ValueError, match="multiple of 4"):
        sincos_grid(4, 30)


def test_only_the_image_rows_of_both_tables_change():
    config = OmniMambaConfig.tiny()
    model = OmniMamba(config)
    before = {n: model.backbone.get_parameter(n).detach().clone() for n in ("mmu_pos_embed", "pos_embed")}
    write_grid_positions_(model, config)
    patches, tokens, prefix = config.vision.num_patches, config.num_image_tokens, config.t2i_prefix_len
    mmu, t2i = model.backbone.mmu_pos_embed[0].detach(), model.backbone.pos_embed[0].detach()
    side = config.vision.image_size // config.vision.patch_size
    assert torch.equal(mmu[MMU_IMAGE_START:MMU_IMAGE_START + patches], sincos_grid(side, config.d_model, MMU_AMPLITUDE))
    assert torch.equal(t2i[prefix:prefix + tokens], sincos_grid(config.image_grid, config.d_model, AMPLITUDE))
    assert torch.equal(mmu[:MMU_IMAGE_START], before["mmu_pos_embed"][0, :MMU_IMAGE_START])
    assert torch.equal(mmu[MMU_IMAGE_START + patches:], before["mmu_pos_embed"][0, MMU_IMAGE_START + patches:])
    assert torch.equal(t2i[:prefix], before["pos_embed"][0, :prefix])
    assert torch.equal(t2i[prefix + tokens:], before["pos_embed"][0, prefix + tokens:])


def test_each_table_gets_its_own_amplitude():
    """The chat code must be of the projected features' size (RMS > 1) to be read; the image-token code stays small."""
    config = OmniMambaConfig.tiny()
    model = OmniMamba(config)
    write_grid_positions_(model, config, mmu_amplitude=2.0, t2i_amplitude=0.1)
    patches, tokens, prefix = config.vision.num_patches, config.num_image_tokens, config.t2i_prefix_len
    mmu = model.backbone.mmu_pos_embed[0, MMU_IMAGE_START:MMU_IMAGE_START + patches].detach()
    t2i = model.backbone.pos_embed[0, prefix:prefix + tokens].detach()
    assert mmu.abs().max().item() == pytest.approx(2.0, rel=0.05) and t2i.abs().max().item() == pytest.approx(0.1, rel=0.05)
    assert MMU_AMPLITUDE >= 1.0 > AMPLITUDE
