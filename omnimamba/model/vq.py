"""LlamaGen's VQ-16 image tokenizer (`llm_backbone.vqvae`, reference §2.7, §6).

decode: 256 codes (raster order) -> L2-normalised codebook rows -> (b, 8, 16, 16) -> post_quant_conv ->
decoder -> (b, 3, 256, 256), nominally in [-1, 1] and not clamped. encode (for training and round trips):
encoder -> quant_conv -> nearest L2-normalised codebook row. Weights come from `vq_ds16_t2i.pt`.
"""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from ..config import VQConfig


def group_norm(channels: int) -> nn.GroupNorm:
    return nn.GroupNorm(32, channels, eps=1e-6, affine=True)


class ResnetBlock(nn.Module):
    def __init__(self, c_in: int, c_out: int):
        super().__init__()
        self.norm1, self.conv1 = group_norm(c_in), nn.Conv2d(c_in, c_out, 3, padding=1)
        self.norm2, self.conv2 = group_norm(c_out), nn.Conv2d(c_out, c_out, 3, padding=1)
        if c_in != c_out:
            self.nin_shortcut = nn.Conv2d(c_in, c_out, 1)

    def forward(self, x: Tensor) -> Tensor:
        h = self.conv1(F.silu(self.norm1(x)))
        h = self.conv2(F.silu(self.norm2(h)))
        skip = self.nin_shortcut(x) if hasattr(self, "nin_shortcut") else x
        return skip + h


class AttnBlock(nn.Module):
    """Single-head self-attention over pixels with 1x1-conv projections (scale c^-1/2)."""

    def __init__(self, c: int):
        super().__init__()
        self.norm = group_norm(c)
        self.q, self.k, self.v, self.proj_out = (nn.Conv2d(c, c, 1) for _ in range(4))

    def forward(self, x: Tensor) -> Tensor:
        b, c, hgt, wid = x.shape
        h = self.norm(x)
        q, k, v = (proj(h).flatten(2).transpose(1, 2) for proj in (self.q, self.k, self.v))  # (b, hw, c)
        out = F.scaled_dot_product_attention(q[:, None], k[:, None], v[:, None])[:, 0]  # (b, hw, c)
        return x + self.proj_out(out.transpose(1, 2).reshape(b, c, hgt, wid))


class Resample(nn.Module):
    """Nearest x2 upsample then 3x3 conv, or zero-pad (right/bottom) then stride-2 3x3 conv."""

    def __init__(self, c: int, up: bool):
        super().__init__()
        self.up = up
        self.conv = nn.Conv2d(c, c, 3, stride=1 if up else 2, padding=1 if up else 0)

    def forward(self, x: Tensor) -> Tensor:
        x = F.interpolate(x, scale_factor=2.0, mode="nearest") if self.up else F.pad(x, (0, 1, 0, 1))
        return self.conv(x)


def _level(c_in: int, c_out: int, n_res: int, attn: bool) -> nn.Module:
    level = nn.Module()
    level.res = nn.ModuleList(ResnetBlock(c_in if i == 0 else c_out, c_out) for i in range(n_res))
    level.attn = nn.ModuleList(AttnBlock(c_out) for _ in range(n_res if attn else 0))
    return level


def _run_level(level: nn.Module, h: Tensor) -> Tensor:
    for i, res in enumerate(level.res):
        h = res(h)
        if len(level.attn):
            h = level.attn[i](h)
    return h


def _middle(c: int) -> nn.ModuleList:
    return nn.ModuleList([ResnetBlock(c, c), AttnBlock(c), ResnetBlock(c, c)])


class Encoder(nn.Module):
    def __init__(self, cfg: VQConfig):
        super().__init__()
        chans = [cfg.ch * m for m in cfg.ch_mult]
        self.conv_in = nn.Conv2d(3, cfg.ch, 3, padding=1)
        self.conv_blocks = nn.ModuleList()
        c_in = cfg.ch
        for i, c_out in enumerate(chans):
            last = i == len(chans) - 1
            level = _level(c_in, c_out, cfg.num_res_blocks, attn=last)
            if not last:
                level.downsample = Resample(c_out, up=False)
            self.conv_blocks.append(level)
            c_in = c_out
        self.mid = _middle(c_in)
        self.norm_out = group_norm(c_in)
        self.conv_out = nn.Conv2d(c_in, cfg.z_channels, 3, padding=1)

    def forward(self, x: Tensor) -> Tensor:
        h = self.conv_in(x)
        for level in self.conv_blocks:
            h = _run_level(level, h)
            if hasattr(level, "downsample"):
                h = level.downsample(h)
        for block in self.mid:
            h = block(h)
        return self.conv_out(F.silu(self.norm_out(h)))


class Decoder(nn.Module):
    def __init__(self, cfg: VQConfig):
        super().__init__()
        chans = [cfg.ch * m for m in reversed(cfg.ch_mult)]  # deepest level first
        self.conv_in = nn.Conv2d(cfg.z_channels, chans[0], 3, padding=1)
        self.mid = _middle(chans[0])
        self.conv_blocks = nn.ModuleList()
        c_in = chans[0]
        for i, c_out in enumerate(chans):
            level = _level(c_in, c_out, cfg.num_res_blocks + 1, attn=i == 0)
            if i != len(chans) - 1:
                level.upsample = Resample(c_out, up=True)
            self.conv_blocks.append(level)
            c_in = c_out
        self.norm_out = group_norm(c_in)
        self.conv_out = nn.Conv2d(c_in, 3, 3, padding=1)

    def forward(self, z: Tensor) -> Tensor:
        h = self.conv_in(z)
        for block in self.mid:
            h = block(h)
        for level in self.conv_blocks:
            h = _run_level(level, h)
            if hasattr(level, "upsample"):
                h = level.upsample(h)
        return self.conv_out(F.silu(self.norm_out(h)))


class VectorQuantizer(nn.Module):
    def __init__(self, cfg: VQConfig):
        super().__init__()
        # usage statistics of LlamaGen's training; part of the checkpoint, unused here
        self.register_buffer("codebook_used", torch.zeros(65536))
        self.embedding = nn.Embedding(cfg.codebook_size, cfg.codebook_dim)

    def codebook(self) -> Tensor:
        return F.normalize(self.embedding.weight, p=2, dim=-1)  # (codebook_size, codebook_dim)

    def lookup(self, codes: Tensor, grid: int) -> Tensor:
        """codes (b, grid*grid) in raster order -> (b, codebook_dim, grid, grid)."""
        z = self.codebook()[codes]  # (b, hw, c)
        return z.view(codes.shape[0], grid, grid, -1).permute(0, 3, 1, 2).contiguous()

    def nearest(self, z: Tensor) -> Tensor:
        """z (b, c, h, w) -> codes (b, h*w): the closest L2-normalised codebook row."""
        flat = F.normalize(z.permute(0, 2, 3, 1).reshape(z.shape[0], -1, z.shape[1]), p=2, dim=-1)
        return (flat @ self.codebook().T).argmax(-1)  # on unit vectors max dot product = min distance


class VQModel(nn.Module):
    def __init__(self, cfg: VQConfig):
        super().__init__()
        self.encoder = Encoder(cfg)
        self.decoder = Decoder(cfg)
        self.quantize = VectorQuantizer(cfg)
        self.quant_conv = nn.Conv2d(cfg.z_channels, cfg.codebook_dim, 1)
        self.post_quant_conv = nn.Conv2d(cfg.codebook_dim, cfg.z_channels, 1)

    def decode_codes(self, codes: Tensor) -> Tensor:
        """codes (b, n) with n a square -> images (b, 3, H, W) in about [-1, 1]."""
        grid = int(round(codes.shape[1] ** 0.5))
        if grid * grid != codes.shape[1]:
            raise ValueError(f"expected a square number of image tokens, got {codes.shape[1]}")
        z = self.quantize.lookup(codes, grid).to(self.post_quant_conv.weight.dtype)
        return self.decoder(self.post_quant_conv(z))

    def encode_codes(self, images: Tensor) -> Tensor:
        """images (b, 3, H, W) in [-1, 1] -> codes (b, (H/16) * (W/16))."""
        return self.quantize.nearest(self.quant_conv(self.encoder(images)))
