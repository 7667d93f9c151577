"""GroundingSAM: Grounding DINO finds boxes from a text prompt, Segment
Anything turns them into masks, and both train together.

Shape letters: B images, Q queries, K categories, N instances, T text tokens,
H and W input pixels (after resize and padding).
"""
from typing import Optional

import torch
import torch.nn.functional as F
from mmdet.models.detectors.base import BaseDetector
from mmdet.registry import MODELS
from mmdet.structures import OptSampleList, SampleList
from mmdet.structures.bbox import bbox_cxcywh_to_xyxy
from mmengine.logging import print_log
from mmengine.structures import InstanceData
from torch import Tensor, nn

from ..errors import ConfigError
from ..fields import LOSS_MASK, LOSS_MASK_IOU, PROMPT_TEXTS
from ..prompt import Caption, build_caption, build_positive_map
from .detection_loss import GroundingDetectionLoss, default_detection_loss
from .embedding_cache import SamEmbeddingCache, describe_sam
from .grounding_dino import (GroundingDinoOutputs, TextFeatures, build_grounding_dino,
                             encode_text, run_grounding_dino)
from .sam import build_sam, decode_box_prompts, jitter_boxes, sam_input_size



def content_shape(img_meta: dict) -> tuple[int, int]:
    """Return the (height, width) of the resized image before padding.

    MMCV's `Pad` overwrites `img_shape` with the padded size, so the content
    size is recovered from `ori_shape` and `scale_factor`. The result is
    exact because `Resize` rounds the new size the same way.
    """
    height, width = img_meta['img_shape'][:2]
    if 'scale_factor' not in img_meta or 'ori_shape' not in img_meta:
        return height, width
    scale_x, scale_y = img_meta['scale_factor']
    original_height, original_width = img_meta['ori_shape'][:2]
    return (min(height, int(original_height * scale_y + 0.5)),
            min(width, int(original_width * scale_x + 0.5)))


def gt_box_tensor(instances: InstanceData) -> Tensor:
    """Return ground-truth boxes (N, 4) as a tensor, whether the data
    preprocessor converted them from `HorizontalBoxes` (`boxtype2tensor`) or not."""
    boxes = instances.bboxes
    return boxes.tensor if hasattr(boxes, 'tensor') else boxes


def with_content_shape(img_meta: dict) -> dict:
    """Return a copy of the metainfo whose `img_shape` is the unpadded size."""
    return {**img_meta, 'img_shape': content_shape(img_meta)}


@MODELS.register_module()
class GroundingSAM(BaseDetector):
    """Grounded-SAM as an MMDetection detector.

    Args:
        dino: keyword arguments of `build_grounding_dino` (`config_file`,
            `checkpoint`, `text_encoder`, `overrides`).
        sam: keyword arguments of `build_sam` (`backbone`, `checkpoint`,
            `image_size`).
        data_preprocessor: MMDetection data preprocessor config.
        detection_loss: overrides of Grounding DINO's matching and loss
            settings (see `default_detection_loss`).
        mask_loss: config of the mask loss, BCE + Dice by default.
        mask_iou_loss_weight: weight of the MSE between SAM's predicted IoU
            and the IoU its mask really has.
        return_masks: train SAM's mask decoder on the ground-truth masks.
        finetune_sam: train SAM's image encoder too (it stays frozen
            otherwise, and its forward runs without gradients).
        freeze_text_encoder: keep Grounding DINO's BERT frozen.
        num_classes: expected number of categories; when set, a dataset with
            another count stops the run with both numbers in the message.
        max_sam_instances_per_image: cap on the instances SAM decodes per
            image in one training step; a random subset is taken above it.
        box_jitter: standard deviation of the noise added to the ground-truth
            box prompts, as a fraction of the box side.
        box_jitter_max: cap on that standard deviation, in input pixels.
        max_per_image: detections kept per image at prediction.
        mask_threshold: logit above which a predicted mask pixel is set.
        sam_embedding_cache: keyword arguments of `SamEmbeddingCache`
            (`memory_mb`, `disk_dir`, `dtype`, `key_by`) to cache the frozen
            SAM image encoder's embeddings; None computes them every step.
            It is ignored, with a log line, when `finetune_sam` is set.
        init_cfg: MMEngine initialisation config.
    """

    def __init__(self,
                 *,
                 dino: dict,
                 sam: dict,
                 data_preprocessor: Optional[dict] = None,
                 detection_loss: Optional[dict] = None,
                 mask_loss: Optional[dict] = None,
                 mask_iou_loss_weight: float = 1.0,
                 return_masks: bool = True,
                 finetune_sam: bool = False,
                 freeze_text_encoder: bool = True,
                 num_classes: Optional[int] = None,
                 max_sam_instances_per_image: int = 16,
                 box_jitter: float = 0.1,
                 box_jitter_max: float = 20.0,
                 max_per_image: int = 100,
                 mask_threshold: float = 0.0,
                 sam_embedding_cache: Optional[dict] = None,
                 init_cfg: Optional[dict] = None) -> None:
        super().__init__(data_preprocessor=data_preprocessor, init_cfg=init_cfg)
        if max_sam_instances_per_image < 1:
            raise ConfigError('max_sam_instances_per_image must be at least 1, got '
                              f'{max_sam_instances_per_image}')
        self.dino = build_grounding_dino(**dino)
        self.sam = build_sam(**sam)
        self.max_text_len = self.dino.max_text_len

        settings = default_detection_loss(self.max_text_len)
        settings.update(detection_loss or {})
        self.detection_loss = GroundingDetectionLoss(**settings)
        self.mask_loss = MODELS.build(mask_loss or dict(type='BCEDiceLoss'))
        self.mask_iou_loss_weight = mask_iou_loss_weight

        self.return_masks = return_masks
        self.finetune_sam = finetune_sam
        self.freeze_text_encoder = freeze_text_encoder
        self.num_classes = num_classes
        self.max_sam_instances_per_image = max_sam_instances_per_image
        self.box_jitter = box_jitter
        self.box_jitter_max = box_jitter_max
        self.max_per_image = max_per_image
        self.mask_threshold = mask_threshold

        self._prompt_cache: dict[tuple[str, ...], tuple[Caption, Tensor]] = {}
        self._capped_images = 0
        self._freeze_parts()
        self.embedding_cache = self._build_embedding_cache(sam_embedding_cache, sam)

    # ------------------------------------------------------------------ setup
    def _frozen_modules(self) -> list[nn.Module]:
        frozen = [self.sam.prompt_encoder]
        if self.freeze_text_encoder:
            frozen.append(self.dino.bert)
        if not self.finetune_sam:
            frozen.append(self.sam.image_encoder)
        if not self.return_masks:
            frozen.append(self.sam.mask_decoder)
        return frozen

    def _freeze_parts(self) -> None:
        """Freeze the parts that do not train and log a count per part."""
        for module in self._frozen_modules():
            module.requires_grad_(False)
        # BERT's pooler is never used by Grounding DINO.
        self.dino.bert.pooler.requires_grad_(False)

        parts = {
            'Grounding DINO text encoder': self.dino.bert,
            'Grounding DINO image backbone': self.dino.backbone,
            'Grounding DINO transformer and heads': None,
            'SAM image encoder': self.sam.image_encoder,
            'SAM prompt encoder': self.sam.prompt_encoder,
            'SAM mask decoder': self.sam.mask_decoder,
        }
        named_ids = {id(p) for module in parts.values() if module is not None
                     for p in module.parameters()}
        rest = [p for p in self.dino.parameters() if id(p) not in named_ids]
        for name, module in parts.items():
            parameters = rest if module is None else list(module.parameters())
            total = sum(p.numel() for p in parameters)
            trainable = sum(p.numel() for p in parameters if p.requires_grad)
            print_log(f'{name}: {trainable:,} of {total:,} parameters train', logger='current')

    def _build_embedding_cache(self, settings: Optional[dict],
                               sam: dict) -> Optional[SamEmbeddingCache]:
        if settings is None:
            return None
        if self.finetune_sam:
            print_log('SAM embedding cache off: the image encoder trains (finetune_sam=True), '
                      'so its embeddings change every step', logger='current')
            return None
        return SamEmbeddingCache(**settings,
                                 description=describe_sam(sam, sam_input_size(self.sam)))

    def train(self, mode: bool = True) -> 'GroundingSAM':
        """Switch to training mode, keeping frozen parts in eval mode so their
        dropout stays off."""
        super().train(mode)
        for module in self._frozen_modules():
            module.eval()
        return self

    # ----------------------------------------------------------------- prompt
    def prompt_for(self, texts: tuple[str, ...], device: torch.device) -> tuple[Caption, Tensor]:
        """Return the caption of a category list and its positive map (K, T)."""
        if texts not in self._prompt_cache:
            if self.num_classes is not None and len(texts) != self.num_classes:
                raise ConfigError(f'the config sets num_classes={self.num_classes} but the '
                                  f'dataset has {len(texts)} categories; remove num_classes '
                                  'or make them agree')
            caption = build_caption(texts)
            positive_map = build_positive_map(caption, self.dino.tokenizer, self.max_text_len)
            print_log(f'Prompt of {len(texts)} categories: {caption.text!r}', logger='current')
            self._prompt_cache[texts] = (caption, positive_map)
        caption, positive_map = self._prompt_cache[texts]
        return caption, positive_map.to(device)

    def _encode_prompts(self, data_samples: SampleList,
                        device: torch.device) -> tuple[TextFeatures, list[Tensor]]:
        prompts = [self.prompt_for(tuple(sample.metainfo[PROMPT_TEXTS]), device)
                   for sample in data_samples]
        captions = [caption.text for caption, _ in prompts]
        with torch.set_grad_enabled(torch.is_grad_enabled() and not self.freeze_text_encoder):
            text_features = encode_text(self.dino, captions, device)
        return text_features, [positive_map for _, positive_map in prompts]

    # ------------------------------------------------------------- networks
    @staticmethod
    def padding_mask(inputs: Tensor, data_samples: SampleList) -> Tensor:
        """Return a (B, H, W) mask that is True on the padded pixels."""
        batch_size, _, height, width = inputs.shape
        mask = inputs.new_ones((batch_size, height, width), dtype=torch.bool)
        for index, sample in enumerate(data_samples):
            content_height, content_width = content_shape(sample.metainfo)
            mask[index, :content_height, :content_width] = False
        return mask

    def _find_boxes(self, inputs: Tensor, data_samples: SampleList,
                    text_features: TextFeatures) -> GroundingDinoOutputs:
        return run_grounding_dino(self.dino, inputs, self.padding_mask(inputs, data_samples),
                                  text_features)

    def _sam_scale(self, inputs: Tensor) -> float:
        """Return SAM input pixels per input pixel."""
        return sam_input_size(self.sam) / max(inputs.shape[-2:])

    def _embed_images(self, inputs: Tensor, data_samples: OptSampleList = None) -> Tensor:
        """Run SAM's image encoder on the batch, padded bottom/right to a square
        and resized to SAM's input size. With `data_samples` the embedding
        cache, when configured, serves the images it has seen. Returns
        (B, C, h, w)."""
        height, width = inputs.shape[-2:]
        side = max(height, width)
        square = F.pad(inputs, (0, side - width, 0, side - height))
        size = sam_input_size(self.sam)
        if side != size:
            square = F.interpolate(square, size=(size, size), mode='bilinear', align_corners=False)
        if self.embedding_cache is not None and data_samples is not None:
            return self.embedding_cache.embed(self.sam.image_encoder, square, data_samples,
                                              (height, width))
        with torch.set_grad_enabled(torch.is_grad_enabled() and self.finetune_sam):
            return self.sam.image_encoder(square)

    def _masks_at_input_size(self, low_res_logits: Tensor, input_shape: tuple[int, int]) -> Tensor:
        """Upsample (N, 1, h', w') SAM logits to the (N, H, W) input canvas."""
        side = max(input_shape)
        logits = F.interpolate(low_res_logits, size=(side, side), mode='bilinear',
                               align_corners=False)
        return logits[:, 0, :input_shape[0], :input_shape[1]]

    # ------------------------------------------------------------------ loss
    def loss(self, inputs: Tensor, data_samples: SampleList) -> dict[str, Tensor]:
        """Compute detection losses on every decoder layer and the proposals,
        and SAM's mask losses on ground-truth box prompts."""
        text_features, positive_maps = self._encode_prompts(data_samples, inputs.device)

        outputs = self._find_boxes(inputs, data_samples, text_features)

        gt_instances = []
        for sample, positive_map in zip(data_samples, positive_maps):
            instances = sample.gt_instances
            gt_instances.append(InstanceData(
                bboxes=gt_box_tensor(instances),
                labels=instances.labels,
                positive_maps=positive_map[instances.labels]))
        img_metas = [with_content_shape(sample.metainfo) for sample in data_samples]
        losses = self.detection_loss(outputs, gt_instances, img_metas)

        if self.return_masks:
            losses.update(self._mask_losses(inputs, data_samples))
        return losses

    def _select_instances(self, num_instances: int, device: torch.device) -> Tensor:
        """Return the indices of the instances SAM decodes for one image."""
        if num_instances <= self.max_sam_instances_per_image:
            return torch.arange(num_instances, device=device)
        self._capped_images += 1
        if self._capped_images == 1:
            print_log(f'An image has {num_instances} instances; SAM decodes a random '
                      f'{self.max_sam_instances_per_image} of them per step '
                      '(max_sam_instances_per_image). Further images over the cap are '
                      'counted, not logged.', logger='current', level=30)
        return torch.randperm(num_instances, device=device)[:self.max_sam_instances_per_image]

    def _mask_losses(self, inputs: Tensor, data_samples: SampleList) -> dict[str, Tensor]:
        """Prompt SAM with jittered ground-truth boxes and compare its masks
        with the ground-truth masks on the unpadded pixels only."""
        image_embeddings = self._embed_images(inputs, data_samples)
        scale = self._sam_scale(inputs)
        input_shape = tuple(inputs.shape[-2:])

        mask_logits, gt_masks, valid_masks, iou_predictions = [], [], [], []
        for index, sample in enumerate(data_samples):
            instances = sample.gt_instances
            keep = self._select_instances(len(instances), inputs.device)
            if keep.numel() == 0:
                continue
            boxes = gt_box_tensor(instances)[keep]
            prompts = jitter_boxes(boxes.float(), self.box_jitter, self.box_jitter_max) * scale
            low_res_logits, iou_prediction = decode_box_prompts(
                self.sam, image_embeddings[index:index + 1], prompts)

            mask_logits.append(self._masks_at_input_size(low_res_logits, input_shape))
            gt_masks.append(instances.masks.to_tensor(torch.float32, inputs.device)[keep])
            valid = torch.zeros(input_shape, dtype=torch.bool, device=inputs.device)
            content_height, content_width = content_shape(sample.metainfo)
            valid[:content_height, :content_width] = True
            valid_masks.append(valid.expand(len(keep), -1, -1))
            iou_predictions.append(iou_prediction[:, 0])

        if not mask_logits:
            # Keep SAM's decoder in the graph so distributed training finds a
            # gradient for every trainable parameter.
            zero = sum(p.sum() for p in self.sam.mask_decoder.parameters()) * 0.0
            return {LOSS_MASK: zero, LOSS_MASK_IOU: zero}

        mask_logits = torch.cat(mask_logits)
        gt_masks = torch.cat(gt_masks)
        valid_masks = torch.cat(valid_masks)
        loss_mask = self.mask_loss(mask_logits, gt_masks, valid_mask=valid_masks)

        with torch.no_grad():
            predicted = (mask_logits > 0) & valid_masks
            target = (gt_masks > 0.5) & valid_masks
            intersection = (predicted & target).flatten(1).sum(1).float()
            union = (predicted | target).flatten(1).sum(1).float()
            true_iou = intersection / union.clamp(min=1)
        loss_mask_iou = F.mse_loss(torch.cat(iou_predictions), true_iou) * self.mask_iou_loss_weight
        return {LOSS_MASK: loss_mask, LOSS_MASK_IOU: loss_mask_iou}

    # ------------------------------------------------------------- predict
    def predict(self, inputs: Tensor, data_samples: SampleList,
                rescale: bool = True) -> SampleList:
        """Detect the prompt's categories and segment each detection.

        Returns the data samples with `pred_instances` holding `bboxes`
        (N, 4) xyxy, `scores` (N,), `labels` (N,) and `masks` (N, H, W) bool,
        in original image pixels when `rescale` is True.
        """
        text_features, positive_maps = self._encode_prompts(data_samples, inputs.device)

        outputs = self._find_boxes(inputs, data_samples, text_features)

        image_embeddings = self._embed_images(inputs, data_samples)
        scale = self._sam_scale(inputs)
        for index, (sample, positive_map) in enumerate(zip(data_samples, positive_maps)):
            scores, labels, boxes = self._score_boxes(outputs.layer_logits[-1, index],
                                                      outputs.layer_boxes[-1, index],
                                                      positive_map, sample.metainfo)
            low_res_logits, _ = decode_box_prompts(
                self.sam, image_embeddings[index:index + 1], boxes * scale)
            masks = self._masks_at_input_size(low_res_logits, tuple(inputs.shape[-2:]))
            sample.pred_instances = self._to_image_space(scores, labels, boxes, masks,
                                                         sample.metainfo, rescale)
        return data_samples

    def _score_boxes(self, logits: Tensor, boxes: Tensor, positive_map: Tensor,
                     img_meta: dict) -> tuple[Tensor, Tensor, Tensor]:
        """Score every query for every category and keep the top-k pairs.

        A category's score is the mean sigmoid probability over its tokens.

        Args:
            logits: (Q, T) token logits of the last decoder layer.
            boxes: (Q, 4) sigmoid cxcywh boxes.
            positive_map: (K, T) bool.

        Returns:
            Scores (N,), labels (N,) and xyxy boxes (N, 4) in input pixels.
        """
        token_probabilities = logits.sigmoid()  # -inf padding becomes 0
        weights = positive_map.float()
        weights = weights / weights.sum(dim=1, keepdim=True)
        category_scores = token_probabilities @ weights.T  # (Q, K)

        num_categories = category_scores.shape[1]
        top_k = min(self.max_per_image, category_scores.numel())
        scores, flat_indices = category_scores.flatten().topk(top_k)
        labels = flat_indices % num_categories
        query_indices = flat_indices // num_categories

        height, width = content_shape(img_meta)
        size = boxes.new_tensor([width, height, width, height])
        xyxy = bbox_cxcywh_to_xyxy(boxes[query_indices]) * size
        xyxy[:, 0::2] = xyxy[:, 0::2].clamp(0, width)
        xyxy[:, 1::2] = xyxy[:, 1::2].clamp(0, height)
        return scores, labels, xyxy

    def _to_image_space(self, scores: Tensor, labels: Tensor, boxes: Tensor,
                        mask_logits: Tensor, img_meta: dict, rescale: bool) -> InstanceData:
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
                            masks=mask_logits > self.mask_threshold)

    # ------------------------------------------------------------- tensor
    def _forward(self, inputs: Tensor,
                 data_samples: OptSampleList = None) -> GroundingDinoOutputs:
        """Return Grounding DINO's raw outputs for every decoder layer."""
        text_features, _ = self._encode_prompts(data_samples, inputs.device)
        return self._find_boxes(inputs, data_samples, text_features)

    def extract_feat(self, inputs: Tensor, data_samples: OptSampleList = None) -> Tensor:
        """Return SAM image embeddings (B, C, h, w) of a batch, through the
        embedding cache when it is configured and `data_samples` are given."""
        return self._embed_images(inputs, data_samples)
