"""The lip-sync network (torch): a stack of *valid* dilated 1-D convolutions over 100 Hz log-mel frames.

Valid convolutions make streaming trivial and exact: the output for feature frame ``m`` depends on input frames
``[m - past, m + lookahead]`` only, so the runtime feeds the same window whatever the chunking. No recurrent state,
no normalisation across time.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn

from avaluma.renderer.lipsync.base import MOUTH_PARAMS
from avaluma.renderer.lipsync.features import N_MELS
from avaluma.renderer.lipsync.visemes import VISEMES


@dataclass(frozen=True)
class ModelConfig:
    channels: int = 128
    dilations: tuple[int, ...] = (1, 2, 4, 8, 1)
    #: Feature frames of lookahead (10 ms each); the rest of the receptive field looks into the past.
    lookahead: int = 6
    #: Blocks after ``dilations`` whose convolutions look only into the past (``[t - 2d, t]``): more context for
    #: no added latency. Appended to a trained network with a zero residual branch, one leaves its output unchanged.
    causal_dilations: tuple[int, ...] = ()

    @property
    def receptive_field(self) -> int:
        return 3 + sum(2 * d for d in (*self.dilations, *self.causal_dilations))

    @property
    def past(self) -> int:
        return self.receptive_field - 1 - self.lookahead


class _Block(nn.Module):
    def __init__(self, channels: int, dilation: int, *, causal: bool = False) -> None:
        super().__init__()
        # The residual is cropped to the frames the convolution's output stands for: its centre, or (causal) its
        # newest input frame.
        self.crop = (2 * dilation, 0) if causal else (dilation, dilation)
        self.conv = nn.Conv1d(channels, channels, 3, dilation=dilation)
        self.mix = nn.Conv1d(channels, channels, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        left, right = self.crop
        out: torch.Tensor = x[:, :, left : x.shape[2] - right] + self.mix(torch.relu(self.conv(x)))
        return out


class LipSyncNet(nn.Module):
    """``[batch, time, N_MELS]`` -> (viseme probabilities, mouth params), ``receptive_field - 1`` frames shorter."""

    mean: torch.Tensor
    std: torch.Tensor

    def __init__(self, config: ModelConfig, mean: torch.Tensor | None = None, std: torch.Tensor | None = None) -> None:
        super().__init__()
        self.config = config
        self.register_buffer("mean", mean if mean is not None else torch.zeros(N_MELS))
        self.register_buffer("std", std if std is not None else torch.ones(N_MELS))
        c = config.channels
        self.inp = nn.Conv1d(N_MELS, c, 3)
        self.blocks = nn.ModuleList(
            [*(_Block(c, d) for d in config.dilations), *(_Block(c, d, causal=True) for d in config.causal_dilations)]
        )
        self.viseme_head = nn.Conv1d(c, len(VISEMES), 1)
        self.param_head = nn.Conv1d(c, len(MOUTH_PARAMS), 1)

    def logits(self, features: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        x = ((features - self.mean) / self.std).transpose(1, 2)
        h = torch.relu(self.inp(x))
        for block in self.blocks:
            h = block(h)
        h = torch.relu(h)
        return self.viseme_head(h).transpose(1, 2), self.param_head(h).transpose(1, 2)

    def forward(self, features: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        vis, par = self.logits(features)
        return torch.softmax(vis, dim=-1), torch.sigmoid(par)
