"""detectron2's resize (``model.resize: detectron2``) against its rules: ``ResizeShortestEdge``'s size, PIL's
bilinear pixels (PIL itself is the reference), the boxes of training targets and detections; and torchvision's
resize left exactly as it was."""

import numpy as np
import pytest
import torch
from detectron2_helpers import photo, pil_resize, rgb_01
from PIL import Image
from torchvision.models.detection.transform import GeneralizedRCNNTransform

from detection import build_detector
from detection.modeling.transform import detector_postprocess, resize_like_pil, shortest_edge_size

# (height, width, short side, max size) -> detectron2's (height, width): int(x + 0.5) of the exact scale, where
# torchvision floors (480 x 640 -> 800 x 1066 there).
SIZES = {
    (480, 640, 800, 1333): (800, 1067),  # 1066.67 rounds up
    (427, 480, 800, 1333): (800, 899),  # 899.30 rounds down
    (347, 461, 800, 1333): (800, 1063),
    (640, 427, 800, 1333): (1199, 800),  # portrait
    (500, 1200, 800, 1333): (555, 1333),  # the long side capped: 555.42 rounds down
    (300, 1000, 800, 1333): (400, 1333),  # capped: 399.9 rounds up
    (512, 512, 800, 1333): (800, 800),
    (1000, 1500, 600, 1000): (600, 900),  # a reduction
    (57, 91, 37, 1000): (37, 59),
}


def as_pixels(image: torch.Tensor) -> np.ndarray:
    return (image * 255.0).round().to(torch.uint8).permute(1, 2, 0).numpy()


@pytest.mark.parametrize(("arguments", "expected"), SIZES.items(), ids=[f"{h}x{w}" for h, w, _, _ in SIZES])
def test_output_size_is_resize_shortest_edges(arguments, expected):
    assert shortest_edge_size(*arguments) == expected


@pytest.mark.parametrize(
    ("height", "width", "size"),
    [
        (480, 640, (800, 1067)),  # enlarged, the width rounded up
        (427, 480, (800, 899)),  # enlarged, rounded down
        (331, 517, (800, 1250)),
        (640, 427, (1199, 800)),  # portrait
        (500, 1200, (555, 1333)),  # capped by the long side
        (1000, 1500, (600, 900)),  # reduced: PIL's filter widens (antialiasing)
        (57, 91, (37, 59)),  # odd sizes
        (300, 451, (300, 900)),  # one axis only
        (120, 90, (61, 21)),  # reduced much more along one axis, 5 and 9 taps
    ],
)
def test_resize_gives_pils_pixels(height, width, size):
    pixels = photo(height, width)
    resized = resize_like_pil(rgb_01(pixels), size)
    assert resized.shape == (3, *size) and resized.dtype == torch.float32
    np.testing.assert_array_equal(as_pixels(resized), pil_resize(pixels, size))
    if width >= height:  # landscape: PIL 12 and 13 resize it horizontally first in one call too
        np.testing.assert_array_equal(
            as_pixels(resized), np.asarray(Image.fromarray(pixels).resize(size[::-1], Image.BILINEAR))
        )


def test_resize_keeps_the_8_bit_values_exact():
    """x / 255 * 255 must give the integer back, or the BGR 0..255 input of detectron2's weights shifts."""
    pixels = np.arange(256, dtype=np.uint8).reshape(16, 16, 1).repeat(3, axis=2)
    resized = resize_like_pil(rgb_01(pixels), (16, 16))
    assert torch.equal(resized * 255.0, torch.from_numpy(pixels).permute(2, 0, 1).float())


def detectron2_detector(**options) -> torch.nn.Module:
    settings = dict(min_size=(40, 50, 60), max_size=100, size_divisible=1, resize="detectron2")
    return build_detector("resnet18", num_classes=3, **{**settings, **options})


def test_model_input_is_pils_resize_then_the_normalisation():
    model = detectron2_detector().eval()
    pixels = photo(47, 71)
    images, _ = model.transform([rgb_01(pixels)])
    size = shortest_edge_size(47, 71, 60, 100)  # the last min_size at test
    assert images.image_sizes == [size] == [(60, 91)]
    expected = model.transform.normalize(rgb_01(pil_resize(pixels, size)))
    torch.testing.assert_close(images.tensors[0], expected, rtol=0, atol=0)


def test_training_draws_a_short_side_per_image_and_scales_the_boxes():
    model = detectron2_detector().train()
    pixels = [photo(47, 71, seed=1), photo(80, 30, seed=2)]
    boxes = [torch.tensor([[3.5, 4.0, 60.0, 40.0]]), torch.tensor([[0.0, 10.0, 30.0, 79.0]])]
    targets = [{"boxes": b, "labels": torch.tensor([1])} for b in boxes]
    seen = set()
    for seed in range(12):
        torch.manual_seed(seed)  # the choice uses torch's RNG: a resumed run draws the same sizes
        images, resized_targets = model.transform([rgb_01(p) for p in pixels], targets)
        torch.manual_seed(seed)
        again, _ = model.transform([rgb_01(p) for p in pixels], targets)
        assert images.image_sizes == again.image_sizes
        for (h, w), target, box, size in zip(
            [p.shape[:2] for p in pixels], resized_targets, boxes, images.image_sizes, strict=True
        ):
            assert size in {shortest_edge_size(h, w, short, 100) for short in (40, 50, 60)}
            scale = torch.tensor([size[1] / w, size[0] / h] * 2)
            torch.testing.assert_close(target["boxes"], box * scale)
            seen.add(size)
    assert len(seen) >= 4  # both images at several of the three sizes
    assert torch.equal(boxes[0], torch.tensor([[3.5, 4.0, 60.0, 40.0]]))  # the caller's targets are untouched


def test_detections_come_back_by_the_ratio_of_sizes_clipped_and_nonempty():
    # Resized 600 x 401 -> 1199 x 800: x scales by 401 / 800, y by 600 / 1199, in float32 as detectron2's Boxes.scale.
    boxes = torch.tensor([[10.0, 20.0, 300.0, 400.0], [700.0, 1000.0, 800.0, 1199.0], [799.9, 10.0, 800.0, 30.0]])
    detections = {"boxes": boxes, "scores": torch.tensor([0.9, 0.8, 0.7]), "labels": torch.tensor([1, 2, 1])}
    result = detector_postprocess(detections, (1199, 800), (600, 401))
    scaled = boxes * torch.tensor([401 / 800, 600 / 1199] * 2)
    assert scaled[1, 2] > 401.0  # float32 rounding overshoots the image: the clip brings it back
    expected = torch.stack([scaled[:, 0::2].clamp(0, 401.0), scaled[:, 1::2].clamp(0, 600.0)], dim=2).flatten(1)
    torch.testing.assert_close(result["boxes"], expected, rtol=0, atol=0)
    assert result["boxes"][1].tolist()[2:] == [401.0, 600.0]
    assert torch.equal(result["scores"], detections["scores"]) and torch.equal(result["labels"], detections["labels"])
    # A box on the right edge of the resized image, past the input once scaled and clipped: empty, dropped.
    detections = {
        "boxes": torch.tensor([[800.0, 10.0, 800.0, 30.0], [10.0, 20.0, 30.0, 40.0]]),
        "scores": torch.tensor([0.9, 0.8]),
        "labels": torch.tensor([2, 1]),
    }
    result = detector_postprocess(detections, (1199, 800), (600, 401))
    assert result["scores"].tolist() == pytest.approx([0.8]) and result["labels"].tolist() == [1]


def test_detections_of_a_resized_image_stay_inside_it():
    torch.manual_seed(0)
    model = detectron2_detector(rpn_post_nms_top_n_test=50, box_score_thresh=0.0, box_detections_per_img=50).eval()
    with torch.no_grad():
        detections = model([rgb_01(photo(33, 53))])[0]
    boxes = detections["boxes"]
    assert len(boxes) > 0
    assert (boxes[:, 2] <= 53).all() and (boxes[:, 3] <= 33).all() and (boxes >= 0).all()
    assert ((boxes[:, 2] > boxes[:, 0]) & (boxes[:, 3] > boxes[:, 1])).all()


@pytest.mark.parametrize("training", [False, True])
def test_torchvisions_resize_is_generalized_rcnn_transforms(training):
    model = build_detector("resnet18", num_classes=3, min_size=(40, 50, 60), max_size=100)
    reference = GeneralizedRCNNTransform((40, 50, 60), 100, [0.485, 0.456, 0.406], [0.229, 0.224, 0.225])
    model.transform.train(training), reference.train(training)
    images = [rgb_01(photo(47, 71)), rgb_01(photo(80, 30, seed=1))]
    targets = [{"boxes": torch.tensor([[3.0, 4.0, 20.0, 30.0]]), "labels": torch.tensor([1])}] * 2
    torch.manual_seed(0)
    ours, our_targets = model.transform(images, targets)
    torch.manual_seed(0)
    theirs, their_targets = reference(images, targets)
    assert ours.image_sizes == theirs.image_sizes
    torch.testing.assert_close(ours.tensors, theirs.tensors, rtol=0, atol=0)
    for a, b in zip(our_targets, their_targets, strict=True):
        torch.testing.assert_close(a["boxes"], b["boxes"], rtol=0, atol=0)
    detections = [{"boxes": torch.tensor([[10.0, 10.0, 50.0, 40.0]]), "labels": torch.tensor([1])}]
    sizes = [tuple(images[0].shape[-2:])]
    ours = model.transform.postprocess([dict(d) for d in detections], ours.image_sizes[:1], sizes)
    theirs = reference.postprocess([dict(d) for d in detections], theirs.image_sizes[:1], sizes)
    torch.testing.assert_close(ours[0]["boxes"], theirs[0]["boxes"], rtol=0, atol=0)


def test_an_unknown_resize_is_refused():
    with pytest.raises(ValueError, match="resize must be 'torchvision' or 'detectron2'"):
        build_detector("resnet18", num_classes=3, resize="opencv")
