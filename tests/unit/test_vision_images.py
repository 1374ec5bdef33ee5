"""Images from cameras: decoded upright, or refused with the reason, before any big allocation."""

from __future__ import annotations

import io
import struct
import zlib

import numpy as np
import pytest
from PIL import Image

from percept.v1 import vision_pb2
from percept.vision.images import ImageError, ImageTooLargeError, decode_image, encode_jpeg

LIMIT = 36_000_000


def encoded(data: bytes) -> vision_pb2.Image:
    return vision_pb2.Image(encoded=data)


def png(array: np.ndarray) -> bytes:
    out = io.BytesIO()
    Image.fromarray(array).save(out, format="PNG")
    return out.getvalue()


def png_claiming(width: int, height: int) -> bytes:
    """A tiny PNG whose header claims `width` x `height` (a decompression bomb's header)."""
    data = bytearray(png(np.zeros((1, 1, 3), np.uint8)))
    ihdr = data.index(b"IHDR")
    data[ihdr + 4 : ihdr + 12] = struct.pack(">II", width, height)
    crc = zlib.crc32(bytes(data[ihdr : ihdr + 17])) & 0xFFFFFFFF
    data[ihdr + 17 : ihdr + 21] = struct.pack(">I", crc)
    return bytes(data)


def test_jpeg_png_and_raw_decode_to_the_same_rgb_layout() -> None:
    rng = np.random.default_rng(1)
    array = rng.integers(0, 255, (48, 64, 3), dtype=np.uint8)
    from_png = decode_image(encoded(png(array)), LIMIT)
    assert from_png.shape == (48, 64, 3) and np.array_equal(from_png, array)
    raw = vision_pb2.Image(raw=vision_pb2.RawImage(width=64, height=48, rgb=array.tobytes()))
    assert np.array_equal(decode_image(raw, LIMIT), array)
    ys, xs = np.mgrid[0:48, 0:64]
    smooth = np.stack([xs * 4, ys * 5, (xs + ys) * 2], axis=2).astype(np.uint8)
    from_jpeg = decode_image(encoded(encode_jpeg(smooth, quality=95)), LIMIT)
    assert from_jpeg.shape == (48, 64, 3)
    assert np.abs(from_jpeg.astype(int) - smooth).mean() < 3  # lossy, the same picture


def test_exif_orientation_is_applied() -> None:
    wide = np.zeros((20, 40, 3), np.uint8)
    out = io.BytesIO()
    exif = Image.Exif()
    exif[0x0112] = 6  # rotate 90 degrees clockwise to view
    Image.fromarray(wide).save(out, format="JPEG", exif=exif)
    assert decode_image(encoded(out.getvalue()), LIMIT).shape == (40, 20, 3)


@pytest.mark.parametrize(
    ("image", "message"),
    [
        (vision_pb2.Image(), "image: empty; set encoded (JPEG or PNG bytes) or raw"),
        (encoded(b"hello, not a picture"), "image.encoded: not a JPEG or PNG image"),
        (encoded(b"GIF89a" + bytes(40)), "it looks like a GIF"),
        (
            vision_pb2.Image(raw=vision_pb2.RawImage(width=0, height=10)),
            "image.raw: zero-size image (0x10)",
        ),
        (
            vision_pb2.Image(raw=vision_pb2.RawImage(width=4, height=4, rgb=bytes(47))),
            "image.raw.rgb: 47 bytes, but 4x4 RGB needs exactly 48 (width * height * 3)",
        ),
    ],
)
def test_bad_images_are_named(image: vision_pb2.Image, message: str) -> None:
    with pytest.raises(ImageError) as error:
        decode_image(image, LIMIT)
    assert message in str(error.value)
    assert not isinstance(error.value, ImageTooLargeError)


def png_with(chunk_type: bytes, body: bytes) -> bytes:
    """An 8x8 PNG carrying one more chunk (before its pixels), with a right CRC."""
    data = png(np.zeros((8, 8, 3), np.uint8))
    at = data.index(b"IDAT") - 4
    crc = struct.pack(">I", zlib.crc32(chunk_type + body) & 0xFFFFFFFF)
    return data[:at] + struct.pack(">I", len(body)) + chunk_type + body + crc + data[at:]


def png_sized(width: int, height: int) -> bytes:
    """A well-formed PNG header claiming `width` x `height` (0 for none)."""
    ihdr = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    crc = struct.pack(">I", zlib.crc32(b"IHDR" + ihdr) & 0xFFFFFFFF)
    return b"\x89PNG\r\n\x1a\n" + struct.pack(">I", 13) + b"IHDR" + ihdr + crc


@pytest.mark.parametrize("cut", [None, 100, 150, 400])
def test_a_truncated_jpeg_is_refused(cut: int | None) -> None:
    """Cut inside its header (100-400 bytes), Pillow fails already while opening it."""
    jpeg = encode_jpeg(np.random.default_rng(2).integers(0, 255, (200, 300, 3), dtype=np.uint8))
    with pytest.raises(ImageError, match=r"image.encoded: damaged or truncated JPEG"):
        decode_image(encoded(jpeg[: cut or len(jpeg) // 2]), LIMIT)


@pytest.mark.parametrize(
    ("chunk_type", "prefix"),
    [(b"zTXt", b"note\0\0"), (b"iTXt", b"note\0\1\0\0\0"), (b"iCCP", b"icc\0\0")],
)
def test_a_png_whose_metadata_inflates_to_megabytes_is_refused(
    chunk_type: bytes, prefix: bytes
) -> None:
    bomb = png_with(chunk_type, prefix + zlib.compress(b"a" * (2 * 1024 * 1024)))
    assert len(bomb) < 5000
    with pytest.raises(ImageError) as error:
        decode_image(encoded(bomb), LIMIT)
    assert "image.encoded: a compressed PNG metadata chunk" in str(error.value)
    assert not isinstance(error.value, ImageTooLargeError)


def test_a_png_without_pixels_says_so() -> None:
    with pytest.raises(
        ImageError, match=r"image.encoded: zero-size image \(0x0\): it has no pixels"
    ):
        decode_image(encoded(png_sized(0, 0)), LIMIT)


@pytest.mark.parametrize(("width", "height"), [(8000, 6000), (100_000, 100_000)])
def test_pixel_bombs_are_refused_from_the_header(width: int, height: int) -> None:
    bomb = png_claiming(width, height)
    assert len(bomb) < 100
    with pytest.raises(ImageTooLargeError, match=r"over the limit|far more pixels"):
        decode_image(encoded(bomb), LIMIT)


def test_raw_frames_over_the_limit_are_refused_before_reading_pixels() -> None:
    raw = vision_pb2.RawImage(width=10_000, height=10_000, rgb=b"")
    with pytest.raises(ImageTooLargeError, match=r"10000x10000 is 100,000,000 pixels"):
        decode_image(vision_pb2.Image(raw=raw), LIMIT)
