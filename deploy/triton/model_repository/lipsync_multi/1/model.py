"""Triton python-backend adapter for the streaming lip-sync model: translate requests, delegate, translate back.

All the logic (per-sequence state keyed by CORRID, the ONNX network, the wire contract) is in
``avaluma.renderer.lipsync.triton_model``, which the tests import directly. This file is copied unchanged into every
version ``avaluma models push`` creates; a version directory holding a ``model.onnx`` serves that file, otherwise the
model bundled with the installed ``avaluma`` package is served.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import triton_python_backend_utils as pb_utils  # provided by the python backend stub

from avaluma.renderer.lipsync import triton_model as tm


class TritonPythonModel:
    def initialize(self, args: dict[str, str]) -> None:
        config = json.loads(args["model_config"])
        parameters = config.get("parameters", {})
        threads = int(parameters.get("onnx_threads", {}).get("string_value", "1"))
        # batch_windows: the requests of one execute() call (one per session) share one network call per window
        # length; "false" runs them one after another (same frames, bit for bit).
        self.batch = parameters.get("batch_windows", {}).get("string_value", "true").lower() == "true"
        # protocol "multi" (model lipsync_multi): one request carries the chunks of many sessions, see triton_model.
        self.multi = parameters.get("protocol", {}).get("string_value", "sequence") == "multi"
        version_dir = Path(args["model_repository"]) / args["model_version"]
        gpu = int(args["model_instance_device_id"]) if args.get("model_instance_kind") == "GPU" else None
        self.states = tm.load_states(version_dir, threads=threads, gpu=gpu, batch=self.batch)

    def execute(self, requests: list[object]) -> list[object]:
        if self.multi:
            return [_multi_response(_outcome(lambda request=request: self._multi(request))) for request in requests]
        if not self.batch:
            return [
                _response(_outcome(lambda request=request: self.states.step(_decode(request)))) for request in requests
            ]
        decoded = [_outcome(lambda request=request: _decode(request)) for request in requests]
        steps = [step for step in decoded if isinstance(step, tm.Step)]
        frames = iter(self.states.step_many(steps))
        return [_response(next(frames) if isinstance(step, tm.Step) else step) for step in decoded]

    def _multi(self, request: object) -> list[object]:
        names = ("CORRID", "START", "END", tm.INPUT_FLUSH, tm.INPUT_FPS, tm.INPUT_LENGTH, tm.INPUT_AUDIO)
        steps = tm.decode_multi(*(_input(request, name) for name in names))
        if self.batch:
            return self.states.step_many(steps)
        return [_outcome(lambda step=step: self.states.step(step)) for step in steps]

    def finalize(self) -> None:
        self.states = None


def _decode(request: object) -> tm.Step:
    return tm.decode_step(
        corrid=_input(request, "CORRID").reshape(-1)[0],
        start=_input(request, "START").reshape(-1)[0],
        end=_input(request, "END").reshape(-1)[0],
        audio=_input(request, tm.INPUT_AUDIO),
        fps=_input(request, tm.INPUT_FPS),
        flush=_input(request, tm.INPUT_FLUSH),
    )


def _outcome(call):
    try:
        return call()
    except Exception as exc:  # one bad request fails alone; the other sessions in this batch go on
        return exc


def _response(outcome: object) -> object:
    if isinstance(outcome, Exception):
        return pb_utils.InferenceResponse(
            output_tensors=[], error=pb_utils.TritonError(f"{type(outcome).__name__}: {outcome}")
        )
    params, visemes = tm.frames_to_arrays(outcome)
    return pb_utils.InferenceResponse(
        output_tensors=[pb_utils.Tensor(tm.OUTPUT_PARAMS, params), pb_utils.Tensor(tm.OUTPUT_VISEMES, visemes)]
    )


def _multi_response(outcome: object) -> object:
    if isinstance(outcome, Exception):  # the request as a whole did not decode
        return _response(outcome)
    counts, params, visemes, errors = tm.encode_multi(outcome)
    return pb_utils.InferenceResponse(
        output_tensors=[
            pb_utils.Tensor(tm.OUTPUT_COUNT, counts),
            pb_utils.Tensor(tm.OUTPUT_PARAMS, params),
            pb_utils.Tensor(tm.OUTPUT_VISEMES, visemes),
            pb_utils.Tensor(tm.OUTPUT_ERROR, np.array(errors, dtype=np.object_)),
        ]
    )


def _input(request: object, name: str):
    tensor = pb_utils.get_input_tensor_by_name(request, name)
    if tensor is None:
        raise tm.SequenceError(f"request has no {name} input")
    return tensor.as_numpy()
