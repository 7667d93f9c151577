"""Grounding DINO's training loss: Hungarian matching, token-level sigmoid
focal loss against the positive map, and L1 + GIoU box losses, applied to
every decoder layer and to the encoder's two-stage proposals.

Shape letters: B detector passes (one image with one caption each, so an
image whose prompt is split into several captions appears once per caption),
Q queries, N ground-truth instances, T text tokens (the encoder limit,
`max_text_len`).
"""
from typing import Optional

import torch
from mmdet.registry import MODELS, TASK_UTILS
from mmdet.structures.bbox import bbox_cxcywh_to_xyxy, bbox_xyxy_to_cxcywh
from mmengine.structures import InstanceData
from torch import Tensor, nn

from ..fields import LOSS_BBOX, LOSS_CLS, LOSS_IOU
from .grounding_dino import GroundingDinoOutputs

ENCODER_PREFIX = 'enc'


class GroundingDetectionLoss(nn.Module):
    """Compute the detection losses of one batch.

    Args:
        assigner: config of the Hungarian assigner and its match costs.
        loss_cls: config of the token-level classification loss.
        loss_bbox: config of the L1 loss on normalized cxcywh boxes.
        loss_iou: config of the GIoU loss on pixel xyxy boxes.
        max_text_len: the text encoder's token limit T.
    """

    def __init__(self, *, assigner: dict, loss_cls: dict, loss_bbox: dict,
                 loss_iou: dict, max_text_len: int = 256) -> None:
        super().__init__()
        self.assigner = TASK_UTILS.build(assigner)
        self.loss_cls = MODELS.build(loss_cls)
        self.loss_bbox = MODELS.build(loss_bbox)
        self.loss_iou = MODELS.build(loss_iou)
        self.max_text_len = max_text_len

    def forward(self, outputs: GroundingDinoOutputs, gt_instances: list[InstanceData],
                img_metas: list[dict],
                last_layer_matches: Optional[list[tuple[Tensor, Tensor]]] = None
                ) -> dict[str, Tensor]:
        """Return the losses of every decoder layer and of the proposals.

        The last decoder layer's losses carry plain names (`loss_cls`); earlier
        layers are prefixed `d0.`, `d1.`, ... and the proposals `enc.`.
        `gt_instances[i]` contains `bboxes` (N, 4) in input pixels and
        `positive_maps` (N, T).

        Args:
            last_layer_matches: a list that receives the last decoder layer's
                Hungarian matches, per pass a pair (query indices,
                ground-truth indices); `GroundingSAM` prompts SAM with them.
        """
        token_mask = self._pad_token_mask(outputs.text_token_mask)
        num_layers = outputs.layer_logits.shape[0]
        losses = {}
        for layer_index in range(num_layers):
            is_last = layer_index == num_layers - 1
            prefix = '' if is_last else f'd{layer_index}.'
            layer_losses = self.loss_single(outputs.layer_logits[layer_index],
                                            outputs.layer_boxes[layer_index],
                                            token_mask, gt_instances, img_metas,
                                            last_layer_matches if is_last else None)
            losses.update({prefix + name: value for name, value in layer_losses.items()})

        if outputs.encoder_logits is not None:
            encoder_losses = self.loss_single(outputs.encoder_logits, outputs.encoder_boxes,
                                              token_mask, gt_instances, img_metas)
            losses.update({f'{ENCODER_PREFIX}.{name}': value
                           for name, value in encoder_losses.items()})
        return losses

    def _pad_token_mask(self, text_token_mask: Tensor) -> Tensor:
        """Pad the (B, T') token mask to (B, T) to match the padded logits."""
        batch_size, num_tokens = text_token_mask.shape
        padded = text_token_mask.new_zeros(batch_size, self.max_text_len)
        padded[:, :num_tokens] = text_token_mask
        return padded

    def loss_single(self, logits: Tensor, boxes: Tensor, token_mask: Tensor,
                    gt_instances: list[InstanceData],
                    img_metas: list[dict],
                    matches: Optional[list[tuple[Tensor, Tensor]]] = None) -> dict[str, Tensor]:
        """Match and compute the losses of one set of predictions.

        Args:
            logits: (B, Q, T) token logits, -inf on padding tokens.
            boxes: (B, Q, 4) sigmoid cxcywh boxes, relative to each image's
                unpadded size.
            token_mask: (B, T), True on real tokens.
            matches: when given, each image's (query indices, ground-truth
                indices) are appended to it.
        """
        token_targets = torch.zeros_like(logits)
        box_targets = torch.zeros_like(boxes)
        positive_queries = torch.zeros(boxes.shape[:2], dtype=torch.bool, device=boxes.device)
        for image_index, (instances, img_meta) in enumerate(zip(gt_instances, img_metas)):
            query_indices, gt_indices = self.match(logits[image_index], boxes[image_index],
                                                   token_mask[image_index], instances, img_meta)
            if matches is not None:
                matches.append((query_indices, gt_indices))
            token_targets[image_index, query_indices] = \
                instances.positive_maps[gt_indices].to(logits.dtype)
            box_targets[image_index, query_indices] = bbox_xyxy_to_cxcywh(
                instances.bboxes[gt_indices] / self._size_factor(img_meta, boxes))
            positive_queries[image_index, query_indices] = True

        # Averaged over the ranks before the clamp, as mmdet does, so a rank
        # without objects does not add a positive.
        num_positives = reduce_mean_across_ranks(positive_queries.sum().float()).clamp(min=1)

        valid_tokens = token_mask[:, None, :].expand_as(logits)
        loss_cls = self.loss_cls(logits[valid_tokens], token_targets[valid_tokens],
                                 avg_factor=num_positives)

        predicted = boxes[positive_queries]
        targets = box_targets[positive_queries]
        loss_bbox = self.loss_bbox(predicted, targets, avg_factor=num_positives)
        scale = torch.cat([self._size_factor(meta, boxes).expand(int(count), 4)
                           for meta, count in zip(img_metas, positive_queries.sum(1))])
        loss_iou = self.loss_iou(bbox_cxcywh_to_xyxy(predicted) * scale,
                                 bbox_cxcywh_to_xyxy(targets) * scale,
                                 avg_factor=num_positives)
        return {LOSS_CLS: loss_cls, LOSS_BBOX: loss_bbox, LOSS_IOU: loss_iou}

    @staticmethod
    def _size_factor(img_meta: dict, like: Tensor) -> Tensor:
        height, width = img_meta['img_shape'][:2]
        return like.new_tensor([width, height, width, height]).unsqueeze(0)

    @torch.no_grad()
    def match(self, logits: Tensor, boxes: Tensor, token_mask: Tensor,
              instances: InstanceData, img_meta: dict) -> tuple[Tensor, Tensor]:
        """Return matched query indices and their ground-truth indices for one image."""
        if len(instances) == 0:
            empty = torch.zeros(0, dtype=torch.long, device=boxes.device)
            return empty, empty
        pred_instances = InstanceData(
            scores=logits.float(),
            bboxes=bbox_cxcywh_to_xyxy(boxes.float()) * self._size_factor(img_meta, boxes))
        gt_for_assigner = InstanceData(
            bboxes=instances.bboxes.float(),
            labels=instances.labels,
            positive_maps=instances.positive_maps.float(),
            text_token_mask=token_mask[None].expand(len(instances), -1))
        assign_result = self.assigner.assign(pred_instances=pred_instances,
                                             gt_instances=gt_for_assigner, img_meta=img_meta)
        query_indices = torch.nonzero(assign_result.gt_inds > 0).squeeze(-1)
        gt_indices = assign_result.gt_inds[query_indices] - 1
        return query_indices, gt_indices


def reduce_mean_across_ranks(value: Tensor) -> Tensor:
    """Average a scalar over distributed ranks so that every rank normalizes
    its losses by the same number of positives."""
    if torch.distributed.is_available() and torch.distributed.is_initialized():
        value = value.clone()
        torch.distributed.all_reduce(value)
        value = value / torch.distributed.get_world_size()
    return value


def default_detection_loss(max_text_len: int = 256) -> dict:
    """Return the loss settings of MMDetection 3.3's Grounding DINO configs:
    focal (alpha 0.25, gamma 2) with weight 1, L1 weight 5, GIoU weight 2, and
    the same weights in the matching costs (classification cost 2).

    The classification cost is mmdet's `BinaryFocalLossCost`: for a query and
    an instance it sums the positive focal cost over the instance's tokens and
    the negative one over every other valid token of the caption, so it grows
    with the caption's length.
    """
    return dict(
        assigner=dict(
            type='HungarianAssigner',
            match_costs=[
                dict(type='BinaryFocalLossCost', weight=2.0),
                dict(type='BBoxL1Cost', weight=5.0, box_format='xywh'),
                dict(type='IoUCost', iou_mode='giou', weight=2.0),
            ]),
        loss_cls=dict(type='FocalLoss', use_sigmoid=True, gamma=2.0, alpha=0.25, loss_weight=1.0),
        loss_bbox=dict(type='L1Loss', loss_weight=5.0),
        loss_iou=dict(type='GIoULoss', loss_weight=2.0),
        max_text_len=max_text_len,
    )

