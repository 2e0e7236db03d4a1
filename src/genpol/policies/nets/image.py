"""Image encoders written here because torchvision does not import beside our torch.

Both return a feature map (B, C, h, w); callers pool it to a vector or flatten it to tokens.
GroupNorm instead of BatchNorm: small robot batches and DDP make batch statistics unreliable.
"""

from __future__ import annotations

import torch
from torch import nn

# ImageNet statistics: the usual input normalisation for ResNet-style encoders.
_MEAN = (0.485, 0.456, 0.406)
_STD = (0.229, 0.224, 0.225)


def _norm(channels: int) -> nn.GroupNorm:
    return nn.GroupNorm(min(32, channels // 4), channels)


class SmallCNN(nn.Module):
    """Four stride-2 convolutions: cheap enough for CPU training, output stride 16."""

    def __init__(self, width: int = 32):
        super().__init__()
        chans = [3, width, width * 2, width * 4, width * 4]
        layers: list[nn.Module] = []
        for c_in, c_out in zip(chans[:-1], chans[1:], strict=True):
            layers += [nn.Conv2d(c_in, c_out, 3, stride=2, padding=1), _norm(c_out), nn.Mish()]
        self.net = nn.Sequential(*layers)
        self.out_channels = chans[-1]

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.net(x)


class BasicBlock(nn.Module):
    def __init__(self, c_in: int, c_out: int, stride: int):
        super().__init__()
        self.conv1 = nn.Conv2d(c_in, c_out, 3, stride=stride, padding=1, bias=False)
        self.norm1 = _norm(c_out)
        self.conv2 = nn.Conv2d(c_out, c_out, 3, padding=1, bias=False)
        self.norm2 = _norm(c_out)
        self.skip: nn.Module = nn.Identity()
        if stride != 1 or c_in != c_out:
            self.skip = nn.Sequential(nn.Conv2d(c_in, c_out, 1, stride=stride, bias=False),
                                      _norm(c_out))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = torch.relu(self.norm1(self.conv1(x)))
        y = self.norm2(self.conv2(y))
        return torch.relu(y + self.skip(x))


class ResNet18(nn.Module):
    """ResNet-18 layout (stem + 4 stages of 2 basic blocks), output stride 32, 512 channels."""

    def __init__(self):
        super().__init__()
        self.stem = nn.Sequential(nn.Conv2d(3, 64, 7, stride=2, padding=3, bias=False),
                                  _norm(64), nn.ReLU(), nn.MaxPool2d(3, stride=2, padding=1))
        stages = []
        c_in = 64
        for c_out, stride in ((64, 1), (128, 2), (256, 2), (512, 2)):
            stages += [BasicBlock(c_in, c_out, stride), BasicBlock(c_out, c_out, 1)]
            c_in = c_out
        self.stages = nn.Sequential(*stages)
        self.out_channels = 512

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.stages(self.stem(x))


class ImageBackbone(nn.Module):
    mean: torch.Tensor
    std: torch.Tensor
    """Normalises [0, 1] RGB with ImageNet statistics, then runs the chosen encoder."""

    def __init__(self, kind: str, width: int = 32):
        super().__init__()
        self.net: ResNet18 | SmallCNN = ResNet18() if kind == "resnet18" else SmallCNN(width)
        self.out_channels = self.net.out_channels
        self.register_buffer("mean", torch.tensor(_MEAN).view(1, 3, 1, 1), persistent=False)
        self.register_buffer("std", torch.tensor(_STD).view(1, 3, 1, 1), persistent=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.net((x - self.mean) / self.std)


class SpatialSoftmax(nn.Module):
    """Feature map (B, C, h, w) -> (B, 2K): where each of K learned keypoints is, as the
    softmax-weighted mean of the grid's coordinates in [-1, 1] (Levine et al. 2016, as Diffusion
    Policy pools its ResNet). Averaging the map instead keeps what is seen but not where, and
    where the target is is what a reaching policy needs."""

    def __init__(self, channels: int, keypoints: int = 32):
        super().__init__()
        self.keypoints = nn.Conv2d(channels, keypoints, 1)
        self.out_dim = 2 * keypoints

    def forward(self, fmap: torch.Tensor) -> torch.Tensor:
        b, _, h, w = fmap.shape
        attention = torch.softmax(self.keypoints(fmap).flatten(2), dim=-1)  # (B, K, h*w)
        ys = torch.linspace(-1.0, 1.0, h, device=fmap.device, dtype=fmap.dtype)
        xs = torch.linspace(-1.0, 1.0, w, device=fmap.device, dtype=fmap.dtype)
        grid_y, grid_x = torch.meshgrid(ys, xs, indexing="ij")
        x = (attention * grid_x.reshape(1, 1, -1)).sum(-1)
        y = (attention * grid_y.reshape(1, 1, -1)).sum(-1)
        return torch.cat([x, y], dim=-1).reshape(b, -1)
