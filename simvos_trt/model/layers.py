"""The convolutional head of SimVOS: the ViTDet-style FPN and the STCN mask decoder, with attribute
names that follow the official checkpoint's keys (``fpn1.1.ln``, ...) so weights load one to one."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from ..processing import IMAGENET_MEAN, IMAGENET_STD


class Norm2d(nn.Module):
    """LayerNorm over the channels of a (B, C, H, W) map (eps 1e-6)."""

    def __init__(self, dim: int) -> None:
        super().__init__()
        self.ln = nn.LayerNorm(dim, eps=1e-6)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.ln(x.permute(0, 2, 3, 1)).permute(0, 3, 1, 2)


def fpn_quarter(dim: int) -> nn.Sequential:
    """``fpn1``: (B, C, h, w) -> (B, 256, 4h, 4w)."""
    return nn.Sequential(nn.ConvTranspose2d(dim, dim, kernel_size=2, stride=2), Norm2d(dim), nn.GELU(),
                         nn.ConvTranspose2d(dim, 256, kernel_size=2, stride=2))


def fpn_eighth(dim: int) -> nn.Sequential:
    """``fpn2``: (B, C, h, w) -> (B, 512, 2h, 2w)."""
    return nn.Sequential(nn.ConvTranspose2d(dim, 512, kernel_size=2, stride=2))


class ResBlock(nn.Module):
    """Pre-activation residual block, with a 3x3 projection when widths differ."""

    def __init__(self, in_dim: int, out_dim: int) -> None:
        super().__init__()
        self.downsample = nn.Conv2d(in_dim, out_dim, kernel_size=3, padding=1) if in_dim != out_dim else None
        self.conv1 = nn.Conv2d(in_dim, out_dim, kernel_size=3, padding=1)
        self.conv2 = nn.Conv2d(out_dim, out_dim, kernel_size=3, padding=1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        r = self.conv2(F.relu(self.conv1(F.relu(x))))
        if self.downsample is not None:
            x = self.downsample(x)
        return x + r


class UpsampleBlock(nn.Module):
    """Skip conv of the finer map plus the 2x bilinear upsampling of the coarser one."""

    def __init__(self, skip_dim: int, up_dim: int, out_dim: int) -> None:
        super().__init__()
        self.skip_conv = nn.Conv2d(skip_dim, up_dim, kernel_size=3, padding=1)
        self.out_conv = ResBlock(up_dim, out_dim)

    def forward(self, skip: torch.Tensor, up: torch.Tensor) -> torch.Tensor:
        x = self.skip_conv(skip)
        x = x + F.interpolate(up, scale_factor=2, mode="bilinear", align_corners=False)
        return self.out_conv(x)


class STCNDecoder(nn.Module):
    """m16 (B, C, h, w) query tokens after the final LayerNorm, m8 (B, 512, 2h, 2w) from ``fpn2``,
    m4 (B, 256, 4h, 4w) from ``fpn1`` -> (B, 1, 16h, 16w) float32 mask logits, one map per object."""

    def __init__(self, dim: int) -> None:
        super().__init__()
        self.compress = ResBlock(dim, 512)
        self.up_16_8 = UpsampleBlock(512, 512, 256)
        self.up_8_4 = UpsampleBlock(256, 256, 256)
        self.pred = nn.Conv2d(256, 1, kernel_size=3, padding=1)

    def forward(self, m16: torch.Tensor, m8: torch.Tensor, m4: torch.Tensor) -> torch.Tensor:
        x = self.compress(m16)
        x = self.up_16_8(m8, x)
        x = self.up_8_4(m4, x)
        x = self.pred(F.relu(x))
        return F.interpolate(x, scale_factor=4, mode="bilinear", align_corners=False)


class FrameInput(nn.Module):
    """uint8 (1, H, W, 3) RGB + padding -> normalised, zero-padded (1, 3, H, W) float32."""

    def __init__(self, height: int, width: int) -> None:
        super().__init__()
        self.register_buffer("mean", torch.from_numpy(IMAGENET_MEAN).view(1, 3, 1, 1))
        self.register_buffer("std", torch.from_numpy(IMAGENET_STD).view(1, 3, 1, 1))
        self.register_buffer("rows", torch.arange(height).view(1, 1, height, 1))
        self.register_buffer("cols", torch.arange(width).view(1, 1, 1, width))

    def forward(self, frame: torch.Tensor, padding: torch.Tensor) -> torch.Tensor:
        H, W = self.rows.shape[2], self.cols.shape[3]
        # Cast first: TensorRT takes no op but Cast on a uint8 tensor.
        x = frame.to(torch.float32).permute(0, 3, 1, 2) / 255.0  # (1, 3, H, W)
        x = (x - self.mean) / self.std
        left, right, top, bottom = padding[0], padding[1], padding[2], padding[3]
        inside = (self.rows >= top) & (self.rows < H - bottom) & (self.cols >= left) & (self.cols < W - right)
        return x * inside.to(torch.float32)
