"""One-command training: ``python -m avaluma.renderer.lipsync.training [--epochs N] [--seed S] [--out PATH]``.

Needs the ``train`` extra (torch CPU build). Synthesizes and caches the data on first run (a few minutes on 2 cores),
trains, evaluates on held-out voices and sentences, and writes the ONNX model.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

DEFAULT_OUT = Path(__file__).resolve().parent.parent / "models" / "lipsync.onnx"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m avaluma.renderer.lipsync.training", description=__doc__)
    parser.add_argument("--epochs", type=int, default=None, help="training epochs (default 18)")
    parser.add_argument("--seed", type=int, default=0, help="seed for data, initialisation and batches")
    parser.add_argument("--out", type=Path, default=DEFAULT_OUT, help=f"ONNX output (default {DEFAULT_OUT})")
    parser.add_argument("--cache", type=Path, default=Path("build/lipsync_data"), help="dataset cache folder")
    parser.add_argument("--channels", type=int, default=None, help="network width (default 128)")
    parser.add_argument("--quick", action="store_true", help="seconds-long smoke run: few sentences, tiny model")
    args = parser.parse_args(argv)

    try:
        import torch  # noqa: F401
    except ImportError:
        print("torch is missing: pip install 'avaluma[train]'", file=sys.stderr)
        return 2

    from dataclasses import replace

    from avaluma.renderer.lipsync.training.data import DataConfig, load_or_build
    from avaluma.renderer.lipsync.training.model import ModelConfig
    from avaluma.renderer.lipsync.training.train import TrainConfig, export_onnx, heldout_accuracy, train

    def progress(msg: str) -> None:
        print(msg, flush=True)

    config = TrainConfig(seed=args.seed, data=DataConfig(seed=args.seed))
    if args.quick:
        config = replace(
            config,
            epochs=1,
            batch_size=4,
            crop=50,
            model=ModelConfig(channels=8),
            data=replace(config.data, max_sentences=8, n_generated=0, espeak_per_sentence=1, piper_per_sentence=0.5),
        )
    if args.epochs is not None:
        config = replace(config, epochs=args.epochs)
    if args.channels is not None:
        config = replace(config, model=replace(config.model, channels=args.channels))

    data = load_or_build(config.data, cache_dir=args.cache, progress=progress)
    model = train(config, data, progress=progress)
    metrics = {"heldout_frame_accuracy_100hz": round(heldout_accuracy(model, data[1]), 4)} if len(data[1]) else {}
    export_onnx(model, args.out, config, metrics)
    progress(f"wrote {args.out} ({args.out.stat().st_size / 1e6:.2f} MB) {metrics}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
