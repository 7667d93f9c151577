"""Box prompts for SAM during training: jittered ground-truth boxes, the
detector's own Hungarian-matched boxes, or both.

At inference SAM receives only Grounding DINO's boxes, which are looser or
tighter than the annotated ones in ways jitter does not imitate. Training on
the matched predictions closes that gap; mixing keeps the clean ground-truth
prompts in the batch as well.

Shape letters: B detector passes (one image with one caption each), Q
queries, N ground-truth instances of one image, P box prompts of one image.
"""
from dataclasses import dataclass
from typing import Optional, Sequence

import torch
from mmdet.structures.bbox import bbox_cxcywh_to_xyxy
from torch import Tensor

from ..errors import ConfigError
from ..fields import SAM_PROMPT_MODES
from .sam import jitter_boxes


def check_sam_prompt_mode(mode: str) -> None:
    """Raise ConfigError unless `mode` is one of `SAM_PROMPT_MODES`."""
    if mode not in SAM_PROMPT_MODES:
        raise ConfigError(f'sam_prompts must be one of {list(SAM_PROMPT_MODES)}, got {mode!r}')


@dataclass
class MatchedBoxes:
    """The detector's box matched to each ground-truth instance of one image.

    Attributes:
        boxes: (N, 4) xyxy in input pixels, detached from the graph; rows of
            unmatched instances are zero.
        matched: (N,) bool, True where a query was matched to the instance.
    """

    boxes: Tensor
    matched: Tensor


def matched_boxes_per_image(layer_boxes: Tensor,
                            matches: Sequence[tuple[Tensor, Tensor]],
                            num_instances: Sequence[int],
                            content_shapes: Sequence[tuple[int, int]]) -> list[MatchedBoxes]:
    """Gather the matched query box of every ground-truth instance.

    Args:
        layer_boxes: (B, Q, 4) sigmoid cxcywh boxes of the decoder layer the
            matches belong to, relative to each image's unpadded size.
        matches: per image, (query indices, ground-truth indices) from the
            Hungarian assigner.
        num_instances: N of each image.
        content_shapes: (height, width) of each image before padding.

    Returns:
        One `MatchedBoxes` per image. The boxes are detached, because the
        mask loss must not move the detector through its prompts.
    """
    per_image = []
    for image_index, (query_indices, gt_indices) in enumerate(matches):
        height, width = content_shapes[image_index]
        scale = layer_boxes.new_tensor([width, height, width, height])
        boxes = layer_boxes.new_zeros((num_instances[image_index], 4))
        matched = torch.zeros(num_instances[image_index], dtype=torch.bool,
                              device=layer_boxes.device)
        query_boxes = layer_boxes[image_index, query_indices].detach().float()
        boxes[gt_indices] = bbox_cxcywh_to_xyxy(query_boxes) * scale
        matched[gt_indices] = True
        per_image.append(MatchedBoxes(boxes=boxes, matched=matched))
    return per_image


def select_box_prompts(mode: str, gt_boxes: Tensor, matched: Optional[MatchedBoxes],
                       box_jitter: float, box_jitter_max: float) -> tuple[Tensor, Tensor]:
    """Choose SAM's box prompts for the selected instances of one image.

    - `gt`: one jittered ground-truth box per instance.
    - `pred`: the matched predicted box per instance. An instance without a
      match (only possible when it has more instances than queries) falls
      back to its jittered ground-truth box.
    - `mixed`: both, so every matched instance is decoded twice.

    Args:
        mode: one of `SAM_PROMPT_MODES`.
        gt_boxes: (N, 4) xyxy ground-truth boxes in input pixels.
        matched: the matched boxes of the same N instances; required unless
            `mode` is `gt`.
        box_jitter: noise standard deviation as a fraction of the box side.
        box_jitter_max: cap on that standard deviation, in input pixels.

    Returns:
        Prompts (P, 4) xyxy in input pixels, and for each prompt the index
        (P,) of the instance whose mask is its target.
    """
    check_sam_prompt_mode(mode)
    instance_indices = torch.arange(len(gt_boxes), device=gt_boxes.device)
    jittered = jitter_boxes(gt_boxes, box_jitter, box_jitter_max)
    if mode == 'gt':
        return jittered, instance_indices
    if matched is None:
        raise ValueError(f'sam_prompts={mode!r} needs the matched predicted boxes')

    if mode == 'pred':
        keep_predicted = matched.matched[:, None]
        return torch.where(keep_predicted, matched.boxes, jittered), instance_indices

    predicted_indices = instance_indices[matched.matched]
    prompts = torch.cat([jittered, matched.boxes[predicted_indices]])
    return prompts, torch.cat([instance_indices, predicted_indices])
