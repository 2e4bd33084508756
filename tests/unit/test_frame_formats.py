"""Wire encodings of video frames: sizes, round trips, odd dimensions."""

from __future__ import annotations

import numpy as np
import pytest

from avaluma.renderer.frame_formats import FrameEncoding, decode_frame, encode_frame, i420_size, rgb_to_i420


def smooth_image(height: int, width: int) -> np.ndarray:
    y, x = np.mgrid[0:height, 0:width]
    return np.stack([x * 255 // max(width - 1, 1), y * 255 // max(height - 1, 1), (x + y) % 256], -1).astype(np.uint8)


@pytest.mark.parametrize(("height", "width"), [(64, 48), (33, 17), (1, 1)])
def test_rgb24_round_trip_is_exact(height: int, width: int) -> None:
    image = smooth_image(height, width)
    data = encode_frame(image, FrameEncoding.RGB24)
    assert len(data) == width * height * 3
    assert np.array_equal(decode_frame(data, FrameEncoding.RGB24, width, height), image)


@pytest.mark.parametrize(("height", "width"), [(64, 48), (33, 17)])
def test_i420_layout_and_round_trip(height: int, width: int) -> None:
    image = smooth_image(height, width)
    data = encode_frame(image, FrameEncoding.I420)
    assert len(data) == i420_size(width, height) == width * height + 2 * ((width + 1) // 2) * ((height + 1) // 2)
    back = decode_frame(data, FrameEncoding.I420, width, height)
    assert back.shape == image.shape
    assert np.abs(back.astype(int) - image.astype(int)).mean() < 8  # chroma is subsampled


def test_i420_of_known_colours() -> None:
    # BT.601 limited range: black -> Y 16, white -> Y 235, grey -> U = V = 128.
    for value, luma in ((0, 16), (255, 235)):
        data = rgb_to_i420(np.full((2, 2, 3), value, np.uint8))
        assert list(data) == [luma] * 4 + [128, 128]


def test_jpeg_decodes_to_the_same_picture() -> None:
    image = smooth_image(64, 64)
    data = encode_frame(image, FrameEncoding.JPEG, jpeg_quality=95)
    assert data[:2] == b"\xff\xd8"
    assert np.abs(decode_frame(data, FrameEncoding.JPEG, 64, 64).astype(int) - image.astype(int)).mean() < 4
    assert len(encode_frame(image, FrameEncoding.JPEG, jpeg_quality=10)) < len(data)


def test_bad_input_is_refused() -> None:
    with pytest.raises(ValueError, match="H x W x 3 uint8"):
        encode_frame(np.zeros((4, 4), np.uint8), FrameEncoding.RGB24)
    with pytest.raises(ValueError, match="quality"):
        encode_frame(np.zeros((4, 4, 3), np.uint8), FrameEncoding.JPEG, jpeg_quality=0)
    with pytest.raises(ValueError, match="needs 48 bytes"):
        decode_frame(b"\x00" * 47, FrameEncoding.RGB24, 4, 4)
    with pytest.raises(ValueError, match="I420"):
        decode_frame(b"\x00" * 3, FrameEncoding.I420, 4, 4)
