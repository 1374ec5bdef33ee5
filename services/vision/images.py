"""Camera images into RGB arrays, or a precise reason why not.

The pixel limit is checked from the file header, before any pixel is decoded: a
small PNG can claim gigapixels (a decompression bomb), and a camera stream must
not be able to exhaust the server's memory with one message.
"""

from __future__ import annotations

import io
import struct
import warnings
from typing import Any

import numpy as np
import numpy.typing as npt
from PIL import Image, ImageOps, UnidentifiedImageError

from percept.v1 import vision_pb2

RGB = npt.NDArray[np.uint8]  # (height, width, 3)
FORMATS = ("JPEG", "PNG")
PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"


class ImageError(ValueError):
    """The image cannot be analysed; the message names the field and the reason."""


class ImageTooLargeError(ImageError):
    """Over the pixel limit (RESOURCE_EXHAUSTED, not INVALID_ARGUMENT)."""


def decode_image(image: vision_pb2.Image, max_pixels: int, field: str = "image") -> RGB:
    """The image as (height, width, 3) uint8 RGB, upright (EXIF orientation applied)."""
    kind = image.WhichOneof("data")
    if kind == "encoded":
        return _decode_encoded(image.encoded, max_pixels, f"{field}.encoded")
    if kind == "raw":
        return _decode_raw(image.raw, max_pixels, f"{field}.raw")
    raise ImageError(f"{field}: empty; set encoded (JPEG or PNG bytes) or raw (RGB with its size)")


def _check_size(width: int, height: int, max_pixels: int, field: str) -> None:
    if width <= 0 or height <= 0:
        raise ImageError(f"{field}: zero-size image ({width}x{height}): it has no pixels")
    if width * height > max_pixels:
        raise ImageTooLargeError(
            f"{field}: {width}x{height} is {width * height:,} pixels, over the limit of "
            f"{max_pixels:,} (PERCEPT_VISION_MAX_PIXELS); send a smaller frame"
        )


def _decode_raw(raw: vision_pb2.RawImage, max_pixels: int, field: str) -> RGB:
    _check_size(raw.width, raw.height, max_pixels, field)
    expected = raw.width * raw.height * 3
    if len(raw.rgb) != expected:
        raise ImageError(
            f"{field}.rgb: {len(raw.rgb):,} bytes, but {raw.width}x{raw.height} RGB needs "
            f"exactly {expected:,} (width * height * 3)"
        )
    return np.frombuffer(raw.rgb, np.uint8).reshape(raw.height, raw.width, 3)


def _decode_encoded(data: bytes, max_pixels: int, field: str) -> RGB:
    if not data:
        raise ImageError(f"{field}: empty")
    try:
        with warnings.catch_warnings():
            # Our own limit applies; Pillow's bomb warning would only duplicate it.
            warnings.simplefilter("ignore", Image.DecompressionBombWarning)
            picture: Any = Image.open(io.BytesIO(data), formats=FORMATS)
    except UnidentifiedImageError:
        if (size := _png_size(data)) is not None:  # Pillow refuses a 0x0 PNG as unknown
            _check_size(*size, max_pixels, field)
        raise ImageError(f"{field}: not a JPEG or PNG image ({_sniff(data)})") from None
    except Image.DecompressionBombError:
        picture = None
    except (OSError, SyntaxError, ValueError) as exc:  # cut short, or a chunk bomb
        raise _damaged(field, _format(data), exc) from None
    if picture is None:
        raise ImageTooLargeError(f"{field}: the image claims far more pixels than the limit")
    with picture:
        width, height = picture.size
        _check_size(width, height, max_pixels, field)
        try:
            picture.load()
        except (OSError, SyntaxError, ValueError) as exc:
            raise _damaged(field, picture.format, exc) from None
        upright = ImageOps.exif_transpose(picture)
        rgb = upright.convert("RGB") if upright.mode != "RGB" else upright
        return np.asarray(rgb, dtype=np.uint8)


def _damaged(field: str, kind: str, exc: Exception) -> ImageError:
    """Why Pillow could not read it; a metadata chunk that inflates past Pillow's limit
    (a few bytes standing for megabytes) is said as such, not as damage."""
    if "Decompressed data too large" in str(exc):
        return ImageError(
            f"{field}: a compressed {kind} metadata chunk (text or colour profile) inflates "
            "past the safe limit; strip the metadata"
        )
    return ImageError(f"{field}: damaged or truncated {kind} ({exc})")


def _format(data: bytes) -> str:
    return "PNG" if data.startswith(PNG_SIGNATURE) else "JPEG"


def _png_size(data: bytes) -> tuple[int, int] | None:
    """Width and height from a PNG's header (IHDR, right after the signature), if it is one."""
    if not data.startswith(PNG_SIGNATURE) or data[12:16] != b"IHDR" or len(data) < 24:
        return None
    width, height = struct.unpack(">II", data[16:24])
    return width, height


def _sniff(data: bytes) -> str:
    head = data[:8]
    if head.startswith(b"GIF8"):
        return "it looks like a GIF"
    if head.startswith(b"RIFF"):
        return "it looks like a RIFF file (WebP or WAV)"
    if head.startswith(b"\x00\x00\x00") and b"ftyp" in data[:16]:
        return "it looks like an MP4/HEIC container"
    return f"first bytes {head.hex()}"


def encode_jpeg(rgb: RGB, quality: int = 90) -> bytes:
    """JPEG bytes of an RGB array (the CLI and the tests send frames this way)."""
    out = io.BytesIO()
    Image.fromarray(rgb).save(out, format="JPEG", quality=quality)
    return out.getvalue()
