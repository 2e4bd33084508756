"""WebRTC noise suppression as a LiveKit ``rtc.FrameProcessor`` for the agent's room input."""

from __future__ import annotations

from livekit import rtc

#: WebRTC's audio processing works on 10 ms blocks only.
BLOCK_MS = 10


class WebRTCNoiseSuppressor(rtc.FrameProcessor[rtc.AudioFrame]):
    """Runs ``rtc.AudioProcessingModule`` over each frame, 10 ms block by 10 ms block, in place.

    Room input frames are multiples of 10 ms (LiveKit Agents uses 50 ms); a trailing partial block, if any, passes
    through unprocessed rather than being delayed to the next frame, so the processor never adds latency.
    """

    def __init__(
        self, *, noise_suppression: bool = True, high_pass_filter: bool = True, auto_gain_control: bool = False
    ) -> None:
        self._apm: rtc.AudioProcessingModule | None = rtc.AudioProcessingModule(
            noise_suppression=noise_suppression,
            high_pass_filter=high_pass_filter,
            auto_gain_control=auto_gain_control,
        )
        self._enabled = True

    @property
    def enabled(self) -> bool:
        return self._enabled

    @enabled.setter
    def enabled(self, value: bool) -> None:
        self._enabled = value

    def _process(self, frame: rtc.AudioFrame) -> rtc.AudioFrame:
        if not self._enabled or self._apm is None:
            return frame
        block = frame.sample_rate * BLOCK_MS // 1000
        channels = frame.num_channels
        data = bytearray(frame.data.cast("B"))
        bytes_per_block = block * channels * 2
        out = bytearray()
        for start in range(0, len(data) - bytes_per_block + 1, bytes_per_block):
            piece = rtc.AudioFrame(bytes(data[start : start + bytes_per_block]), frame.sample_rate, channels, block)
            self._apm.process_stream(piece)
            out += piece.data.cast("B")
        out += data[len(out) :]
        return rtc.AudioFrame(bytes(out), frame.sample_rate, channels, frame.samples_per_channel)

    def _close(self) -> None:
        self._apm = None
