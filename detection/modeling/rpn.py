"""torchvision's region proposal network with detectron2's proposal selection and losses.

Same head, anchor matching and sampling (through ``fg_bg_sampler``) as torchvision's
``RegionProposalNetwork``. The losses are detectron2's (``StandardRPNHead``'s ``losses``): sums over the
sampled anchors divided by ``batch_size_per_image x images`` (Ren et al.'s mini-batch normaliser
``N_cls = 256``), the box term a smooth L1 with a configurable beta (detectron2's C4 configs: 0, L1;
torchvision: 1/9). torchvision divides by the anchors actually sampled, which is the same number whenever
every image fills its mini-batch. The selection of proposals from the scored anchors follows detectron2's
``find_top_rpn_proposals``, which the published C4 models were trained and evaluated with:

- non-maximum suppression ranks boxes by objectness logit, not by its sigmoid (float32 sigmoids of
  large logits tie at 1.0, and ties change which box suppresses which);
- a box is kept when its width and height are positive after clipping (torchvision: at least 1e-3 px);
- non-finite boxes or scores are dropped; there is no score threshold (torchvision's default is 0).
"""

import torch
import torch.nn.functional as F
from torch import Tensor, nn
from torchvision.models.detection.rpn import RegionProposalNetwork, RPNHead
from torchvision.ops import boxes as box_ops


def nonempty_finite(boxes: Tensor, scores: Tensor) -> Tensor:
    """Mask of the rows of ``boxes`` ``[N, 4]`` with positive width and height and finite values, and
    finite ``scores`` ``[N]``."""
    widths, heights = boxes[:, 2] - boxes[:, 0], boxes[:, 3] - boxes[:, 1]
    return (widths > 0) & (heights > 0) & torch.isfinite(boxes).all(dim=1) & torch.isfinite(scores)


class C4RPNHead(RPNHead):
    """torchvision's ``RPNHead`` (same constructor and weights) whose objectness logits and box deltas are
    computed in float32 under autocast too: the 3x3 conv may run in bfloat16, but bfloat16 logits would tie
    in the top-k and NMS ranking, and its deltas would move boxes by pixels."""

    def forward(self, x: list[Tensor]) -> tuple[list[Tensor], list[Tensor]]:
        """Feature maps ``[B, C, H, W]`` -> float32 logits ``[B, A, H, W]`` and deltas ``[B, 4A, H, W]``."""
        logits, deltas = [], []
        for feature in x:
            t = self.conv(feature).float()
            if torch.jit.is_scripting():
                logits.append(self.cls_logits(t))
                deltas.append(self.bbox_pred(t))
            else:
                with torch.autocast(t.device.type, enabled=False):
                    logits.append(self.cls_logits(t))
                    deltas.append(self.bbox_pred(t))
        return logits, deltas


class C4RegionProposalNetwork(RegionProposalNetwork):
    """``RegionProposalNetwork`` (same constructor, plus ``smooth_l1_beta``) selecting proposals and computing
    its losses as detectron2 does.

    Per image: the ``pre_nms_top_n`` anchors of highest objectness logit (torchvision's top-k), their
    decoded boxes clipped to the image, empty or non-finite ones dropped, NMS at ``nms_thresh`` on the
    logits, the first ``post_nms_top_n`` kept in descending logit order.

    Args:
        smooth_l1_beta: of the box regression loss; 0 is L1.
    """

    def __init__(
        self,
        anchor_generator: nn.Module,
        head: nn.Module,
        fg_iou_thresh: float,
        bg_iou_thresh: float,
        batch_size_per_image: int,
        positive_fraction: float,
        pre_nms_top_n: dict[str, int],
        post_nms_top_n: dict[str, int],
        nms_thresh: float,
        score_thresh: float = 0.0,
        smooth_l1_beta: float = 1.0 / 9,
    ) -> None:
        super().__init__(
            anchor_generator,
            head,
            fg_iou_thresh,
            bg_iou_thresh,
            batch_size_per_image,
            positive_fraction,
            pre_nms_top_n,
            post_nms_top_n,
            nms_thresh,
            score_thresh,
        )
        self.smooth_l1_beta = smooth_l1_beta

    def compute_loss(
        self, objectness: Tensor, pred_bbox_deltas: Tensor, labels: list[Tensor], regression_targets: list[Tensor]
    ) -> tuple[Tensor, Tensor]:
        """``objectness`` logits ``[A_total]`` (all images), ``pred_bbox_deltas`` ``[A_total, 4]``, per image the
        anchors' ``labels`` (1, 0, -1: ignored) and ``regression_targets`` -> the objectness loss (binary cross
        entropy summed over the sampled anchors) and the box loss (smooth L1 summed over the sampled positive
        ones), each divided by the sampler's ``batch_size_per_image x images``."""
        sampled_positive, sampled_negative = self.fg_bg_sampler(labels)
        positive = torch.cat(sampled_positive, dim=0) > 0
        sampled = torch.where(positive | (torch.cat(sampled_negative, dim=0) > 0))[0]
        positive = torch.where(positive)[0]
        labels_all = torch.cat(labels, dim=0)
        targets = torch.cat(regression_targets, dim=0)
        normalizer = float(self.fg_bg_sampler.batch_size_per_image * len(labels))
        box_loss = F.smooth_l1_loss(
            pred_bbox_deltas[positive], targets[positive], beta=self.smooth_l1_beta, reduction="sum"
        )
        objectness_loss = F.binary_cross_entropy_with_logits(
            objectness.flatten()[sampled], labels_all[sampled], reduction="sum"
        )
        return objectness_loss / normalizer, box_loss / normalizer

    def filter_proposals(
        self,
        proposals: Tensor,
        objectness: Tensor,
        image_shapes: list[tuple[int, int]],
        num_anchors_per_level: list[int],
    ) -> tuple[list[Tensor], list[Tensor]]:
        """``proposals`` ``[B, A_total, 4]`` and ``objectness`` logits -> per image, boxes ``[n, 4]``
        and their objectness probabilities ``[n]``, by descending logit."""
        num_images = proposals.shape[0]
        objectness = objectness.detach().reshape(num_images, -1)
        top_n_idx = self._get_top_n_idx(objectness, num_anchors_per_level)
        batch_idx = torch.arange(num_images, device=proposals.device)[:, None]
        objectness, proposals = objectness[batch_idx, top_n_idx], proposals[batch_idx, top_n_idx]
        final_boxes, final_scores = [], []
        for boxes, logits, image_shape in zip(proposals, objectness, image_shapes):
            boxes = box_ops.clip_boxes_to_image(boxes, image_shape)
            keep = nonempty_finite(boxes, logits)
            boxes, logits = boxes[keep], logits[keep]
            # One feature map: detectron2 still calls batched_nms with one level, whose CPU path for
            # many boxes re-sorts the kept boxes; the same call keeps equal-logit ties in its order.
            levels = torch.zeros_like(logits, dtype=torch.int64)
            keep = box_ops.batched_nms(boxes, logits, levels, self.nms_thresh)[: self.post_nms_top_n()]
            final_boxes.append(boxes[keep])
            final_scores.append(torch.sigmoid(logits[keep]))
        return final_boxes, final_scores
