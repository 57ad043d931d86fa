"""Turning what a caller holds (a path, bytes, a PIL image, a NumPy array) into the bytes of an image file.

NumPy arrays are encoded as PNG here, with :mod:`zlib`, so a NumPy caller needs neither Pillow nor OpenCV.
"""

from __future__ import annotations

import io
import os
import struct
import zlib
from typing import Any, Union

ImageInput = Union[str, "os.PathLike[str]", bytes, bytearray, memoryview, Any]
"""A path, the bytes of an image file, a ``PIL.Image.Image`` or a NumPy array (H×W×3 or H×W×4, ``uint8``)."""

_PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"


def _chunk(kind: bytes, data: bytes) -> bytes:
    return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data) & 0xFFFFFFFF)


def encode_png(pixels: bytes, width: int, height: int, channels: int) -> bytes:
    """A PNG of 8-bit ``pixels`` (row-major, ``channels`` ∈ 1 grey, 3 RGB, 4 RGBA)."""
    color_type = {1: 0, 3: 2, 4: 6}.get(channels)
    if color_type is None:
        raise ValueError(f"a PNG has 1, 3 or 4 channels, not {channels}")
    stride = width * channels
    if len(pixels) != stride * height:
        raise ValueError(f"{len(pixels)} bytes do not make a {width}×{height}×{channels} image")
    # Filter type 0 (none) in front of every row.
    raw = b"".join(b"\x00" + pixels[y * stride : (y + 1) * stride] for y in range(height))
    ihdr = struct.pack(">IIBBBBB", width, height, 8, color_type, 0, 0, 0)
    return _PNG_SIGNATURE + _chunk(b"IHDR", ihdr) + _chunk(b"IDAT", zlib.compress(raw, 6)) + _chunk(b"IEND", b"")


def _is_numpy_array(obj: object) -> bool:
    return type(obj).__module__ == "numpy" and type(obj).__name__ == "ndarray"


def _is_pil_image(obj: object) -> bool:
    return any(c.__module__.startswith("PIL.") and c.__name__ == "Image" for c in type(obj).__mro__)


def _numpy_png(array: Any) -> bytes:
    import numpy as np  # present: the caller holds an array

    if array.dtype != np.uint8:
        raise ValueError(f"a NumPy image must be uint8 (0–255), not {array.dtype}; convert it first")
    if array.ndim == 2:
        array = array[:, :, None]
    if array.ndim != 3 or array.shape[2] not in (1, 3, 4):
        raise ValueError(f"a NumPy image must be H×W×3 (RGB) or H×W×4 (RGBA), not {'×'.join(map(str, array.shape))}")
    height, width, channels = (int(n) for n in array.shape)
    if height == 0 or width == 0:
        raise ValueError("the NumPy image is empty")
    return encode_png(np.ascontiguousarray(array).tobytes(), width, height, channels)


def _pil_png(image: Any) -> bytes:
    if image.mode not in ("1", "L", "LA", "P", "RGB", "RGBA", "I;16"):
        image = image.convert("RGBA" if "A" in image.getbands() else "RGB")
    out = io.BytesIO()
    image.save(out, format="PNG")
    return out.getvalue()


def image_bytes(image: ImageInput, filename: str | None = None) -> tuple[bytes, str | None]:
    """The bytes to upload and the file name to announce for ``image``."""
    if isinstance(image, (str, os.PathLike)):
        path = os.fspath(image)
        with open(path, "rb") as f:
            return f.read(), filename or os.path.basename(path)
    if isinstance(image, (bytes, bytearray, memoryview)):
        data = bytes(image)
        if not data:
            raise ValueError("the image is empty (0 bytes)")
        return data, filename
    if _is_numpy_array(image):
        return _numpy_png(image), filename or "array.png"
    if _is_pil_image(image):
        return _pil_png(image), filename or "image.png"
    raise TypeError(
        "image must be a path, the bytes of an image file, a PIL image or a NumPy array (H×W×3/4 uint8), "
        f"not {type(image).__name__}"
    )
