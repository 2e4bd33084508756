"""One-command training: ``python -m avaluma.renderer.lipsync.training [--epochs N] [--seed S] [--out PATH]``.

Needs the ``train`` extra (torch CPU build). Synthesizes and caches the data on first run (a few minutes on 2 cores),
adds the real speech of ``shared/data/human-speech`` when that corpus is on the machine (train speakers only, each
utterance clean and degraded like deployment audio; ``$AVALUMA_HUMAN_SPEECH`` points elsewhere, ``--no-human``
leaves it out), the train half of Asterisk's native English prompts when they are fetched (``--native``, by default
``build/native-speech/files`` from ``scripts/fetch-native-speech``) and recorded music and sound effects when there is
a folder of them (``--background``, by default ``build/background`` from ``scripts/fetch-background-audio``), trains,
keeps the epoch that scores best on the human dev speakers, and writes the ONNX model.
"""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path
from typing import Any

from avaluma.renderer.lipsync.training import prompts

DEFAULT_OUT = Path(__file__).resolve().parent.parent / "models" / "lipsync.onnx"
#: Where ``scripts/fetch-background-audio`` puts the recorded music and effects (relative to the working directory).
DEFAULT_BACKGROUND = Path("build/background")
#: Where ``scripts/fetch-native-speech`` puts Asterisk's English prompts (relative to the working directory).
DEFAULT_NATIVE = Path("build/native-speech/files")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m avaluma.renderer.lipsync.training", description=__doc__)
    parser.add_argument("--epochs", type=int, default=None, help="training epochs (default 18)")
    parser.add_argument(
        "--steps-per-epoch", type=int, default=None, help="optimizer steps per epoch (default: one pass)"
    )
    parser.add_argument("--lr", type=float, default=None, help="peak learning rate (default 2e-3)")
    parser.add_argument("--seed", type=int, default=0, help="seed for data, initialisation and batches")
    parser.add_argument("--out", type=Path, default=DEFAULT_OUT, help=f"ONNX output (default {DEFAULT_OUT})")
    parser.add_argument("--cache", type=Path, default=Path("build/lipsync_data"), help="dataset cache folder")
    parser.add_argument("--channels", type=int, default=None, help="network width (default 128)")
    parser.add_argument("--quick", action="store_true", help="seconds-long smoke run: few sentences, tiny model")
    parser.add_argument(
        "--init-from", type=Path, default=None, help="warm-start from an exported model of the same shape (fine-tune)"
    )
    parser.add_argument(
        "--grow",
        action="store_true",
        help="with --init-from: embed the smaller exported network in this larger one (same output to start with)",
    )
    parser.add_argument(
        "--causal-dilations",
        type=lambda v: tuple(int(d) for d in v.split(",") if d),
        default=None,
        help="extra past-only blocks, e.g. 16,32 (more context, no added latency)",
    )
    parser.add_argument("--no-human", action="store_true", help="synthetic speech only, even when the corpus is here")
    parser.add_argument(
        "--background",
        type=Path,
        default=None,
        help="folder of recorded music and sound effects with nobody speaking, used as silence and mixed under speech "
        f"(default $AVALUMA_BACKGROUND_AUDIO, else {DEFAULT_BACKGROUND} when scripts/fetch-background-audio made it)",
    )
    parser.add_argument(
        "--threads", type=int, default=None, help="torch threads and data-building processes (default 2)"
    )
    parser.add_argument("--no-background", action="store_true", help="no recorded background audio, even when found")
    parser.add_argument(
        "--native",
        type=Path,
        default=None,
        help=f"Asterisk's English prompts, whose train half is added (default {DEFAULT_NATIVE} when "
        "scripts/fetch-native-speech made it)",
    )
    parser.add_argument("--no-native", action="store_true", help="no native English prompts, even when found")
    args = parser.parse_args(argv)
    native = None if args.no_native else args.native or (DEFAULT_NATIVE if DEFAULT_NATIVE.is_dir() else None)
    if native is not None and not prompts.found(native):
        print(
            f"native speech: no Asterisk prompts in {native} (scripts/fetch-native-speech fetches them; --native DIR "
            "names the folder it printed, --no-native leaves them out)",
            file=sys.stderr,
        )
        return 2
    folder = args.background or (Path(v) if (v := os.environ.get("AVALUMA_BACKGROUND_AUDIO")) else None)
    if folder is None and DEFAULT_BACKGROUND.is_dir():
        folder = DEFAULT_BACKGROUND
    if args.no_background:
        folder = None
    if folder is not None and not folder.is_dir():
        print(
            f"background audio: {folder} is not a folder (--background or $AVALUMA_BACKGROUND_AUDIO)", file=sys.stderr
        )
        return 2

    try:
        import torch  # noqa: F401
    except ImportError:
        print("torch is missing: pip install 'avaluma[train]'", file=sys.stderr)
        return 2

    from dataclasses import replace

    from avaluma.renderer.lipsync.training import background, human
    from avaluma.renderer.lipsync.training.data import (
        DataConfig,
        HumanConfig,
        MultilingualConfig,
        NativeConfig,
        background_split,
        human_eval_split,
        load_or_build,
        load_or_build_human,
        load_or_build_multilingual,
        load_or_build_native,
        nonspeech_split,
    )
    from avaluma.renderer.lipsync.training.model import ModelConfig
    from avaluma.renderer.lipsync.training.train import (
        TrainConfig,
        export_onnx,
        heldout_accuracy,
        train,
        weights_from_onnx,
    )

    def progress(msg: str) -> None:
        print(msg, flush=True)

    config = TrainConfig(
        seed=args.seed,
        data=DataConfig(seed=args.seed),
        human=HumanConfig(seed=args.seed),
        multilingual=MultilingualConfig(seed=args.seed),
        native=NativeConfig(seed=args.seed),
    )
    if args.quick:
        config = replace(
            config,
            epochs=1,
            batch_size=4,
            crop=50,
            model=ModelConfig(channels=8),
            data=replace(config.data, max_sentences=8, n_generated=0, espeak_per_sentence=1, piper_per_sentence=0.5),
            human=replace(config.human, max_utterances=4, copies=1, workers=1) if config.human else None,
            multilingual=None,
            native=None,
        )
    if args.no_human or human.corpus_root() is None:
        if not args.no_human:
            progress(
                "data: human-speech corpus not found (set AVALUMA_HUMAN_SPEECH): training on synthetic speech only"
            )
        config = replace(config, human=None)
    if native is None or args.quick:
        if not args.no_native and not args.quick:
            progress("data: no native English prompts (scripts/fetch-native-speech, or --native DIR): left out")
        config = replace(config, native=None)
    if args.epochs is not None:
        config = replace(config, epochs=args.epochs)
    if args.steps_per_epoch is not None:
        config = replace(config, steps_per_epoch=args.steps_per_epoch)
    if args.lr is not None:
        config = replace(config, lr=args.lr)
    if args.channels is not None:
        config = replace(config, model=replace(config.model, channels=args.channels))
    if args.causal_dilations is not None:
        config = replace(config, model=replace(config.model, causal_dilations=args.causal_dilations))
    if args.threads is not None:
        config = replace(config, threads=args.threads)
        if config.human is not None:
            config = replace(config, human=replace(config.human, workers=args.threads))
        if config.native is not None:
            config = replace(config, native=replace(config.native, workers=args.threads))

    data = load_or_build(config.data, cache_dir=args.cache, progress=progress)
    extra, dev = [], None
    if config.multilingual is not None:
        extra.append(load_or_build_multilingual(config.multilingual, cache_dir=args.cache, progress=progress))
    if config.human is not None:
        extra.append(load_or_build_human(config.human, cache_dir=args.cache, progress=progress))
        extra.append(nonspeech_split(8 if args.quick else 300, seed=args.seed))
        dev = human_eval_split("dev", limit=8 if args.quick else 0)
    if config.native is not None and native is not None:
        extra.append(load_or_build_native(config.native, native, cache_dir=args.cache, progress=progress))
    bank = None
    if folder is None:
        progress("data: no recorded background audio (scripts/fetch-background-audio, or --background DIR): left out")
    elif recordings := background.load_recordings(folder, progress):
        extra.append(background_split(recordings, 16 if args.quick else config.background_clips, seed=args.seed))
        bank = background.power_bank(recordings)
    init = weights_from_onnx(args.init_from, config.model, grow=args.grow) if args.init_from else None

    def keep_best(candidate: Any, accuracy: float) -> None:
        export_onnx(candidate, args.out, config, {"selection_frame_accuracy_100hz": round(accuracy, 4)})

    model = train(
        config, data, progress=progress, extra_train=extra, dev=dev, init=init, on_best=keep_best, background=bank
    )
    metrics = {"heldout_frame_accuracy_100hz": round(heldout_accuracy(model, data[1]), 4)} if len(data[1]) else {}
    if dev is not None:
        metrics["human_dev_frame_accuracy_100hz"] = round(heldout_accuracy(model, dev), 4)
    export_onnx(model, args.out, config, metrics)
    progress(f"wrote {args.out} ({args.out.stat().st_size / 1e6:.2f} MB) {metrics}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
