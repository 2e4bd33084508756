"""Seconds-long smoke run of the real training command: synthesize, train, export, load into the backend.

Needs the ``train`` extra (torch CPU build, espeakng-loader, scipy); skipped with the reason when it is missing.
"""

from __future__ import annotations

import math

import numpy as np
import pytest

pytest.importorskip("torch", reason="torch is not installed: pip install 'avaluma[train]'")
pytest.importorskip("espeakng_loader", reason="espeakng-loader is not installed: pip install 'avaluma[train]'")
pytest.importorskip("piper", reason="piper-tts is not installed: pip install 'avaluma[train]'")


@pytest.mark.timeout(900)  # two short runs; a busy 2-core CI machine has taken 5 minutes for them
def test_quick_training_produces_a_streaming_model(tmp_path, capsys) -> None:
    from avaluma.renderer.lipsync.onnx_backend import OnnxBackend, OnnxOptions
    from avaluma.renderer.lipsync.training.__main__ import main

    out = tmp_path / "tiny.onnx"
    assert main(["--quick", "--no-background", "--cache", str(tmp_path / "cache"), "--out", str(out)]) == 0
    log = capsys.readouterr().out
    assert "data: cached in" in log and "epoch 1/1" in log and "wrote" in log

    backend = OnnxBackend(OnnxOptions(model_path=str(out)))
    audio = np.random.default_rng(0).standard_normal(8000).astype(np.float32) * 0.1
    frames = backend.analyze(audio, fps=30)
    assert len(frames) == math.ceil(len(audio) * 30 / 16000)
    assert np.isfinite(frames.params).all()

    # Same seed, same cached data: the same weights (reproducibility).
    again = tmp_path / "again.onnx"
    assert main(["--quick", "--no-background", "--cache", str(tmp_path / "cache"), "--out", str(again)]) == 0
    np.testing.assert_allclose(
        OnnxBackend(OnnxOptions(model_path=str(again))).analyze(audio, fps=30).params, frames.params, atol=1e-6
    )


@pytest.mark.timeout(600)
def test_quick_training_with_recorded_background_audio(tmp_path, capsys) -> None:
    """``--background DIR``: its recordings become silence clips and are mixed under speech; a wrong folder is one
    clear error before any data is built."""
    import wave

    from avaluma.renderer.lipsync.onnx_backend import OnnxBackend, OnnxOptions
    from avaluma.renderer.lipsync.training.__main__ import main

    folder = tmp_path / "music"
    folder.mkdir()
    t = np.arange(3 * 16000) / 16000
    for name, tone in (("a.wav", 0.3 * np.sin(2 * np.pi * 196 * t)), ("b.wav", 0.2 * np.sin(2 * np.pi * 523 * t))):
        with wave.open(str(folder / name), "wb") as w:
            w.setnchannels(1)
            w.setsampwidth(2)
            w.setframerate(16000)
            w.writeframes((tone * 32767).astype("<i2").tobytes())

    assert main(["--quick", "--background", str(tmp_path / "missing"), "--out", str(tmp_path / "x.onnx")]) == 2
    assert "is not a folder" in capsys.readouterr().err
    assert main(["--quick", "--native", str(folder), "--out", str(tmp_path / "x.onnx")]) == 2  # no prompts there
    assert "no Asterisk prompts in" in capsys.readouterr().err
    assert not (tmp_path / "x.onnx").exists()

    out = tmp_path / "tiny.onnx"
    assert main(["--quick", "--cache", str(tmp_path / "cache"), "--background", str(folder), "--out", str(out)]) == 0
    log = capsys.readouterr().out
    assert "background audio: 2 recordings" in log and "wrote" in log
    frames = OnnxBackend(OnnxOptions(model_path=str(out))).analyze(t[:8000].astype(np.float32), fps=25)
    assert np.isfinite(frames.params).all()
