"""One training step of detectron2's C4 recipe against detectron2's training rules, written down here from its
source (``proposal_generator/rpn.py``, ``roi_heads/roi_heads.py``, ``roi_heads/fast_rcnn.py``, ``box_regression.py``,
``matcher.py``, ``sampling.py``, ``data/transforms``): the resize of the 8-bit image, anchor and RoI matching and
sampling, the box targets, the four losses and their normalisers, and the gradients they give.

The reference reuses the parts whose inference equals detectron2's bit for bit (trunk, RPN head, anchors,
proposal selection, RoI pooling, res5 head, predictor: tests/test_detectron2.py, docs/detectron2.md) and computes
every training-only step itself. Sampling is made deterministic on both sides (the first positives and negatives
by index), through torchvision's ``fg_bg_sampler`` attribute here. Against detectron2's own code the same step
gives the same four losses and gradients (docs/detectron2.md, "the training-side differences that were closed").
"""

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from detectron2_helpers import photo, pil_resize, randomize_frozen_bn, rgb_01
from torchvision.models.detection.image_list import ImageList
from torchvision.ops import box_iou

from detection.config import ModelConfig, load_config
from detection.modeling.detectron2 import DETECTRON2_C4_CONFIG, detectron2_c4_config
from detection.modeling.factory import detector_from_config

MSRA_MEAN = torch.tensor([103.530, 116.280, 123.675]).view(3, 1, 1)


def first_by_index(
    labels: torch.Tensor, num_samples: int, positive_fraction: float
) -> tuple[torch.Tensor, torch.Tensor]:
    """detectron2's ``subsample_labels`` with ``randperm`` replaced by the first indices: positives (label 1),
    at most ``num_samples x positive_fraction``, then negatives (label 0) up to ``num_samples`` in all."""
    positive, negative = torch.where(labels == 1)[0], torch.where(labels == 0)[0]
    num_positive = min(positive.numel(), int(num_samples * positive_fraction))
    return positive[:num_positive], negative[: min(negative.numel(), num_samples - num_positive)]


class FirstByIndex:
    """The same rule behind torchvision's ``BalancedPositiveNegativeSampler`` interface (matched indices:
    >= 1 foreground, 0 background, < 0 ignored; returns one positive and one negative mask per image)."""

    def __init__(self, batch_size_per_image: int, positive_fraction: float) -> None:
        self.batch_size_per_image, self.positive_fraction = batch_size_per_image, positive_fraction

    def __call__(self, matched_idxs: list[torch.Tensor]) -> tuple[list[torch.Tensor], list[torch.Tensor]]:
        positives, negatives = [], []
        for matched in matched_idxs:
            labels = torch.where(matched >= 1, 1, torch.where(matched == 0, 0, -1))
            positive, negative = first_by_index(labels, self.batch_size_per_image, self.positive_fraction)
            for indices, masks in ((positive, positives), (negative, negatives)):
                mask = torch.zeros_like(matched, dtype=torch.uint8)
                mask[indices] = 1
                masks.append(mask)
        return positives, negatives


def detectron2_resize(pixels: np.ndarray, short: int, max_size: int) -> tuple[np.ndarray, float, float]:
    """``ResizeShortestEdge(short, max_size)`` of an 8-bit image: the resized pixels and the x and y scales."""
    height, width = pixels.shape[:2]
    scale = short / min(height, width)
    new_height, new_width = (short, scale * width) if height < width else (scale * height, short)
    if max(new_height, new_width) > max_size:
        cap = max_size / max(new_height, new_width)
        new_height, new_width = new_height * cap, new_width * cap
    size = (int(new_height + 0.5), int(new_width + 0.5))
    return pil_resize(pixels, size), size[1] / width, size[0] / height


def box_deltas(sources: torch.Tensor, targets: torch.Tensor, weights: tuple[float, ...]) -> torch.Tensor:
    """detectron2's ``Box2BoxTransform.get_deltas``."""
    wx, wy, ww, wh = weights
    source_w, source_h = sources[:, 2] - sources[:, 0], sources[:, 3] - sources[:, 1]
    target_w, target_h = targets[:, 2] - targets[:, 0], targets[:, 3] - targets[:, 1]
    source_x, source_y = sources[:, 0] + 0.5 * source_w, sources[:, 1] + 0.5 * source_h
    target_x, target_y = targets[:, 0] + 0.5 * target_w, targets[:, 1] + 0.5 * target_h
    return torch.stack(
        (
            wx * (target_x - source_x) / source_w,
            wy * (target_y - source_y) / source_h,
            ww * torch.log(target_w / source_w),
            wh * torch.log(target_h / source_h),
        ),
        dim=1,
    )


def smooth_l1_sum(x: torch.Tensor, y: torch.Tensor, beta: float) -> torch.Tensor:
    """fvcore's ``smooth_l1_loss`` (beta < 1e-5: L1), summed."""
    difference = (x - y).abs()
    if beta < 1e-5:
        return difference.sum()
    return torch.where(difference < beta, 0.5 * difference**2 / beta, difference - 0.5 * beta).sum()


def anchor_labels(gt_boxes: torch.Tensor, anchors: torch.Tensor, low: float, high: float) -> tuple[torch.Tensor, ...]:
    """detectron2's ``Matcher([low, high], [0, -1, 1], allow_low_quality_matches=True)``: the matched ground
    truth of each anchor and its label (1, 0, or -1 between the thresholds)."""
    iou = box_iou(gt_boxes, anchors)
    best, matched = iou.max(dim=0)
    labels = torch.full_like(matched, -1)
    labels[best < low] = 0
    labels[best >= high] = 1
    labels[torch.where(iou == iou.max(dim=1, keepdim=True).values)[1]] = 1  # each box's best anchors (ties too)
    return matched, labels


def reference_losses(
    model: torch.nn.Module,
    images: list[np.ndarray],
    gt_boxes: list[torch.Tensor],
    gt_classes: list[torch.Tensor],
    opts: ModelConfig,
) -> dict[str, torch.Tensor]:
    """detectron2's four training losses for ``images`` (8-bit RGB, already resized) with ``gt_boxes`` in their
    pixels and 0-based ``gt_classes``, through ``model``'s parts."""
    sizes = [image.shape[:2] for image in images]
    height, width = max(h for h, _ in sizes), max(w for _, w in sizes)
    batch = torch.zeros(len(images), 3, height, width)  # ImageList.from_tensors: zero padding, no divisibility
    for i, image in enumerate(images):
        bgr = torch.from_numpy(np.ascontiguousarray(image[:, :, ::-1])).permute(2, 0, 1).float()
        batch[i, :, : image.shape[0], : image.shape[1]] = bgr - MSRA_MEAN
    features = model.backbone(batch)
    logits, deltas = (output[0] for output in model.rpn.head([features]))
    num_anchors = logits.shape[1]
    logits = logits.permute(0, 2, 3, 1).flatten(1)  # [N, H * W * A], location-major as the anchors
    deltas = (
        deltas.view(len(images), num_anchors, 4, *deltas.shape[-2:]).permute(0, 3, 4, 1, 2).reshape(len(images), -1, 4)
    )
    image_list = ImageList(batch, [tuple(s) for s in sizes])
    anchors = model.rpn.anchor_generator(image_list, [features])[0]

    # RPN: labels, the first 256 x 0.5 positives and the negatives, losses summed / (256 x images).
    rpn_cls, rpn_loc = 0.0, 0.0
    for i in range(len(images)):
        matched, labels = anchor_labels(gt_boxes[i], anchors, opts.rpn_bg_iou_thresh, opts.rpn_fg_iou_thresh)
        positive, negative = first_by_index(labels, opts.rpn_batch_size_per_image, opts.rpn_positive_fraction)
        sampled = torch.cat([positive, negative])
        rpn_cls = rpn_cls + F.binary_cross_entropy_with_logits(
            logits[i, sampled], labels[sampled].float(), reduction="sum"
        )
        targets = box_deltas(anchors[positive], gt_boxes[i][matched[positive]], (1.0, 1.0, 1.0, 1.0))
        rpn_loc = rpn_loc + smooth_l1_sum(deltas[i, positive], targets, opts.rpn_smooth_l1_beta)
    normalizer = opts.rpn_batch_size_per_image * len(images)

    # Proposals as at inference (proven equal), from detached outputs; then the RoIs: ground truth appended,
    # matched at 0.5, the first 512 x 0.25 foreground then background, fg first.
    decoded = model.rpn.box_coder.decode(deltas.detach().reshape(-1, 4), [anchors] * len(images))
    proposals, _ = model.rpn.filter_proposals(
        decoded.view(len(images), -1, 4), logits.detach(), image_list.image_sizes, [anchors.shape[0]]
    )
    rois, classes, regression = [], [], []
    for i in range(len(images)):
        candidates = torch.cat([proposals[i], gt_boxes[i]])
        best, matched = box_iou(gt_boxes[i], candidates).max(dim=0)
        labels = (best >= opts.box_fg_iou_thresh).long()
        foreground, background = first_by_index(labels, opts.box_batch_size_per_image, opts.box_positive_fraction)
        sampled = torch.cat([foreground, background])
        rois.append(candidates[sampled])
        classes.append(
            torch.where(labels[sampled] == 1, gt_classes[i][matched[sampled]] + 1, 0)
        )  # background first here
        regression.append(box_deltas(candidates[sampled], gt_boxes[i][matched[sampled]], (10.0, 10.0, 5.0, 5.0)))
    pooled = model.roi_heads.box_roi_pool({"0": features}, rois, image_list.image_sizes)
    class_logits, box_deltas_all = model.roi_heads.box_predictor(model.roi_heads.box_head(pooled))
    classes, regression = torch.cat(classes), torch.cat(regression)
    foreground = torch.where(classes > 0)[0]
    predicted = box_deltas_all.view(len(classes), -1, 4)[foreground, classes[foreground]]
    return {
        "loss_objectness": rpn_cls / normalizer,
        "loss_rpn_box_reg": rpn_loc / normalizer,
        "loss_classifier": F.cross_entropy(class_logits, classes),
        "loss_box_reg": smooth_l1_sum(predicted, regression[foreground], opts.box_smooth_l1_beta) / len(classes),
    }


GT_BOXES = torch.tensor(
    [[20.5, 30.0, 150.0, 200.0], [100.0, 50.0, 400.0, 280.0], [300.0, 10.0, 440.0, 120.0], [60.0, 150.0, 120.0, 290.0]]
)
GT_CLASSES = torch.tensor([0, 17, 2, 56])


def assert_detectron2_step(
    model: torch.nn.Module,
    opts: ModelConfig,
    pixels: list[np.ndarray],
    boxes: list[torch.Tensor],
    classes: list[torch.Tensor],
) -> None:
    """The model's (built from ``opts``) losses and gradients for the 8-bit RGB images ``pixels`` with ``boxes``
    and 0-based ``classes``, against the reference's for their resize."""
    short, max_size = model.transform.min_size[-1], model.transform.max_size
    model.train()
    model.rpn.fg_bg_sampler = FirstByIndex(opts.rpn_batch_size_per_image, opts.rpn_positive_fraction)
    model.roi_heads.fg_bg_sampler = FirstByIndex(opts.box_batch_size_per_image, opts.box_positive_fraction)
    images = [rgb_01(p) for p in pixels]
    targets = [{"boxes": b, "labels": c + 1} for b, c in zip(boxes, classes, strict=True)]
    parameters = [p for p in model.parameters() if p.requires_grad]
    losses = model(images, targets)
    gradients = torch.autograd.grad(sum(losses.values()), parameters)

    resized, scaled = [], []
    for p, b in zip(pixels, boxes, strict=True):
        image, scale_x, scale_y = detectron2_resize(p, short, max_size)
        resized.append(image)
        scaled.append((b.double() * torch.tensor([scale_x, scale_y] * 2, dtype=torch.float64)).float())  # apply_box
    expected = reference_losses(model, resized, scaled, classes, opts)
    expected_gradients = torch.autograd.grad(sum(expected.values()), parameters)

    assert set(losses) == set(expected)
    for name, value in expected.items():
        assert float(losses[name].detach()) == pytest.approx(float(value.detach()), rel=1e-4), name
    for actual, reference in zip(gradients, expected_gradients, strict=True):
        assert float((actual - reference).abs().max()) <= 1e-3 * float(reference.abs().max())


@pytest.fixture
def fast_c4():
    """detectron2's C4 recipe on ResNet-18 (BasicBlocks: no stride in the 1x1), small images, 32 RoIs per image
    (res5 runs per RoI, backward too); an RPN mini-batch larger than the anchors, so that detectron2's
    normaliser (not the number of anchors sampled) is pinned."""
    overrides = [
        "model.backbone=resnet18",
        "model.weights=null",
        "model.backbone_kwargs={norm: frozen_bn, aligned: true, sampling_ratio: 0}",
    ]
    config = load_config(
        str(DETECTRON2_C4_CONFIG),
        [
            *overrides,
            "model.min_size=[160]",
            "model.max_size=240",
            "model.rpn_batch_size_per_image=4096",
            "model.box_batch_size_per_image=32",
        ],
    )
    torch.manual_seed(0)
    model = detector_from_config(config.model, 81, backbone_weights=False)
    randomize_frozen_bn(model)
    return model, config.model


def test_a_training_step_gives_detectron2s_losses_and_gradients(fast_c4):
    # A landscape image enlarged 150 x 225 -> 160 x 240 and a portrait one reduced 300 x 200 -> 240 x 160 (the long
    # side capped), batched with padding; four and two boxes.
    pixels = [photo(150, 225, seed=0), photo(300, 200, seed=1)]
    boxes = [GT_BOXES / 2, torch.tensor([[10.0, 20.0, 150.0, 290.0], [40.0, 60.0, 90.0, 120.0]])]
    classes = [GT_CLASSES, torch.tensor([5, 79])]
    assert_detectron2_step(*fast_c4, pixels, boxes, classes)


@pytest.mark.slow
def test_a_training_step_of_r101_c4_gives_detectron2s_losses_and_gradients():
    """The recipe as it is (R101, 256 anchors and 512 RoIs per image), one 300 x 450 image resized to 320 x 480."""
    config = detectron2_c4_config(101)
    torch.manual_seed(0)
    model = detector_from_config(config.model, 81, backbone_weights=False)
    randomize_frozen_bn(model)
    with torch.no_grad():
        model.rpn.head.cls_logits.weight.mul_(10.0)  # confident objectness: the proposals are not a tie
    model.transform.min_size, model.transform.max_size = (320,), 480
    assert_detectron2_step(model, config.model, [photo(300, 450, seed=0)], [GT_BOXES], [GT_CLASSES])
