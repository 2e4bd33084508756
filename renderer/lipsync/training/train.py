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

from avaluma.renderer.lipsync.base import LIPSYNC_SAMPLE_RATE, MOUTH_PARAMS
from avaluma.renderer.lipsync.features import LOG_FLOOR, N_FFT, N_MELS, SILENCE_VALUE, mel_filterbank
from avaluma.renderer.lipsync.training.background import mix_under
from avaluma.renderer.lipsync.training.data import (
    DataConfig,
    HumanConfig,
    MultilingualConfig,
    NativeConfig,
    Split,
    load_or_build,
)
from avaluma.renderer.lipsync.training.model import LipSyncNet, ModelConfig
from avaluma.renderer.lipsync.visemes import PP, VISEMES

MODEL_VERSION = "4"


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
    #: p/b/m frames are few and the most visible miss (a mouth that never closes): their loss counts this much more.
    #: Version 4: 6 (was 4): dev bilabial closure 0.902 -> 0.924 for speech frames closed 0.123 -> 0.139.
    closure_weight: float = 6.0
    #: Share of training windows whose mel axis is stretched by 0.88-1.12 (vocal tract length perturbation).
    vtlp: float = 0.5
    #: Share of training windows cut off above 3.3-4 kHz in the feature domain (the telephone band).
    band_limit: float = 0.4
    #: With recorded background sound (music, effects; ``training/background.py``): how many excerpts of it alone
    #: are added as silence, and the share of training windows with it mixed under them at an SNR in this range.
    background_clips: int = 1000
    background_mix: float = 0.15
    background_snr_db: tuple[float, float] = (5.0, 25.0)
    #: Optimizer steps per epoch; 0 = one pass over the training frames.
    steps_per_epoch: int = 0
    seed: int = 0
    threads: int = 2
    model: ModelConfig = field(default_factory=ModelConfig)
    data: DataConfig = field(default_factory=DataConfig)
    #: Real speech (shared/data/human-speech), used when the corpus is on this machine; None = synthetic only.
    human: HumanConfig | None = field(default_factory=HumanConfig)
    #: The train half of Asterisk's native English prompts (training/prompts.py), used when fetched; None = without.
    native: NativeConfig | None = field(default_factory=NativeConfig)
    #: Other languages spoken by espeak-ng (training/languages.py); None = English only.
    multilingual: MultilingualConfig | None = field(default_factory=MultilingualConfig)


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


def _warp_mels(x: torch.Tensor, factors: torch.Tensor) -> torch.Tensor:
    """Stretch each window's mel axis by its factor (linear interpolation between bins): a cheap vocal tract length
    perturbation in the feature domain. ``x`` is ``[batch, time, N_MELS]``, ``factors`` ``[batch]``."""
    bins = torch.arange(N_MELS, dtype=x.dtype)
    src = (bins[None, :] * factors[:, None]).clamp(0, N_MELS - 1)  # [batch, N_MELS]
    lo = src.floor().long()
    hi = (lo + 1).clamp(max=N_MELS - 1)
    w = (src - lo.to(x.dtype))[:, None, :]
    lo_v = torch.gather(x, 2, lo[:, None, :].expand(-1, x.shape[1], -1))
    hi_v = torch.gather(x, 2, hi[:, None, :].expand(-1, x.shape[1], -1))
    return lo_v * (1 - w) + hi_v * w


#: The feature front end's mel filters (``[fft bins, N_MELS]``, each column sums to 1) and their bins' frequencies,
#: built once for :func:`_band_limit`, which runs on every training step.
_MEL_FILTERS = mel_filterbank()
_FFT_HZ = np.fft.rfftfreq(N_FFT, 1.0 / LIPSYNC_SAMPLE_RATE)


def _band_limit(x: torch.Tensor, cutoffs_hz: npt.NDArray[np.float64]) -> torch.Tensor:
    """Remove the power above each window's cutoff from its log mel features (``x``: ``[batch, time, N_MELS]``): each
    mel band keeps the share of its filter below the cutoff."""
    keep = np.stack([_MEL_FILTERS[c >= _FFT_HZ].sum(0) for c in cutoffs_hz]).astype(np.float32)  # [batch, N_MELS]
    power = (x.exp() - LOG_FLOOR).clamp(min=0.0)
    return torch.log(power * torch.from_numpy(keep)[:, None, :] + LOG_FLOOR)


def train(
    config: TrainConfig,
    data: tuple[Split, Split] | None = None,
    progress: Callable[[str], None] = print,
    extra_train: list[Split] | None = None,
    dev: Split | None = None,
    init: dict[str, torch.Tensor] | None = None,
    on_best: Callable[[LipSyncNet, float], None] | None = None,
    background: npt.NDArray[np.float32] | None = None,
) -> LipSyncNet:
    """Train on the synthetic split plus ``extra_train`` (real speech, other languages); keep the epoch that scores
    best on ``dev`` (real speakers never trained on) when given, else on the synthetic held-out split.

    ``init`` (see :func:`weights_from_onnx`) warm-starts from an exported model of the same shape, feature
    normalisation included: fine-tuning the shipped model reaches a given accuracy in a fraction of the steps.
    ``on_best`` is called with the model whenever an epoch beats the best so far (a long run can be stopped early
    and still leave its best model behind). ``background`` (mel power frames of recorded music and effects,
    :func:`background.power_bank`) is mixed under a share of the windows (``config.background_mix``)."""
    torch.manual_seed(config.seed)
    torch.set_num_threads(config.threads)
    rng = np.random.default_rng(config.seed)
    train_split, heldout = data if data is not None else load_or_build(config.data, progress=progress)
    mcfg = config.model
    parts = [_padded(s, mcfg.past, mcfg.lookahead) for s in [train_split, *(extra_train or [])] if len(s)]
    x = np.concatenate([p[0] for p in parts])
    y = np.concatenate([p[1] for p in parts])
    p = np.concatenate([p[2] for p in parts])
    if init is not None:
        model = LipSyncNet(mcfg, init["mean"], init["std"])
        model.load_state_dict(init)
    else:
        real = x[y >= 0]
        model = LipSyncNet(mcfg, torch.from_numpy(real.mean(0)), torch.from_numpy(real.std(0) + 1e-3))
        del real
    n_params = sum(t.numel() for t in model.parameters())
    window = config.crop + mcfg.receptive_field - 1
    steps_per_epoch = config.steps_per_epoch or max(1, len(x) // (config.crop * config.batch_size))
    total = steps_per_epoch * config.epochs
    opt = torch.optim.AdamW(model.parameters(), lr=config.lr, weight_decay=config.weight_decay)
    sched = torch.optim.lr_scheduler.OneCycleLR(opt, max_lr=config.lr, total_steps=total, pct_start=0.1)
    weights = torch.ones(len(MOUTH_PARAMS))
    weights[1] = config.lips_closed_weight
    xt, yt, pt = torch.from_numpy(x), torch.from_numpy(y), torch.from_numpy(p)
    select = dev if dev is not None and len(dev) else heldout
    select_name = "human dev" if select is dev else "held-out"
    progress(
        f"train: {n_params} parameters, receptive field {mcfg.receptive_field} frames (lookahead {mcfg.lookahead}), "
        f"{len(train_split) + sum(len(s) for s in extra_train or [])} utterances / {len(x)} frames, "
        f"{config.epochs} epochs x {steps_per_epoch} steps, epoch chosen on {select_name}"
    )
    t0 = time.monotonic()
    best: tuple[float, dict[str, torch.Tensor]] | None = None
    for epoch in range(config.epochs):
        model.train()
        run_loss = 0.0
        for _ in range(steps_per_epoch):
            starts = rng.integers(0, len(x) - window, size=config.batch_size)
            idx = torch.from_numpy(starts[:, None] + np.arange(window)[None, :])
            tidx = idx[:, mcfg.past : mcfg.past + config.crop]
            xb = xt[idx]
            if background is not None and config.background_mix > 0:
                xb = mix_under(xb, background, rng, config.background_mix, config.background_snr_db)
            if config.vtlp > 0:
                warp = rng.random(config.batch_size) < config.vtlp
                factors = np.where(warp, rng.uniform(0.88, 1.12, config.batch_size), 1.0)
                xb = _warp_mels(xb, torch.from_numpy(factors.astype(np.float32)))
            if config.band_limit > 0:
                cut = rng.random(config.batch_size) < config.band_limit
                xb = _band_limit(xb, np.where(cut, rng.uniform(3300.0, 4000.0, config.batch_size), 8000.0))
            vis_logits, par_logits = model.logits(xb)
            labels, params = yt[tidx], pt[tidx]
            mask = labels >= 0
            ce = (
                F.cross_entropy(vis_logits[mask], labels[mask], label_smoothing=config.label_smoothing)
                if mask.any()
                else vis_logits.sum() * 0
            )
            frame_w = torch.where(labels == PP, config.closure_weight, 1.0)[..., None]
            err = torch.abs(torch.sigmoid(par_logits) - params) * weights * frame_w
            l1 = err[mask].mean() if mask.any() else ce * 0
            loss = ce + config.param_weight * l1
            opt.zero_grad()
            loss.backward()  # type: ignore[no-untyped-call]
            torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
            opt.step()
            sched.step()
            run_loss += loss.item()
        model.eval()
        acc = heldout_accuracy(model, select) if len(select) else math.nan
        synth = heldout_accuracy(model, heldout) if select is not heldout and len(heldout) else acc
        if best is None or not acc < best[0]:
            best = (acc, {k: v.detach().clone() for k, v in model.state_dict().items()})
            if on_best is not None:
                on_best(model, acc)
        progress(
            f"train: epoch {epoch + 1}/{config.epochs} loss {run_loss / steps_per_epoch:.4f} "
            f"{select_name} frame accuracy {acc:.3f} (synthetic held-out {synth:.3f}) ({time.monotonic() - t0:.0f} s)"
        )
    if best is not None and not math.isnan(best[0]):
        model.load_state_dict(best[1])
        progress(f"train: kept the epoch with {select_name} frame accuracy {best[0]:.3f}")
    return model


def weights_from_onnx(path: Path, config: ModelConfig, *, grow: bool = False) -> dict[str, torch.Tensor]:
    """The state dict of an exported model (its initializers are named ``net.<parameter>``), checked against
    ``config``: a clear error when the shapes differ instead of a half-loaded network.

    ``grow`` accepts a smaller exported network (fewer channels, fewer blocks) and embeds it in ``config``'s shape
    so that the larger network computes exactly what the exported one did (:func:`grown`)."""
    import onnx
    from onnx import numpy_helper

    proto = onnx.load(str(path))
    found = {
        init.name.removeprefix("net."): torch.from_numpy(numpy_helper.to_array(init).copy())
        for init in proto.graph.initializer
        if init.name.startswith("net.")
    }
    if grow:
        return grown(found, config)
    expected = LipSyncNet(config).state_dict()
    mismatched = [k for k, v in expected.items() if k not in found or tuple(found[k].shape) != tuple(v.shape)]
    if mismatched:
        raise ValueError(
            f"{path} does not match the model configuration ({', '.join(mismatched[:4])}...): "
            "train from scratch, use the same --channels, or --grow into the larger network"
        )
    return {k: found[k] for k in expected}


def grown(small: dict[str, torch.Tensor], config: ModelConfig) -> dict[str, torch.Tensor]:
    """A ``config``-shaped state dict that computes exactly what the ``small`` network does (function-preserving
    growth), so training the larger network starts from the smaller one's accuracy.

    Old weights fill the leading slices; new weights start from the usual initialisation, except the ones that
    would change the output: nothing writes into the new residual channels (the input layer's and every residual
    branch's new rows are zero, so those channels hold 0) and no new hidden unit writes into an old channel (its
    ``mix`` column is zero). Blocks the small network lacks get an all-zero ``mix``: an identity. Every zeroed weight
    still receives gradients, so all of the new capacity trains."""
    state = LipSyncNet(config).state_dict()
    for name, tensor in small.items():
        if name not in state:
            raise ValueError(f"cannot grow: the larger network has no {name}")
        target = state[name]
        if tensor.dim() != target.dim() or any(a > b for a, b in zip(tensor.shape, target.shape, strict=True)):
            raise ValueError(f"cannot grow {name} {tuple(tensor.shape)} into {tuple(target.shape)}")
        if name in ("mean", "std"):
            target.copy_(tensor)
            continue
        target[tuple(slice(0, n) for n in tensor.shape)] = tensor
    c_old = small["inp.weight"].shape[0]
    state["inp.weight"][c_old:] = 0
    state["inp.bias"][c_old:] = 0
    for name in state:
        if name.endswith("mix.weight"):
            block = name.removesuffix(".mix.weight")
            if f"{block}.mix.weight" not in small:
                state[name].zero_()
                state[f"{block}.mix.bias"].zero_()
                continue
            state[name][c_old:] = 0
            state[name][:, c_old:] = 0
            state[f"{block}.mix.bias"][c_old:] = 0
    return state


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
            # A dynamic batch axis lets Triton run the windows of many sessions in one call.
            dynamic_axes={
                "features": {0: "batch", 1: "time"},
                "visemes": {0: "batch", 1: "out_time"},
                "params": {0: "batch", 1: "out_time"},
            },
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
