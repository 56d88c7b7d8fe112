"""Image decoding: any common file to an upright RGB ``uint8`` array."""

import os
import stat
import struct
from collections.abc import Iterable

import cv2
import numpy as np

from .errors import ImageReadError

__all__ = ["IMAGE_EXTENSIONS", "missing_or_empty_files", "read_image"]

# The file name endings read as images (lower case): what a folder of images is searched for.
IMAGE_EXTENSIONS = frozenset(
    {".jpg", ".jpeg", ".png", ".bmp", ".tif", ".tiff", ".webp", ".ppm", ".pgm", ".pbm", ".jp2"}
)

_EXIF_ORIENTATION_TAG = 0x0112

# EXIF orientation value -> operations that make the stored pixels upright (EXIF 2.32, table 4).
_ORIENTATION_FIXES = {
    2: lambda image: cv2.flip(image, 1),
    3: lambda image: cv2.rotate(image, cv2.ROTATE_180),
    4: lambda image: cv2.flip(image, 0),
    5: lambda image: cv2.transpose(image),
    6: lambda image: cv2.rotate(image, cv2.ROTATE_90_CLOCKWISE),
    7: lambda image: cv2.rotate(cv2.transpose(image), cv2.ROTATE_180),
    8: lambda image: cv2.rotate(image, cv2.ROTATE_90_COUNTERCLOCKWISE),
}


def read_image(path: str | os.PathLike) -> np.ndarray:
    """Decode an image file with OpenCV.

    The file is decoded unchanged (native bit depth and channels), then: EXIF orientation is applied;
    16-bit samples are scaled to 8 bits; grayscale and palette images are expanded to RGB; an alpha
    channel is composited over a white background.

    Returns:
        ``uint8`` array ``[H, W, 3]`` in RGB order, ``H, W`` being the upright size.

    Raises:
        ImageReadError: the file is missing, empty, not a decodable image, or has an unsupported
            pixel type; the message names the file.
    """
    try:
        data = np.fromfile(path, dtype=np.uint8)
    except FileNotFoundError:
        raise ImageReadError("image file not found", path) from None
    except OSError as error:
        raise ImageReadError(f"cannot read image file ({error.strerror or error})", path) from None
    if data.size == 0:
        raise ImageReadError("image file is empty (0 bytes)", path)
    # IMREAD_UNCHANGED keeps 16-bit depth and alpha, but it also ignores EXIF orientation, so the
    # metadata is read alongside and the orientation applied here.
    image, metadata_types, metadata = cv2.imdecodeWithMetadata(data, cv2.IMREAD_UNCHANGED)
    if image is None or image.size == 0:
        raise ImageReadError("not a decodable image (corrupt, truncated or unsupported format)", path)
    image = _to_rgb_uint8(image, path)
    orientation = _exif_orientation(metadata_types, metadata)
    if orientation in _ORIENTATION_FIXES:
        image = _ORIENTATION_FIXES[orientation](image)
    return np.ascontiguousarray(image)


def missing_or_empty_files(paths: Iterable[str | os.PathLike]) -> list[tuple[str, str]]:
    """The files of ``paths`` that cannot be images, found with one ``stat`` each (no file is opened).

    Returns:
        ``(path, reason)`` for each file that is missing, not a regular file or empty, in order;
        ``reason`` is ``"not found"``, ``"is not a regular file"``, ``"is empty"`` or the system's error.
    """
    problems = []
    for path in paths:
        try:
            status = os.stat(path)
        except FileNotFoundError:
            problems.append((os.fspath(path), "not found"))
            continue
        except OSError as error:
            problems.append((os.fspath(path), error.strerror or str(error)))
            continue
        if not stat.S_ISREG(status.st_mode):
            problems.append((os.fspath(path), "is not a regular file"))
        elif status.st_size == 0:
            problems.append((os.fspath(path), "is empty"))
    return problems


def _to_rgb_uint8(image: np.ndarray, path: str | os.PathLike) -> np.ndarray:
    """Convert OpenCV's decoded array (gray, BGR or BGRA; 8 or 16 bits) to RGB ``uint8``."""
    if image.dtype == np.uint16:
        image = cv2.convertScaleAbs(image, alpha=255.0 / 65535.0)
    elif image.dtype != np.uint8:
        raise ImageReadError(f"unsupported pixel type {image.dtype}; expected 8- or 16-bit samples", path)
    channels = 1 if image.ndim == 2 else image.shape[2]
    if channels == 1:
        return cv2.cvtColor(image.reshape(image.shape[:2]), cv2.COLOR_GRAY2RGB)
    if channels == 3:
        return cv2.cvtColor(image, cv2.COLOR_BGR2RGB)
    if channels == 4:
        alpha = image[:, :, 3:].astype(np.uint16)
        color = image[:, :, :3].astype(np.uint16)
        blended = (color * alpha + 255 * (255 - alpha) + 127) // 255
        return cv2.cvtColor(blended.astype(np.uint8), cv2.COLOR_BGR2RGB)
    raise ImageReadError(f"unsupported number of channels {channels}; expected 1, 3 or 4", path)


def _exif_orientation(metadata_types: np.ndarray | tuple, metadata: tuple) -> int:
    """The EXIF orientation (1..8) found in OpenCV's metadata, 1 when absent or unreadable."""
    for kind, blob in zip(np.ravel(metadata_types), metadata):
        if kind == cv2.IMAGE_METADATA_EXIF:
            return _parse_orientation(np.asarray(blob, dtype=np.uint8).tobytes())
    return 1


def _parse_orientation(exif: bytes) -> int:
    """Read tag 0x0112 from the first IFD of a TIFF-structured EXIF block."""
    if exif.startswith(b"Exif\x00\x00"):
        exif = exif[6:]
    byte_order = {b"II": "<", b"MM": ">"}.get(exif[:2])
    if byte_order is None:
        return 1
    try:
        (ifd_offset,) = struct.unpack_from(byte_order + "I", exif, 4)
        (num_entries,) = struct.unpack_from(byte_order + "H", exif, ifd_offset)
        for entry in range(num_entries):
            offset = ifd_offset + 2 + 12 * entry
            (tag,) = struct.unpack_from(byte_order + "H", exif, offset)
            if tag == _EXIF_ORIENTATION_TAG:
                (value,) = struct.unpack_from(byte_order + "H", exif, offset + 8)
                return value if 1 <= value <= 8 else 1
    except struct.error:
        return 1
    return 1
