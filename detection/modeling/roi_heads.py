"""torchvision's RoI heads with detectron2's losses and test-time post-processing of the detections."""

import torch
import torch.nn.functional as F
from torch import Tensor, nn
from torchvision.models.detection.faster_rcnn import FastRCNNPredictor
from torchvision.models.detection.roi_heads import RoIHeads
from torchvision.ops import boxes as box_ops

from .rpn import nonempty_finite


class C4BoxPredictor(FastRCNNPredictor):
    """torchvision's ``FastRCNNPredictor`` (same constructor and weights) computed in float32 under autocast
    too: two small linear layers whose scores and box deltas decide the detections."""

    def forward(self, x: Tensor) -> tuple[Tensor, Tensor]:
        """``[N, C]`` (or ``[N, C, 1, 1]``) box features -> float32 class logits ``[N, K + 1]`` and box
        deltas ``[N, 4 (K + 1)]``."""
        x = x.flatten(start_dim=1).float()
        if torch.jit.is_scripting():
            return self.cls_score(x), self.bbox_pred(x)
        with torch.autocast(x.device.type, enabled=False):
            return self.cls_score(x), self.bbox_pred(x)


def fast_rcnn_losses(
    class_logits: Tensor,
    box_regression: Tensor,
    labels: list[Tensor],
    regression_targets: list[Tensor],
    smooth_l1_beta: float,
) -> tuple[Tensor, Tensor]:
    """The box head's losses over the sampled RoIs of all images (``class_logits`` ``[R, K + 1]``,
    ``box_regression`` ``[R, 4 (K + 1)]``; per image their ``labels``, 0 for background, and
    ``regression_targets``): the mean cross entropy, and the smooth L1 (0: L1) of each foreground RoI's deltas
    for its class, summed and divided by ``R``, as torchvision's ``fastrcnn_loss`` and detectron2's
    ``FastRCNNOutputLayers.losses`` both normalise it (every foreground RoI weighs the same in any batch)."""
    labels_all = torch.cat(labels, dim=0)
    targets = torch.cat(regression_targets, dim=0)
    classification_loss = F.cross_entropy(class_logits, labels_all)
    foreground = torch.where(labels_all > 0)[0]
    deltas = box_regression.reshape(box_regression.shape[0], -1, 4)[foreground, labels_all[foreground]]
    box_loss = F.smooth_l1_loss(deltas, targets[foreground], beta=smooth_l1_beta, reduction="sum")
    return classification_loss, box_loss / max(labels_all.numel(), 1)


class C4RoIHeads(RoIHeads):
    """``RoIHeads`` (same constructor for the box head, plus ``smooth_l1_beta``) whose losses and detections
    follow detectron2's ``FastRCNNOutputLayers``.

    Training: the RoIs sampled through ``fg_bg_sampler`` from the proposals and the ground truth boxes
    (torchvision's ``select_training_samples``), losses by :func:`fast_rcnn_losses`.

    Detections, per image: softmax scores and class-specific boxes decoded and clipped; every (box, class)
    with a score ``> score_thresh`` (background excluded), non-finite ones dropped; class-wise NMS at
    ``nms_thresh``; the ``detections_per_img`` best; then boxes with zero width or height dropped.
    torchvision instead drops boxes under 0.01 px before NMS, which can let another box through.

    Args:
        smooth_l1_beta: of the box regression loss; 0 is L1.
    """

    def __init__(
        self,
        box_roi_pool: nn.Module,
        box_head: nn.Module,
        box_predictor: nn.Module,
        fg_iou_thresh: float,
        bg_iou_thresh: float,
        batch_size_per_image: int,
        positive_fraction: float,
        bbox_reg_weights: tuple[float, float, float, float] | None,
        score_thresh: float,
        nms_thresh: float,
        detections_per_img: int,
        smooth_l1_beta: float = 1.0 / 9,
    ) -> None:
        super().__init__(
            box_roi_pool,
            box_head,
            box_predictor,
            fg_iou_thresh,
            bg_iou_thresh,
            batch_size_per_image,
            positive_fraction,
            bbox_reg_weights,
            score_thresh,
            nms_thresh,
            detections_per_img,
        )
        self.smooth_l1_beta = smooth_l1_beta

    def forward(
        self,
        features: dict[str, Tensor],
        proposals: list[Tensor],
        image_shapes: list[tuple[int, int]],
        targets: list[dict[str, Tensor]] | None = None,
    ) -> tuple[list[dict[str, Tensor]], dict[str, Tensor]]:
        """torchvision's ``RoIHeads.forward`` for a box head alone: ``(detections, {})`` in eval mode,
        ``([], {"loss_classifier", "loss_box_reg"})`` in training."""
        if self.training:
            if targets is None:
                raise ValueError("targets should not be None in training")
            proposals, _, labels, regression_targets = self.select_training_samples(proposals, targets)
            class_logits, box_regression = self.predict(features, proposals, image_shapes)
            loss_classifier, loss_box_reg = fast_rcnn_losses(
                class_logits, box_regression, labels, regression_targets, self.smooth_l1_beta
            )
            return [], {"loss_classifier": loss_classifier, "loss_box_reg": loss_box_reg}
        class_logits, box_regression = self.predict(features, proposals, image_shapes)
        boxes, scores, labels = self.postprocess_detections(class_logits, box_regression, proposals, image_shapes)
        detections: list[dict[str, Tensor]] = []
        for i in range(len(boxes)):
            detections.append({"boxes": boxes[i], "labels": labels[i], "scores": scores[i]})
        return detections, {}

    def predict(
        self, features: dict[str, Tensor], proposals: list[Tensor], image_shapes: list[tuple[int, int]]
    ) -> tuple[Tensor, Tensor]:
        """Pooled RoIs through the per-RoI head and the predictor: class logits ``[R, K + 1]`` and box deltas
        ``[R, 4 (K + 1)]`` for the ``R`` proposals of all images."""
        box_features = self.box_head(self.box_roi_pool(features, proposals, image_shapes))
        return self.box_predictor(box_features)

    def postprocess_detections(
        self,
        class_logits: Tensor,
        box_regression: Tensor,
        proposals: list[Tensor],
        image_shapes: list[tuple[int, int]],
    ) -> tuple[list[Tensor], list[Tensor], list[Tensor]]:
        """``class_logits`` ``[R, K + 1]`` (background first), ``box_regression`` ``[R, 4 (K + 1)]`` ->
        per image, boxes ``[n, 4]``, scores ``[n]`` and labels ``[n]`` in ``1..K``, by descending score."""
        num_classes = class_logits.shape[-1]
        boxes_per_image = [boxes_in_image.shape[0] for boxes_in_image in proposals]
        pred_boxes = self.box_coder.decode(box_regression, proposals).split(boxes_per_image, 0)
        pred_scores = F.softmax(class_logits, -1).split(boxes_per_image, 0)
        all_boxes, all_scores, all_labels = [], [], []
        for boxes, scores, image_shape in zip(pred_boxes, pred_scores, image_shapes):
            boxes = box_ops.clip_boxes_to_image(boxes, image_shape)[:, 1:].reshape(-1, 4)
            labels = torch.arange(1, num_classes, device=scores.device).view(1, -1).expand_as(scores[:, 1:])
            scores, labels = scores[:, 1:].reshape(-1), labels.reshape(-1)
            keep = torch.where(scores > self.score_thresh)[0]
            boxes, scores, labels = boxes[keep], scores[keep], labels[keep]
            keep = torch.isfinite(boxes).all(dim=1) & torch.isfinite(scores)
            boxes, scores, labels = boxes[keep], scores[keep], labels[keep]
            # Grouped by the 0-based class, as detectron2: batched_nms offsets each group's boxes by its
            # index, and another offset rounds the float32 coordinates differently.
            keep = box_ops.batched_nms(boxes, scores, labels - 1, self.nms_thresh)[: self.detections_per_img]
            boxes, scores, labels = boxes[keep], scores[keep], labels[keep]
            keep = nonempty_finite(boxes, scores)
            all_boxes.append(boxes[keep])
            all_scores.append(scores[keep])
            all_labels.append(labels[keep])
        return all_boxes, all_scores, all_labels
