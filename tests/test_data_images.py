"""read_image: every pixel format becomes upright RGB uint8; unreadable files are clear errors."""

import cv2
import numpy as np
import pytest
from PIL import Image, ImageOps

from detection.data import ImageReadError, read_image

# A 12 x 20 RGB image with distinct corners, so that any flip or rotation shows.
PATTERN = np.zeros((12, 20, 3), dtype=np.uint8)
PATTERN[:4, :6] = (255, 0, 0)
PATTERN[8:, 14:] = (0, 255, 0)
PATTERN[:3, 16:] = (0, 0, 255)


def test_rgb_png_is_rgb_order(tmp_path):
    path = tmp_path / "rgb.png"
    Image.fromarray(PATTERN).save(path)
    image = read_image(path)
    assert image.dtype == np.uint8 and image.shape == (12, 20, 3)
    np.testing.assert_array_equal(image, PATTERN)


def test_grayscale_png_becomes_three_equal_channels(tmp_path):
    gray = np.arange(12 * 20, dtype=np.uint8).reshape(12, 20)
    Image.fromarray(gray, mode="L").save(tmp_path / "gray.png")
    image = read_image(tmp_path / "gray.png")
    assert image.shape == (12, 20, 3)
    for channel in range(3):
        np.testing.assert_array_equal(image[:, :, channel], gray)


def test_rgba_png_is_composited_over_white(tmp_path):
    rgba = np.zeros((2, 3, 4), dtype=np.uint8)
    rgba[..., :3] = (200, 100, 0)
    rgba[..., 3] = [[255, 0, 128], [255, 255, 255]]
    Image.fromarray(rgba, mode="RGBA").save(tmp_path / "rgba.png")
    image = read_image(tmp_path / "rgba.png")
    assert image.shape == (2, 3, 3)
    np.testing.assert_array_equal(image[0, 0], (200, 100, 0))  # opaque: the colour
    np.testing.assert_array_equal(image[0, 1], (255, 255, 255))  # transparent: the background
    np.testing.assert_allclose(image[0, 2], (227, 177, 127), atol=1)  # half: the blend


def test_palette_png_becomes_its_rgb_colours(tmp_path):
    Image.fromarray(PATTERN).convert("P").save(tmp_path / "palette.png")
    with Image.open(tmp_path / "palette.png") as stored:
        assert stored.mode == "P"
    np.testing.assert_array_equal(read_image(tmp_path / "palette.png"), PATTERN)


@pytest.mark.parametrize("channels", [1, 3])
def test_16_bit_png_is_scaled_to_8_bits(tmp_path, channels):
    values = np.array([[0, 257, 32768, 65535]], dtype=np.uint16)
    pixels = values if channels == 1 else np.dstack([values] * 3)
    cv2.imwrite(str(tmp_path / "deep.png"), pixels)
    assert cv2.imread(str(tmp_path / "deep.png"), cv2.IMREAD_UNCHANGED).dtype == np.uint16
    image = read_image(tmp_path / "deep.png")
    assert image.dtype == np.uint8 and image.shape == (1, 4, 3)
    np.testing.assert_array_equal(image[0, :, 0], [0, 1, 128, 255])


@pytest.mark.parametrize("orientation", range(1, 9))
def test_exif_orientation_is_applied(tmp_path, orientation):
    path = tmp_path / "oriented.png"
    exif = Image.Exif()
    exif[0x0112] = orientation
    Image.fromarray(PATTERN).save(path, exif=exif.tobytes())
    with Image.open(path) as stored:
        expected = np.asarray(ImageOps.exif_transpose(stored).convert("RGB"))
    np.testing.assert_array_equal(read_image(path), expected)


def test_jpeg_exif_rotation(tmp_path):
    path = tmp_path / "rotated.jpg"
    exif = Image.Exif()
    exif[0x0112] = 6  # stored pixels must be turned 90 degrees clockwise for display
    big = cv2.resize(PATTERN, (200, 120), interpolation=cv2.INTER_NEAREST)
    Image.fromarray(big).save(path, exif=exif.tobytes(), quality=95)
    image = read_image(path)
    assert image.shape == (200, 120, 3)
    np.testing.assert_allclose(image[5, -5], (255, 0, 0), atol=30)  # top-left red is now top-right
    np.testing.assert_allclose(image[-5, 5], (0, 255, 0), atol=30)  # bottom-right green is now bottom-left


def test_missing_file(tmp_path):
    with pytest.raises(ImageReadError, match="missing.jpg: image file not found"):
        read_image(tmp_path / "missing.jpg")


def test_empty_file(tmp_path):
    (tmp_path / "empty.jpg").write_bytes(b"")
    with pytest.raises(ImageReadError, match="empty.jpg: image file is empty"):
        read_image(tmp_path / "empty.jpg")


def test_corrupt_file(tmp_path):
    (tmp_path / "corrupt.jpg").write_bytes(b"\xff\xd8 this is not a jpeg" * 10)
    with pytest.raises(ImageReadError, match="corrupt.jpg: not a decodable image"):
        read_image(tmp_path / "corrupt.jpg")


def test_truncated_jpeg(tmp_path):
    cv2.imwrite(str(tmp_path / "full.jpg"), np.random.default_rng(0).integers(0, 256, (64, 64, 3), dtype=np.uint8))
    data = (tmp_path / "full.jpg").read_bytes()
    (tmp_path / "truncated.jpg").write_bytes(data[: len(data) // 2])
    with pytest.raises(ImageReadError, match="truncated.jpg"):
        read_image(tmp_path / "truncated.jpg")
