"""Turning Grounding DINO's outputs into detections: the unpadded image
size, per-category scores of a caption chunk, the top-k over chunks, and the
mapping of boxes and masks back to the original image.

Shape letters: Q queries, T text tokens, K_c categories of one caption chunk,
N detections, H and W input pixels.
"""
import torch
import torch.nn.functional as F
from mmdet.structures.bbox import bbox_cxcywh_to_xyxy
from mmengine.structures import InstanceData
from torch import Tensor

from ..prompt import PromptChunk


def content_shape(img_meta: dict) -> tuple[int, int]:
    """Return the (height, width) of the resized image before padding.

    MMCV's `Pad` overwrites `img_shape` with the padded size, so the content
    size is recovered from `ori_shape` and `scale_factor`. The result is
    exact because `Resize` rounds the new size the same way.

    NOTE: a transform between `Resize` and `Pad` that changes the size
    without updating `scale_factor`, such as a crop, makes this wrong
    silently. The shipped pipelines have none.
    """
    height, width = img_meta['img_shape'][:2]
    if 'scale_factor' not in img_meta or 'ori_shape' not in img_meta:
        return height, width
    scale_x, scale_y = img_meta['scale_factor']
    original_height, original_width = img_meta['ori_shape'][:2]
    return (min(height, int(original_height * scale_y + 0.5)),
            min(width, int(original_width * scale_x + 0.5)))


def score_chunk(logits: Tensor, boxes: Tensor, chunk: PromptChunk,
                max_per_image: int) -> tuple[Tensor, Tensor, Tensor]:
    """Score every query for every category of one caption and keep the
    top-k pairs.

    A category's score is the mean sigmoid probability over its tokens.
    The top-k of the merged chunks is the top-k of the chunks' top-ks, so
    keeping k per chunk loses nothing.

    Args:
        logits: (Q, T) token logits of the last decoder layer.
        boxes: (Q, 4) sigmoid cxcywh boxes.
        chunk: the caption chunk the logits were computed with.
        max_per_image: k, the number of detections kept per image.

    Returns:
        Scores (k,), dataset labels (k,) and sigmoid cxcywh boxes (k, 4).
    """
    token_probabilities = logits.sigmoid()  # -inf padding becomes 0
    weights = chunk.positive_map.to(logits.device).float()
    weights = weights / weights.sum(dim=1, keepdim=True)
    category_scores = token_probabilities @ weights.T  # (Q, K_c)

    num_categories = category_scores.shape[1]
    top_k = min(max_per_image, category_scores.numel())
    scores, flat_indices = category_scores.flatten().topk(top_k)
    labels = chunk.dataset_labels(flat_indices % num_categories)
    return scores, labels, boxes[flat_indices // num_categories]


def merge_candidates(candidates: list[tuple[Tensor, Tensor, Tensor]], img_meta: dict,
                     max_per_image: int) -> tuple[Tensor, Tensor, Tensor]:
    """Keep the top-k of every chunk's candidates and convert their boxes
    to xyxy input pixels, clipped to the unpadded image."""
    scores, labels, boxes = (torch.cat(parts) for parts in zip(*candidates))
    top_k = min(max_per_image, scores.numel())
    scores, order = scores.topk(top_k)
    labels, boxes = labels[order], boxes[order]

    height, width = content_shape(img_meta)
    size = boxes.new_tensor([width, height, width, height])
    xyxy = bbox_cxcywh_to_xyxy(boxes) * size
    xyxy[:, 0::2] = xyxy[:, 0::2].clamp(0, width)
    xyxy[:, 1::2] = xyxy[:, 1::2].clamp(0, height)
    return scores, labels, xyxy


def to_image_space(scores: Tensor, labels: Tensor, boxes: Tensor, mask_logits: Tensor,
                   img_meta: dict, rescale: bool, mask_threshold: float) -> InstanceData:
    """Crop masks to the unpadded content and map boxes and masks back to
    the original image when `rescale` is set."""
    content_height, content_width = content_shape(img_meta)
    mask_logits = mask_logits[:, :content_height, :content_width]
    if rescale:
        scale_x, scale_y = img_meta['scale_factor']
        boxes = boxes / boxes.new_tensor([scale_x, scale_y, scale_x, scale_y])
        original_height, original_width = img_meta['ori_shape'][:2]
        boxes[:, 0::2] = boxes[:, 0::2].clamp(0, original_width)
        boxes[:, 1::2] = boxes[:, 1::2].clamp(0, original_height)
        if mask_logits.shape[0]:
            mask_logits = F.interpolate(mask_logits[:, None],
                                        size=(original_height, original_width),
                                        mode='bilinear', align_corners=False)[:, 0]
        else:
            mask_logits = mask_logits.new_zeros((0, original_height, original_width))
    return InstanceData(bboxes=boxes, scores=scores, labels=labels,
                        masks=mask_logits > mask_threshold)
