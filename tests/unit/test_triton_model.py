"""The per-sequence state the Triton model keeps (imported directly, no Triton): START/END/FLUSH semantics, equality
with the in-process backend, isolation between correlation ids, and clear errors for requests out of sequence."""

from __future__ import annotations

import numpy as np
import pytest

from avaluma.renderer.lipsync.base import MouthFrames
from avaluma.renderer.lipsync.features import N_MELS
from avaluma.renderer.lipsync.onnx_backend import DEFAULT_MODEL, OnnxBackend, OnnxModel
from avaluma.renderer.lipsync.triton_model import (
    SequenceError,
    SequenceStates,
    Step,
    arrays_to_frames,
    cuda_providers,
    decode_multi,
    decode_step,
    encode_multi,
    frames_to_arrays,
    load_states,
    resolve_model_path,
    split_multi,
)

SR = 16_000


@pytest.fixture(scope="module")
def model() -> OnnxModel:
    return OnnxModel(DEFAULT_MODEL)


def audio(seconds: float, seed: int) -> np.ndarray:
    rng = np.random.default_rng(seed)
    n = int(seconds * SR)
    envelope = np.clip(np.sin(np.arange(n) / SR * 2 * np.pi * 3), 0, None)
    return (rng.standard_normal(n) * 0.2 * envelope).astype(np.float32)


def run_sequence(states: SequenceStates, corrid: int, x: np.ndarray, chunk: int, fps: float = 25) -> MouthFrames:
    parts = []
    starts = list(range(0, len(x), chunk))
    for i, s in enumerate(starts):
        parts.append(states.step(Step(corrid, i == 0, False, x[s : s + chunk], fps, False)))
    parts.append(states.step(Step(corrid, False, True, np.zeros(0, np.float32), fps, True)))
    return MouthFrames.concat(parts)


def test_a_sequence_equals_the_in_process_backend(model: OnnxModel) -> None:
    states = SequenceStates(model)
    x = audio(1.3, seed=1)
    got = run_sequence(states, 7, x, chunk=700, fps=30)
    expected = OnnxBackend().analyze(x, fps=30)
    # Equal to float rounding: the network runs on other window lengths when the audio is chunked differently.
    np.testing.assert_allclose(got.params, expected.params, atol=1e-5)
    assert got.visemes is not None and expected.visemes is not None
    np.testing.assert_allclose(got.visemes, expected.visemes, atol=1e-5)
    assert len(states) == 0  # END dropped the state


def test_interleaved_ids_do_not_share_state(model: OnnxModel) -> None:
    states = SequenceStates(model)
    a, b = audio(1.0, seed=2), audio(1.0, seed=3)
    out: dict[int, list[MouthFrames]] = {1: [], 2**63 - 1: []}
    for i, s in enumerate(range(0, len(a), 1000)):
        for corrid, x in ((1, a), (2**63 - 1, b)):
            out[corrid].append(states.step(Step(corrid, i == 0, False, x[s : s + 1000], 25, False)))
    assert len(states) == 2
    for corrid, x in ((1, a), (2**63 - 1, b)):
        out[corrid].append(states.step(Step(corrid, False, True, np.zeros(0, np.float32), 25, True)))
        expected = OnnxBackend().analyze(x, fps=25).params
        np.testing.assert_allclose(MouthFrames.concat(out[corrid]).params, expected, atol=1e-5)


def test_start_resets_an_existing_sequence(model: OnnxModel) -> None:
    states = SequenceStates(model)
    x = audio(0.8, seed=4)
    states.step(Step(5, True, False, audio(0.5, seed=9), 25, False))
    assert len(run_sequence(states, 5, x, chunk=4000)) == 20


def test_requests_out_of_sequence_are_refused_clearly(model: OnnxModel) -> None:
    states = SequenceStates(model)
    with pytest.raises(SequenceError, match=r"no state .* start a new sequence"):
        states.step(Step(9, False, False, audio(0.1, 0), 25, False))
    with pytest.raises(SequenceError, match="FPS > 0"):
        states.step(Step(9, True, False, audio(0.1, 0), 0, False))
    states.step(Step(9, True, False, audio(0.1, 0), 25, False))
    with pytest.raises(SequenceError, match="FPS changed"):
        states.step(Step(9, False, False, audio(0.1, 0), 30, False))
    assert 9 in states  # a refused request does not destroy the sequence


def test_idle_sequences_are_evicted(model: OnnxModel) -> None:
    now = [0.0]
    states = SequenceStates(model, ttl_s=10, clock=lambda: now[0])
    states.step(Step(1, True, False, audio(0.1, 0), 25, False))
    now[0] = 5.0
    states.step(Step(2, True, False, audio(0.1, 0), 25, False))
    now[0] = 12.0
    states.step(Step(2, False, False, audio(0.1, 0), 25, False))  # any request sweeps the stale ones
    assert 1 not in states and 2 in states


def test_tensor_round_trip_and_decoding() -> None:
    frames = MouthFrames(np.random.rand(3, 4).astype(np.float32), np.random.rand(3, 15).astype(np.float32))
    params, visemes = frames_to_arrays(frames)
    assert params.shape == (1, 3, 4) and visemes.shape == (1, 3, 15) and params.flags.c_contiguous
    back = arrays_to_frames(params, visemes)
    np.testing.assert_array_equal(back.params, frames.params)
    step = decode_step(
        np.uint64(2**64 - 1), np.array([[1]]), np.array([[0]]), np.ones((1, 5), np.float32),
        np.array([[25.0]], np.float32), np.array([[True]]),
    )  # fmt: skip
    assert step == Step(2**64 - 1, True, False, step.audio, 25.0, True) and step.audio.shape == (5,)


def test_version_directory_model_file(tmp_path) -> None:
    assert resolve_model_path(tmp_path) == DEFAULT_MODEL  # a version without model.onnx serves the bundled model
    (tmp_path / "model.onnx").write_bytes(DEFAULT_MODEL.read_bytes())
    assert resolve_model_path(tmp_path) == tmp_path / "model.onnx"


def test_the_model_loads_on_the_providers_it_is_given(model: OnnxModel) -> None:
    import onnxruntime as ort

    explicit = OnnxModel(DEFAULT_MODEL, providers=[("CPUExecutionProvider", {})])
    assert explicit._session.get_providers() == ["CPUExecutionProvider"] == model._session.get_providers()
    x = np.zeros((model.past + 3 + model.lookahead, N_MELS), dtype=np.float32)
    np.testing.assert_array_equal(explicit.run(x)[1], model.run(x)[1])
    if "CUDAExecutionProvider" in ort.get_available_providers():
        assert cuda_providers(0)[0] == ("CUDAExecutionProvider", {"device_id": 0})
    else:  # a GPU instance on a CPU-only onnxruntime fails to load, saying what to install
        with pytest.raises(RuntimeError, match="install onnxruntime-gpu"):
            load_states(None, gpu=0)


@pytest.fixture(scope="module")
def batching_model() -> OnnxModel:
    return OnnxModel(DEFAULT_MODEL, batch=True)


def test_batched_windows_equal_single_runs_bit_for_bit(batching_model: OnnxModel) -> None:
    assert batching_model.batches  # the shipped file fixes batch to 1: the axis was made dynamic at load
    need = batching_model.past + batching_model.lookahead + 1
    rng = np.random.default_rng(0)
    windows = [(rng.standard_normal((need + k, N_MELS)) - 4).astype(np.float32) for k in (3, 3, 0, 3, 9, 0, 3)]
    for window, (vis, par) in zip(windows, batching_model.run_batch(windows), strict=True):
        v1, p1 = batching_model.run(window)
        assert np.array_equal(vis, v1) and np.array_equal(par, p1)


def sessions_schedule(n: int, chunk: int) -> list[list[Step]]:
    """Rounds of requests, one per session per round, as Triton hands them to one execute(): sessions start at
    different rounds and end at different rounds (the last request of each flushes and ENDs)."""
    clips = [audio(0.4 + 0.15 * i, seed=20 + i) for i in range(n)]
    per_session = []
    for i, x in enumerate(clips):
        starts = list(range(0, len(x), chunk))
        steps = [Step(100 + i, j == 0, False, x[s : s + chunk], 25, False) for j, s in enumerate(starts)]
        steps.append(Step(100 + i, False, True, np.zeros(0, np.float32), 25, True))
        per_session.append([None] * i + steps)  # session i starts i rounds late
    rounds = max(len(s) for s in per_session)
    return [[s[r] for s in per_session if r < len(s) and s[r] is not None] for r in range(rounds)]


def test_step_many_equals_one_step_after_the_other(model: OnnxModel, batching_model: OnnxModel) -> None:
    schedule = sessions_schedule(6, chunk=640)
    one_by_one, batched = SequenceStates(model), SequenceStates(batching_model)
    for steps in schedule:
        expected = [one_by_one.step(step) for step in steps]
        got = batched.step_many(steps)
        for e, g in zip(expected, got, strict=True):
            assert isinstance(g, MouthFrames)
            assert np.array_equal(g.params, e.params)
            assert g.visemes is not None and e.visemes is not None and np.array_equal(g.visemes, e.visemes)
    assert len(batched) == 0 == len(one_by_one)  # every END dropped its state


def test_a_bad_request_in_a_batch_fails_alone(batching_model: OnnxModel) -> None:
    states = SequenceStates(batching_model)
    x = audio(0.5, seed=5)
    good = [Step(1, True, False, x[:640], 25, False), Step(2, True, False, x[:640], 25, False)]
    states.step_many(good)
    got = states.step_many(
        [
            Step(1, False, False, x[640:1280], 25, False),
            Step(99, False, False, x[:640], 25, False),  # never STARTed
            Step(2, False, True, x[640:1280], 30, True),  # FPS changed
        ]
    )
    assert isinstance(got[0], MouthFrames)
    assert isinstance(got[1], SequenceError) and "no state" in str(got[1])
    assert isinstance(got[2], SequenceError) and "FPS changed" in str(got[2])
    assert 1 in states and 2 not in states  # the END of the failed request still dropped its state


def test_a_multi_request_equals_the_same_steps_one_by_one(model: OnnxModel) -> None:
    """The multi contract (one request for many sessions): entries decode to the steps they stand for, the results
    travel back per entry, and an entry that fails (unknown sequence) fails alone."""
    a, b = audio(0.6, seed=3), audio(0.6, seed=4)
    one_by_one = SequenceStates(model)
    expected = [one_by_one.step(Step(1, True, False, a, 25, False)), one_by_one.step(Step(2, True, True, b, 25, True))]
    states = SequenceStates(model)
    steps = decode_multi([1, 2, 3], [True, True, False], [False, True, False], [False, True, False], [25, 25, 25],
                         [len(a), len(b), 0], np.concatenate([a, b]))  # fmt: skip
    assert [(s.corrid, s.start, s.end, s.flush, len(s.audio)) for s in steps] == [
        (1, True, False, False, len(a)), (2, True, True, True, len(b)), (3, False, False, False, 0)
    ]  # fmt: skip
    counts, params, visemes, errors = encode_multi(states.step_many(steps))
    assert errors[:2] == [b"", b""] and b"sequence 3 has no state" in errors[2]
    got = split_multi(counts, params, visemes)
    assert [len(g) for g in got] == [len(e) for e in expected] + [0] and len(got[0]) > 0
    for g, e in zip(got, expected, strict=False):
        assert np.array_equal(g.params, e.params) and e.visemes is not None
        assert np.array_equal(g.visemes, e.visemes)
    assert 1 in states and 2 not in states  # END dropped the second sequence


def test_a_multi_request_whose_tensors_do_not_fit_is_refused() -> None:
    with pytest.raises(SequenceError, match="must all have 2 entries"):
        decode_multi([1, 2], [True], [False, False], [False, False], [25, 25], [0, 0], np.zeros(0, np.float32))
    with pytest.raises(SequenceError, match="LENGTH adds up to 5, AUDIO holds 4"):
        decode_multi([1], [True], [False], [False], [25], [5], np.zeros(4, np.float32))
