"""Index PNGs (DAVIS-style palette masks) read with Pillow (OpenCV expands palettes to colour) and
written atomically as 8-bit palette PNGs (encoded here: masks compress best as runs)."""

from __future__ import annotations

import os
import struct
import zlib
from dataclasses import dataclass

import numpy as np
from PIL import Image, UnidentifiedImageError

from ..errors import InputError
from ..io import write_atomic


@dataclass(frozen=True)
class IndexImage:
    """An index PNG: ``labels`` (H, W) uint8 and its ``palette`` (P, 3) uint8 RGB (None if grayscale)."""

    labels: np.ndarray
    palette: np.ndarray | None


def davis_palette() -> np.ndarray:
    """The DAVIS / PASCAL VOC palette, (256, 3) uint8 RGB: 1 -> (128, 0, 0), 2 -> (0, 128, 0), ..."""
    idx = np.arange(256)
    pal = np.zeros((256, 3), dtype=np.int64)
    for j in range(3):
        for ch in range(3):
            pal[:, ch] |= ((idx >> (3 * j + ch)) & 1) << (7 - j)
    return pal.astype(np.uint8)


def read_index_png(path: str | os.PathLike[str]) -> IndexImage:
    """The indices (and palette) of a palette or 8-bit grayscale PNG; InputError for anything else."""
    try:
        with Image.open(path) as img:
            mode, kind = img.mode, img.format
            labels = np.array(img)
            raw = img.getpalette() if mode == "P" else None
    except FileNotFoundError as exc:
        raise InputError(f"{path} does not exist") from exc
    except (UnidentifiedImageError, OSError, SyntaxError) as exc:
        raise InputError(f"cannot read {path} as an image ({exc}); give the index mask as a PNG") from exc
    if kind != "PNG":
        raise InputError(f"{path} is a {kind} image, not a PNG: masks must be lossless PNGs (JPEG compression "
                         "invents ids along the edges); save the mask as a PNG")
    if mode == "1":
        labels = labels.astype(np.uint8)  # a 1-bit mask: object 1
    elif mode not in ("P", "L"):
        what = f"a {mode} image of more than 8 bits" if mode.startswith(("I", "F")) else f"a colour image ({mode})"
        raise InputError(f"{path} is {what}, not an index mask; save it as a palette PNG (as DAVIS annotations "
                         "are) or an 8-bit grayscale PNG of object ids")
    palette = np.array(raw, dtype=np.uint8).reshape(-1, 3) if raw is not None else None
    return IndexImage(labels.astype(np.uint8), palette)


def encode_index_png(labels: np.ndarray, palette: np.ndarray | None = None) -> bytes:
    """(H, W) uint8 labels -> an 8-bit palette PNG; ``palette`` (P, 3) RGB is completed with DAVIS's. Rows are
    stored unfiltered and deflated as runs (``zlib.Z_RLE``; why: docs/runtime.md, "The overlapped loop")."""
    labels = np.asarray(labels)
    if labels.ndim != 2 or labels.dtype != np.uint8 or labels.size == 0:
        raise InputError(f"labels: expected a non-empty (H, W) uint8 array, got {labels.dtype} {labels.shape}")
    pal = davis_palette()
    if palette is not None:
        pal[: min(len(palette), 256)] = palette[:256]
    h, w = labels.shape
    rows = np.zeros((h, 1 + w), np.uint8)  # each row: its filter type (0, none), then its indices
    rows[:, 1:] = labels
    deflate = zlib.compressobj(1, zlib.DEFLATED, 15, 9, zlib.Z_RLE)
    pixels = deflate.compress(rows.tobytes()) + deflate.flush()
    header = struct.pack(">IIBBBBB", w, h, 8, 3, 0, 0, 0)  # 8 bits, palette colour, deflate, filters, no interlace
    return b"\x89PNG\r\n\x1a\n" + b"".join(_chunk(kind, data) for kind, data in (
        (b"IHDR", header), (b"PLTE", pal.tobytes()), (b"IDAT", pixels), (b"IEND", b"")))


def _chunk(kind: bytes, data: bytes) -> bytes:
    """A PNG chunk: length, type, data, CRC-32 of type and data."""
    return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))


def write_index_png(path: str | os.PathLike[str], labels: np.ndarray,
                    palette: np.ndarray | None = None) -> None:
    """Write ``encode_index_png(labels, palette)`` to ``path`` atomically."""
    write_atomic(path, encode_index_png(labels, palette))
