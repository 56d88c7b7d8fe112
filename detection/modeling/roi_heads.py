"""torchvision's RoI heads with detectron2's test-time post-processing of the detections."""

import torch
import torch.nn.functional as F
from torch import Tensor
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


class C4RoIHeads(RoIHeads):
    """``RoIHeads`` (same constructor) whose detections follow detectron2's ``fast_rcnn_inference``.

    Per image: softmax scores and class-specific boxes decoded and clipped; every (box, class) with a
    score ``> score_thresh`` (background excluded), non-finite ones dropped; class-wise NMS at
    ``nms_thresh``; the ``detections_per_img`` best; then boxes with zero width or height dropped.
    torchvision instead drops boxes under 0.01 px before NMS, which can let another box through.
    """

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
