"""Light LIB-KD teachers with complementary inductive biases (METHODS.md section 6).

- ``resnet_small``: a ResNet-style CNN. Convolution is spatial-agnostic and channel-specific (one kernel slides over
  every position, a different kernel per output channel).
- ``rednet_small``: a RedNet-style involution network. Involution is the mirror image: the kernel is generated per
  pixel from that pixel's own features (spatial-specific) and shared by all channels of a group (channel-agnostic).

Both are small enough to train on a few thousand 28x28 or 32x32 images on a CPU. Build them by name with
:func:`create_teacher`; like :func:`ibit_deploy.models.create_model` it records ``model.build_spec``.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import torch
from torch import nn


class Involution(nn.Module):
    """Involution (Li et al., RedNet): a K x K kernel per output pixel, generated from that pixel's features.

    kernel(p) = span(act(reduce(x[p])))   one K*K kernel per channel group, at every (downsampled) position p
    out[c, p] = sum_{q in KxK window of p} kernel_g(c)(p)[q - p] * x[c, q]

    Args:
        channels: input = output channels.
        kernel_size: K (odd).
        stride: spatial stride; the kernel is generated from an average-pooled map so it matches the output grid.
        group_channels: channels that share one generated kernel (channels must be divisible by it).
        reduction: bottleneck ratio of the kernel-generating branch.
    """

    def __init__(self, channels: int, kernel_size: int = 7, stride: int = 1, group_channels: int = 16,
                 reduction: int = 4) -> None:
        super().__init__()
        if kernel_size % 2 != 1:
            raise ValueError(f"involution kernel_size must be odd, got {kernel_size}")
        if channels % group_channels:
            raise ValueError(f"involution channels ({channels}) must be divisible by group_channels ({group_channels})")
        self.channels = channels
        self.kernel_size = kernel_size
        self.stride = stride
        self.groups = channels // group_channels
        hidden = max(channels // reduction, 4)
        # ceil_mode matches the unfold grid below: ceil(H / stride) positions for odd sizes too.
        self.down = nn.AvgPool2d(stride, stride, ceil_mode=True) if stride > 1 else nn.Identity()
        self.reduce = nn.Sequential(nn.Conv2d(channels, hidden, 1, bias=False), nn.BatchNorm2d(hidden),
                                    nn.ReLU(inplace=True))
        self.span = nn.Conv2d(hidden, kernel_size * kernel_size * self.groups, 1)
        self.unfold = nn.Unfold(kernel_size, padding=(kernel_size - 1) // 2, stride=stride)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        b, c, h, w = x.shape
        kk = self.kernel_size * self.kernel_size
        kernel = self.span(self.reduce(self.down(x)))  # (B, G*K*K, H', W'): one kernel per group and position
        ho, wo = kernel.shape[-2:]
        kernel = kernel.view(b, self.groups, 1, kk, ho, wo)
        patches = self.unfold(x).view(b, self.groups, c // self.groups, kk, ho, wo)  # each pixel's neighbourhood
        return (kernel * patches).sum(dim=3).view(b, c, ho, wo)  # multiply-sum over the K*K window

    def extra_repr(self) -> str:
        return f"channels={self.channels}, kernel_size={self.kernel_size}, stride={self.stride}, groups={self.groups}"


def _conv_bn(cin: int, cout: int, kernel: int = 3, stride: int = 1) -> nn.Sequential:
    return nn.Sequential(nn.Conv2d(cin, cout, kernel, stride, kernel // 2, bias=False), nn.BatchNorm2d(cout))


class BasicBlock(nn.Module):
    """ResNet basic block: two 3x3 convolutions and a (projected when the shape changes) shortcut."""

    def __init__(self, cin: int, cout: int, stride: int = 1) -> None:
        super().__init__()
        self.body = nn.Sequential(_conv_bn(cin, cout, 3, stride), nn.ReLU(inplace=True), _conv_bn(cout, cout, 3))
        self.shortcut = _conv_bn(cin, cout, 1, stride) if stride != 1 or cin != cout else nn.Identity()
        self.act = nn.ReLU(inplace=True)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.act(self.body(x) + self.shortcut(x))


class InvolutionBlock(nn.Module):
    """RedNet bottleneck: 1x1 reduce -> involution (K x K, carries the stride) -> 1x1 expand, plus a shortcut."""

    def __init__(self, cin: int, cout: int, stride: int = 1, kernel_size: int = 7, group_channels: int = 16) -> None:
        super().__init__()
        mid = max(cout // 2, group_channels)
        self.body = nn.Sequential(
            nn.Conv2d(cin, mid, 1, bias=False), nn.BatchNorm2d(mid), nn.ReLU(inplace=True),
            Involution(mid, kernel_size, stride, group_channels), nn.BatchNorm2d(mid), nn.ReLU(inplace=True),
            nn.Conv2d(mid, cout, 1, bias=False), nn.BatchNorm2d(cout),
        )
        if stride != 1 or cin != cout:
            pool = nn.AvgPool2d(stride, stride, ceil_mode=True) if stride > 1 else nn.Identity()
            self.shortcut = nn.Sequential(pool, nn.Conv2d(cin, cout, 1, bias=False), nn.BatchNorm2d(cout))
        else:
            self.shortcut = nn.Identity()
        self.act = nn.ReLU(inplace=True)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.act(self.body(x) + self.shortcut(x))


class SmallNet(nn.Module):
    """Stem conv (stride ``stem_stride``) -> stages of blocks (the first block of stages 2.. halves the resolution) -> pool -> linear."""

    def __init__(self, block: Callable[..., nn.Module], in_chans: int = 3, num_classes: int = 10,
                 widths: tuple[int, ...] = (32, 64, 128), blocks_per_stage: int = 1, stem_stride: int = 1,
                 **block_kwargs: Any) -> None:
        super().__init__()
        self.num_classes = num_classes
        # stem_stride=2 quarters the compute for CPU-sized runs; 1 keeps the full resolution of 28-32 px inputs.
        self.stem = nn.Sequential(_conv_bn(in_chans, widths[0], 3, stem_stride), nn.ReLU(inplace=True))
        layers, cin = [], widths[0]
        for i, width in enumerate(widths):
            for j in range(blocks_per_stage):
                layers.append(block(cin, width, stride=2 if (i > 0 and j == 0) else 1, **block_kwargs))
                cin = width
        self.stages = nn.Sequential(*layers)
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.head = nn.Linear(cin, num_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.stages(self.stem(x))  # (B, C, H/(4*stem_stride), W/(4*stem_stride))
        return self.head(self.pool(x).flatten(1))


def resnet_small(in_chans: int = 3, num_classes: int = 10, **kwargs: Any) -> SmallNet:
    """ResNet-style CNN teacher: widths 32/64/128, one basic block per stage (~0.7M parameters)."""
    return SmallNet(BasicBlock, in_chans, num_classes, **kwargs)


def rednet_small(in_chans: int = 3, num_classes: int = 10, kernel_size: int = 7, group_channels: int = 16,
                 **kwargs: Any) -> SmallNet:
    """RedNet-style involution teacher: widths 32/64/128, one involution bottleneck per stage (7x7 involution)."""
    return SmallNet(InvolutionBlock, in_chans, num_classes, kernel_size=kernel_size, group_channels=group_channels,
                    **kwargs)


TEACHERS: dict[str, Callable[..., nn.Module]] = {"resnet_small": resnet_small, "rednet_small": rednet_small}


def is_teacher(name: str) -> bool:
    """True when ``name`` is a teacher :func:`create_teacher` can build."""
    return name in TEACHERS


def create_teacher(name: str, in_chans: int = 3, num_classes: int = 10, **kwargs: Any) -> nn.Module:
    """Build teacher ``name`` (``resnet_small`` or ``rednet_small``); ``model.build_spec`` records how."""
    if name not in TEACHERS:
        raise ValueError(f"unknown teacher {name!r}; available: {', '.join(TEACHERS)}")
    model = TEACHERS[name](in_chans=in_chans, num_classes=num_classes, **kwargs)
    model.build_spec = {"name": name, "kwargs": {"in_chans": in_chans, "num_classes": num_classes, **kwargs}}
    return model
