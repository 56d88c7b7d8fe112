"""Training augmentation: box consistency, seeded determinism, empty results, no resizing."""

import numpy as np
import pytest
import torch

from detection.data import AugmentationOptions, DetectionAugmentation, build_dataset

IMAGE = np.random.default_rng(0).integers(0, 256, size=(40, 60, 3), dtype=np.uint8)
BOXES = np.array([[0, 0, 10, 20], [12.5, 5, 60, 40]], dtype=np.float32)
LABELS = np.array([2, 1], dtype=np.int64)


def test_horizontal_flip_twice_gives_back_the_boxes_and_image():
    flip = DetectionAugmentation(AugmentationOptions(horizontal_flip=1.0))
    image, boxes, labels = flip(IMAGE, BOXES, LABELS, seed=0)
    np.testing.assert_allclose(boxes, [[50, 0, 60, 20], [0, 5, 47.5, 40]], atol=1e-4)  # x -> W - x
    np.testing.assert_array_equal(image, IMAGE[:, ::-1])
    image, boxes, labels = flip(image, boxes, labels, seed=1)
    np.testing.assert_allclose(boxes, BOXES, atol=1e-4)
    np.testing.assert_array_equal(labels, LABELS)
    np.testing.assert_array_equal(image, IMAGE)


def test_same_seed_same_augmentation_and_seeds_vary_it():
    augment = DetectionAugmentation(AugmentationOptions(color_jitter=0.8, crop=0.8))
    first = augment(IMAGE, BOXES, LABELS, seed=123)
    augment(IMAGE, BOXES, LABELS, seed=7)  # state from another call must not leak
    again = augment(IMAGE, BOXES, LABELS, seed=123)
    for a, b in zip(first, again):
        np.testing.assert_array_equal(a, b)
    shapes = {augment(IMAGE, BOXES, LABELS, seed=s)[0].shape for s in range(10)}
    assert len(shapes) > 1


def test_transforms_draw_independent_random_numbers():
    augment = DetectionAugmentation(AugmentationOptions(horizontal_flip=0.5, color_jitter=0.5))
    outcomes = set()
    for seed in range(40):
        image, boxes, _ = augment(IMAGE, BOXES, LABELS, seed=seed)
        flipped = bool(boxes[0, 0] > 0)
        jittered = not np.array_equal(image, IMAGE[:, ::-1] if flipped else IMAGE)
        outcomes.add((flipped, jittered))
    assert outcomes == {(False, False), (False, True), (True, False), (True, True)}


def test_a_crop_that_removes_every_box_gives_a_valid_negative():
    boxes = np.array([[0, 0, 6, 6]], dtype=np.float32)  # a small box in a corner
    crop = DetectionAugmentation(AugmentationOptions(horizontal_flip=0.0, crop=1.0, crop_max_fraction=0.45))
    emptied = 0
    for seed in range(30):
        image, out_boxes, out_labels = crop(IMAGE, boxes, LABELS[:1], seed=seed)
        assert out_boxes.dtype == np.float32 and out_boxes.shape == (len(out_labels), 4)
        assert out_labels.dtype == np.int64
        assert ((out_boxes[:, 2:] > out_boxes[:, :2]).all()) and (out_boxes[:, 2] <= image.shape[1]).all()
        emptied += len(out_labels) == 0
    assert emptied > 0


def test_no_boxes_in_no_boxes_out():
    image, boxes, labels = DetectionAugmentation()(IMAGE, np.zeros((0, 4), np.float32), np.zeros(0, np.int64), seed=0)
    assert image.shape == IMAGE.shape and boxes.shape == (0, 4) and labels.shape == (0,)


def test_options_are_validated():
    with pytest.raises(ValueError, match="horizontal_flip"):
        AugmentationOptions(horizontal_flip=1.5)
    with pytest.raises(ValueError, match="crop_max_fraction"):
        AugmentationOptions(crop_max_fraction=0.5)


def test_dataset_seeded_keys_are_deterministic_and_keep_the_size(shapes_root):
    dataset = build_dataset("shapes", "train", root=shapes_root, train=True, keep_empty=True)
    plain = build_dataset("shapes", "train", root=shapes_root, train=False)
    index = next(i for i in range(len(plain)) if len(plain[i][1]["boxes"]))
    flips = set()
    for seed in range(8):
        image, target = dataset[(index, seed)]
        again_image, again_target = dataset[(index, seed)]
        torch.testing.assert_close(image, again_image)
        torch.testing.assert_close(target["boxes"], again_target["boxes"])
        assert image.shape == plain[index][0].shape  # the flip neither resizes nor normalises
        flips.add(torch.equal(image, plain[index][0].flip(-1)))
    assert flips == {True, False}
