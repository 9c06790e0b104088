"""Peer baseline for speed: VideoPose3D's temporal convolution network, our own implementation.

Pavllo et al., "3D human pose estimation in video with temporal convolutions and
semi-supervised training" (CVPR 2019) lift a window of 2D poses with a stack of 1-D
convolutions whose receptive field is the product of the filter widths (3·3·3 = 27,
3·3·3·3·3 = 243). We build the single-frame-output form the authors use for efficient
training and streaming (their `TemporalModelOptimized1f`): each block convolves with stride equal
to its filter width, so a window of RF frames shrinks to one output frame with no wasted work.
Only the architecture matters here (weights are random): it sets the cost per window, which is
what the benchmarks compare our lifter against.
"""

from __future__ import annotations

import math

import torch
from torch import nn


class VideoPose3D(nn.Module):
    """Dilated-TCN lifter, strided form: (B, RF, J, 2) -> (B, J, 3) for the window's centre frame.

    Layout per block (as in the paper): conv(k, stride k) -> BN -> ReLU -> dropout ->
    conv(1) -> BN -> ReLU -> dropout, plus a residual from the input sliced at the centre of
    each group of k frames. Default width 1024 channels, dropout 0.25.
    """

    def __init__(self, joints: int = 17, filter_widths=(3, 3, 3), channels: int = 1024,
                 dropout: float = 0.25):
        super().__init__()
        self.joints, self.filter_widths = joints, tuple(filter_widths)
        self.receptive_field = math.prod(self.filter_widths)
        fw0 = self.filter_widths[0]
        self.expand = nn.Sequential(
            nn.Conv1d(joints * 2, channels, fw0, stride=fw0, bias=False),
            nn.BatchNorm1d(channels, momentum=0.1), nn.ReLU(inplace=True), nn.Dropout(dropout))
        self.blocks = nn.ModuleList()
        for fw in self.filter_widths[1:]:
            self.blocks.append(nn.Sequential(
                nn.Conv1d(channels, channels, fw, stride=fw, bias=False),
                nn.BatchNorm1d(channels, momentum=0.1), nn.ReLU(inplace=True), nn.Dropout(dropout),
                nn.Conv1d(channels, channels, 1, bias=False),
                nn.BatchNorm1d(channels, momentum=0.1), nn.ReLU(inplace=True), nn.Dropout(dropout)))
        self.shrink = nn.Conv1d(channels, joints * 3, 1)

    def forward(self, kp2d: torch.Tensor) -> torch.Tensor:
        B, T, J, _ = kp2d.shape
        if T != self.receptive_field or J != self.joints:
            raise ValueError(f"expected (B, {self.receptive_field}, {self.joints}, 2) windows, "
                             f"got {tuple(kp2d.shape)}")
        x = kp2d.reshape(B, T, J * 2).transpose(1, 2)  # (B, J*2, T): channels over time
        x = self.expand(x)  # (B, C, T / fw0)
        for fw, block in zip(self.filter_widths[1:], self.blocks):
            res = x[:, :, fw // 2::fw]  # centre frame of each group of fw: the residual path
            x = res + block(x)  # (B, C, T_prev / fw)
        return self.shrink(x).reshape(B, J, 3)  # (B, J*3, 1) -> (B, J, 3)


def receptive_field_config(rf: int) -> tuple[int, ...]:
    """Filter widths of the paper's models: 27 -> (3, 3, 3), 81 -> (3,)*4, 243 -> (3,)*5."""
    n = round(math.log(rf, 3))
    if 3 ** n != rf:
        raise ValueError(f"receptive field {rf} is not a power of 3")
    return (3,) * n
