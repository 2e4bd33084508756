"""Training loop and ONNX export. Deterministic for a seed on one machine (CPU, fixed thread count)."""

from __future__ import annotations

import json
import math
import time
import warnings
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np
import numpy.typing as npt
import torch
import torch.nn.functional as F

from avaluma.renderer.lipsync.base import MOUTH_PARAMS
from avaluma.renderer.lipsync.features import N_MELS, SILENCE_VALUE
from avaluma.renderer.lipsync.training.data import DataConfig, Split, load_or_build
from avaluma.renderer.lipsync.training.model import LipSyncNet, ModelConfig
from avaluma.renderer.lipsync.visemes import VISEMES

MODEL_VERSION = "1"


@dataclass(frozen=True)
class TrainConfig:
    epochs: int = 18
    batch_size: int = 32
    crop: int = 200
    lr: float = 2e-3
    weight_decay: float = 1e-4
    param_weight: float = 4.0
    label_smoothing: float = 0.05
    #: Closures are brief but the most visible mistake, so the lips-closed channel counts double.
    lips_closed_weight: float = 2.0
    seed: int = 0
    threads: int = 2
    model: ModelConfig = field(default_factory=ModelConfig)
    data: DataConfig = field(default_factory=DataConfig)


def _padded(
    split: Split, past: int, lookahead: int
) -> tuple[npt.NDArray[np.float32], npt.NDArray[np.int64], npt.NDArray[np.float32]]:
    """One array of all utterances, each framed by the silence a stream starts and ends with; targets -1 there."""
    xs: list[npt.NDArray[np.float32]] = []
    ys: list[npt.NDArray[np.int64]] = []
    ps: list[npt.NDArray[np.float32]] = []
    sil_x = np.full((past, N_MELS), SILENCE_VALUE, np.float32)
    end_x = np.full((lookahead, N_MELS), SILENCE_VALUE, np.float32)
    for i in range(len(split)):
        a, b = split.offsets[i], split.offsets[i + 1]
        xs += [sil_x, split.features[a:b], end_x]
        ys += [np.full(past, -1, np.int64), split.labels[a:b], np.full(lookahead, -1, np.int64)]
        ps += [
            np.zeros((past, len(MOUTH_PARAMS)), np.float32),
            split.params[a:b],
            np.zeros((lookahead, len(MOUTH_PARAMS)), np.float32),
        ]
    return (
        np.concatenate(xs).astype(np.float32),
        np.concatenate(ys).astype(np.int64),
        np.concatenate(ps).astype(np.float32),
    )


def heldout_accuracy(model: LipSyncNet, split: Split) -> float:
    """Frame (100 Hz) viseme accuracy over a split, run exactly as offline inference does."""
    cfg = model.config
    x, y, _ = _padded(split, cfg.past, cfg.lookahead)
    with torch.no_grad():
        probs, _ = model(torch.from_numpy(x)[None])
    pred = probs[0].argmax(-1).numpy()
    target = y[cfg.past : cfg.past + len(pred)]
    mask = target >= 0
    return float((pred[mask] == target[mask]).mean())


def train(
    config: TrainConfig, data: tuple[Split, Split] | None = None, progress: Callable[[str], None] = print
) -> LipSyncNet:
    torch.manual_seed(config.seed)
    torch.set_num_threads(config.threads)
    rng = np.random.default_rng(config.seed)
    train_split, heldout = data if data is not None else load_or_build(config.data, progress=progress)
    mcfg = config.model
    x, y, p = _padded(train_split, mcfg.past, mcfg.lookahead)
    mean = torch.from_numpy(train_split.features.mean(0))
    std = torch.from_numpy(train_split.features.std(0) + 1e-3)
    model = LipSyncNet(mcfg, mean, std)
    n_params = sum(t.numel() for t in model.parameters())
    window = config.crop + mcfg.receptive_field - 1
    steps_per_epoch = max(1, len(x) // (config.crop * config.batch_size))
    total = steps_per_epoch * config.epochs
    opt = torch.optim.AdamW(model.parameters(), lr=config.lr, weight_decay=config.weight_decay)
    sched = torch.optim.lr_scheduler.OneCycleLR(opt, max_lr=config.lr, total_steps=total, pct_start=0.1)
    weights = torch.ones(len(MOUTH_PARAMS))
    weights[1] = config.lips_closed_weight
    xt, yt, pt = torch.from_numpy(x), torch.from_numpy(y), torch.from_numpy(p)
    progress(
        f"train: {n_params} parameters, receptive field {mcfg.receptive_field} frames (lookahead {mcfg.lookahead}), "
        f"{len(train_split)} utterances / {len(x)} frames, {config.epochs} epochs x {steps_per_epoch} steps"
    )
    t0 = time.monotonic()
    for epoch in range(config.epochs):
        model.train()
        run_loss = 0.0
        for _ in range(steps_per_epoch):
            starts = rng.integers(0, len(x) - window, size=config.batch_size)
            idx = torch.from_numpy(starts[:, None] + np.arange(window)[None, :])
            tidx = idx[:, mcfg.past : mcfg.past + config.crop]
            vis_logits, par_logits = model.logits(xt[idx])
            labels, params = yt[tidx], pt[tidx]
            mask = labels >= 0
            ce = (
                F.cross_entropy(vis_logits[mask], labels[mask], label_smoothing=config.label_smoothing)
                if mask.any()
                else vis_logits.sum() * 0
            )
            l1 = (torch.abs(torch.sigmoid(par_logits) - params) * weights)[mask].mean() if mask.any() else ce * 0
            loss = ce + config.param_weight * l1
            opt.zero_grad()
            loss.backward()  # type: ignore[no-untyped-call]
            torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
            opt.step()
            sched.step()
            run_loss += loss.item()
        model.eval()
        acc = heldout_accuracy(model, heldout) if len(heldout) else math.nan
        progress(
            f"train: epoch {epoch + 1}/{config.epochs} loss {run_loss / steps_per_epoch:.4f} "
            f"held-out frame accuracy {acc:.3f} ({time.monotonic() - t0:.0f} s)"
        )
    return model


class _Export(torch.nn.Module):
    def __init__(self, net: LipSyncNet) -> None:
        super().__init__()
        self.net = net

    def forward(self, features: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        return self.net(features)  # type: ignore[no-any-return]


def export_onnx(model: LipSyncNet, path: Path, config: TrainConfig, metrics: dict[str, float] | None = None) -> None:
    """Write the model with its streaming geometry in the ONNX metadata (the runtime reads it from there)."""
    import onnx

    model.eval()
    path.parent.mkdir(parents=True, exist_ok=True)
    dummy = torch.full((1, model.config.receptive_field + 9, N_MELS), SILENCE_VALUE)
    # The TorchScript exporter needs no extra package (the dynamo one needs onnxscript) and handles this plain conv
    # stack exactly; torch 2.13 only warns that it is deprecated.
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)
        torch.onnx.export(
            _Export(model),
            (dummy,),
            str(path),
            input_names=["features"],
            output_names=["visemes", "params"],
            dynamic_axes={"features": {1: "time"}, "visemes": {1: "out_time"}, "params": {1: "out_time"}},
            opset_version=17,
            dynamo=False,
        )
    proto = onnx.load(str(path))
    meta = {
        "avaluma.version": MODEL_VERSION,
        "avaluma.past_frames": str(model.config.past),
        "avaluma.lookahead_frames": str(model.config.lookahead),
        "avaluma.visemes": ",".join(VISEMES),
        "avaluma.params": ",".join(MOUTH_PARAMS),
        "avaluma.train_config": json.dumps(asdict(config), sort_keys=True, default=str),
        "avaluma.metrics": json.dumps(metrics or {}, sort_keys=True),
    }
    del proto.metadata_props[:]
    for k, v in meta.items():
        entry = proto.metadata_props.add()
        entry.key, entry.value = k, v
    onnx.save(proto, str(path))
