"""GroundingSAM: Grounding DINO finds boxes from a text prompt, Segment
Anything turns them into masks, and both train together.

Shape letters: B images, P detector passes (image-caption pairs), Q queries,
K categories (K_c in one caption chunk), N instances, T text tokens, H and W
input pixels (after resize and padding).
"""
from dataclasses import dataclass
from typing import Optional

import torch
import torch.nn.functional as F
from mmdet.models.detectors.base import BaseDetector
from mmdet.registry import MODELS
from mmdet.structures import OptSampleList, SampleList
from mmengine.logging import print_log
from mmengine.structures import InstanceData
from torch import Tensor, nn

from ..errors import ConfigError
from ..evaluation.gt_box_segm import mask_ious
from ..fields import GT_BOX_PRED_INSTANCES, LOSS_MASK, LOSS_MASK_IOU, PROMPT_TEXTS
from ..prompt import PromptChunk, describe_chunks, split_prompt
from .detection_loss import GroundingDetectionLoss, default_detection_loss
from .embedding_cache import SamEmbeddingCache, describe_sam
from .grounding_dino import (GroundingDinoOutputs, ImageFeatures, TextFeatures,
                             build_grounding_dino, extract_image_features, project_text,
                             run_grounding_dino, run_text_encoder)
from .postprocess import content_shape, merge_candidates, score_chunk, to_image_space
from .sam import build_sam, decode_box_prompts, sam_input_size
from .sam_prompts import (MatchedBoxes, check_sam_prompt_mode, matched_boxes_per_image,
                          select_box_prompts)


def gt_box_tensor(instances: InstanceData) -> Tensor:
    """Return ground-truth boxes (N, 4) as a tensor, whether the data
    preprocessor converted them from `HorizontalBoxes` (`boxtype2tensor`) or not."""
    boxes = instances.bboxes
    return boxes.tensor if hasattr(boxes, 'tensor') else boxes


def with_content_shape(img_meta: dict) -> dict:
    """Return a copy of the metainfo whose `img_shape` is the unpadded size."""
    return {**img_meta, 'img_shape': content_shape(img_meta)}


def prompt_texts(sample) -> tuple[str, ...]:
    """Return the category prompt texts of a data sample, in label order."""
    return tuple(sample.metainfo[PROMPT_TEXTS])


@dataclass(frozen=True)
class TextPass:
    """One run of the detector: an image of the batch with one caption chunk
    of its prompt."""

    image_index: int
    texts: tuple[str, ...]
    chunk_index: int


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
        max_prompt_tokens: token budget of one caption, at most the text
            encoder's limit (the default). Categories that do not fit in one
            caption are split over several (see `prompt_for`).
        max_sam_instances_per_image: cap on the instances SAM decodes per
            image in one training step; a random subset is taken above it.
        box_jitter: standard deviation of the noise added to the ground-truth
            box prompts, as a fraction of the box side.
        box_jitter_max: cap on that standard deviation, in input pixels.
        sam_prompts: the boxes SAM trains on: `gt` (jittered ground-truth
            boxes), `pred` (the detector's last-layer boxes matched to each
            instance, detached) or `mixed` (both). See `sam_prompts.py`.
        max_per_image: detections kept per image at prediction.
        mask_threshold: logit above which a predicted mask pixel is set.
        evaluate_gt_boxes: at prediction, also prompt SAM with each image's
            ground-truth boxes (when the data sample has them) and store the
            masks as `gt_box_pred_instances`, which `CocoWithMasksMetric`
            turns into mask metrics that detection errors cannot lower.
        sam_embedding_cache: keyword arguments of `SamEmbeddingCache`
            (`memory_mb`, `disk_dir`, `dtype`, `key_by`) to cache the frozen
            SAM image encoder's embeddings; None computes them every step.
            It is ignored, with a log line, while the image encoder trains
            (`finetune_sam` with `return_masks`).
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
                 max_prompt_tokens: Optional[int] = None,
                 max_sam_instances_per_image: int = 16,
                 box_jitter: float = 0.1,
                 box_jitter_max: float = 20.0,
                 sam_prompts: str = 'gt',
                 max_per_image: int = 100,
                 mask_threshold: float = 0.0,
                 evaluate_gt_boxes: bool = False,
                 sam_embedding_cache: Optional[dict] = None,
                 init_cfg: Optional[dict] = None) -> None:
        super().__init__(data_preprocessor=data_preprocessor, init_cfg=init_cfg)
        if max_sam_instances_per_image < 1:
            raise ConfigError('max_sam_instances_per_image must be at least 1, got '
                              f'{max_sam_instances_per_image}')
        self.dino = build_grounding_dino(**dino)
        self.sam = build_sam(**sam)
        # Where the frozen weights come from; trainable-only checkpoints
        # record it for their error messages.
        self.pretrained_files = {'model.dino.checkpoint': dino.get('checkpoint'),
                                 'model.dino.text_encoder': dino.get('text_encoder'),
                                 'model.sam.checkpoint': sam.get('checkpoint')}
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
        self.max_prompt_tokens = max_prompt_tokens or self.max_text_len
        self.max_sam_instances_per_image = max_sam_instances_per_image
        self.box_jitter = box_jitter
        self.box_jitter_max = box_jitter_max
        check_sam_prompt_mode(sam_prompts)
        self.sam_prompts = sam_prompts
        self.max_per_image = max_per_image
        self.mask_threshold = mask_threshold
        self.evaluate_gt_boxes = evaluate_gt_boxes
        self._gt_box_samples_skipped = 0

        self._prompts: dict[tuple[str, ...], list[PromptChunk]] = {}
        # BERT hidden states of every chunk of a prompt, kept while the text
        # encoder is frozen because they are the same for every image.
        self._frozen_text_states: dict[tuple[str, ...], TextFeatures] = {}
        self.dino.bert.register_load_state_dict_pre_hook(self._forget_text_states)
        self._negative_passes = 0
        self._capped_images = 0
        self._freeze_parts()
        self.embedding_cache = self._build_embedding_cache(sam_embedding_cache, sam)

    # ------------------------------------------------------------------ setup
    @property
    def sam_encoder_trains(self) -> bool:
        """Whether SAM's image encoder trains: with `finetune_sam`, and only
        while the mask losses, the only ones that reach it, are computed."""
        return self.finetune_sam and self.return_masks

    def _frozen_modules(self) -> list[nn.Module]:
        frozen = [self.sam.prompt_encoder]
        if self.freeze_text_encoder:
            frozen.append(self.dino.bert)
        if not self.sam_encoder_trains:
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
        if self.sam_encoder_trains:
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
    def prompt_for(self, texts: tuple[str, ...]) -> list[PromptChunk]:
        """Return the caption chunks of a category list, building them once.

        Categories that fit in `max_prompt_tokens` form one caption. Longer
        lists are split into several captions with their own positive maps.
        In training each image is paired with the captions holding its
        categories, and the other categories of those captions are its
        negatives. At prediction every caption runs and the per-category
        scores are merged before the top-k.
        """
        if texts not in self._prompts:
            if self.num_classes is not None and len(texts) != self.num_classes:
                raise ConfigError(f'the config sets num_classes={self.num_classes} but the '
                                  f'dataset has {len(texts)} categories; remove num_classes '
                                  'or make them agree')
            chunks = split_prompt(texts, self.dino.tokenizer, self.max_text_len,
                                  self.max_prompt_tokens)
            if len(chunks) == 1:
                print_log(f'Prompt of {len(texts)} categories ({chunks[0].num_tokens} '
                          f'tokens): {chunks[0].caption.text!r}', logger='current')
            else:
                print_log(f'Prompt split because it needs more than {self.max_prompt_tokens} '
                          f'tokens. {describe_chunks(chunks, self.max_prompt_tokens)}\n'
                          'Training pairs each image with the captions that hold its '
                          'categories (one detector pass per caption); images without '
                          'objects take the captions in turn. Prediction runs every caption '
                          'and merges the scores.', logger='current')
            self._prompts[texts] = chunks
        return self._prompts[texts]

    def _forget_text_states(self, *args) -> None:
        """Drop cached text states when the text encoder's weights are loaded."""
        self._frozen_text_states.clear()

    def _text_features(self, texts: tuple[str, ...], chunk_indices: list[int],
                       device: torch.device) -> TextFeatures:
        """Return the encoded captions of the given chunks of a prompt, (len, T, C)."""
        chunks = self.prompt_for(texts)
        if not self.freeze_text_encoder:
            states = run_text_encoder(self.dino, [chunks[index].caption.text
                                                  for index in chunk_indices], device)
            return project_text(self.dino, states)

        states = self._frozen_text_states.get(texts)
        if states is None or states.encoded_text.device != device:
            with torch.no_grad():
                states = run_text_encoder(self.dino, [chunk.caption.text for chunk in chunks],
                                          device)
            self._frozen_text_states[texts] = states
        rows = torch.as_tensor(chunk_indices, device=device)
        return project_text(self.dino, states.select(rows))

    def _pass_text_features(self, passes: list[TextPass], device: torch.device) -> TextFeatures:
        """Return the caption of every pass, (P, T, C), each caption encoded once."""
        blocks = []
        row_of_chunk = {}
        for texts in dict.fromkeys(text_pass.texts for text_pass in passes):
            chunk_indices = sorted({text_pass.chunk_index for text_pass in passes
                                    if text_pass.texts == texts})
            for chunk_index in chunk_indices:
                row_of_chunk[texts, chunk_index] = len(row_of_chunk)
            blocks.append(self._text_features(texts, chunk_indices, device))
        rows = torch.as_tensor([row_of_chunk[text_pass.texts, text_pass.chunk_index]
                                for text_pass in passes], device=device)
        return TextFeatures.concat(blocks).select(rows)

    def _training_passes(self, data_samples: SampleList) -> list[TextPass]:
        """Pair each image with the caption chunks that hold its categories.

        An image without objects gets one chunk, taken in turn, so that
        every caption also trains on negative images.
        """
        passes = []
        for image_index, sample in enumerate(data_samples):
            texts = prompt_texts(sample)
            chunks = self.prompt_for(texts)
            labels = sample.gt_instances.labels
            chunk_indices = [index for index, chunk in enumerate(chunks)
                             if bool(chunk.holds(labels).any())]
            if not chunk_indices:
                chunk_indices = [self._negative_passes % len(chunks)]
                self._negative_passes += 1
            passes += [TextPass(image_index, texts, index) for index in chunk_indices]
        return passes

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

    def _image_features(self, inputs: Tensor, data_samples: SampleList) -> ImageFeatures:
        return extract_image_features(self.dino, inputs, self.padding_mask(inputs, data_samples))

    def _find_boxes(self, image_features: ImageFeatures,
                    passes: list[TextPass]) -> GroundingDinoOutputs:
        """Run the detector once per pass, on the pass's image and caption."""
        device = image_features.invalid_proposals.device
        rows = torch.as_tensor([text_pass.image_index for text_pass in passes], device=device)
        if rows.numel() != len(image_features.invalid_proposals) or \
                not torch.equal(rows, torch.arange(len(rows), device=device)):
            image_features = image_features.select(rows)
        return run_grounding_dino(self.dino, image_features,
                                  self._pass_text_features(passes, device))

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
        with torch.set_grad_enabled(torch.is_grad_enabled() and self.sam_encoder_trains):
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
        and SAM's mask losses on the box prompts `sam_prompts` selects."""
        passes = self._training_passes(data_samples)

        outputs = self._find_boxes(self._image_features(inputs, data_samples), passes)

        gt_instances = [self._pass_targets(data_samples[text_pass.image_index], text_pass)
                        for text_pass in passes]
        img_metas = [with_content_shape(data_samples[text_pass.image_index].metainfo)
                     for text_pass in passes]
        matches: list[tuple[Tensor, Tensor]] = []
        losses = self.detection_loss(outputs, gt_instances, img_metas, matches)

        if self.return_masks:
            matched_boxes = self._matched_boxes(outputs, matches, data_samples, passes,
                                                gt_instances)
            losses.update(self._mask_losses(inputs, data_samples, matched_boxes))
        return losses

    def _pass_targets(self, sample, text_pass: TextPass) -> InstanceData:
        """Return the ground truth of one pass: the image's instances whose
        category is in the pass's caption, with labels and positive maps of
        that caption."""
        chunk = self.prompt_for(text_pass.texts)[text_pass.chunk_index]
        instances = sample.gt_instances
        keep = chunk.holds(instances.labels)
        local_labels = chunk.local_labels(instances.labels[keep])
        positive_map = chunk.positive_map.to(local_labels.device)
        return InstanceData(bboxes=gt_box_tensor(instances)[keep], labels=local_labels,
                            positive_maps=positive_map[local_labels])

    def _matched_boxes(self, outputs: GroundingDinoOutputs,
                       matches: list[tuple[Tensor, Tensor]], data_samples: SampleList,
                       passes: list[TextPass],
                       targets: list[InstanceData]) -> Optional[list[MatchedBoxes]]:
        """Return the last decoder layer's box matched to each ground-truth
        instance, from the detection loss's `matches`, or None when SAM trains
        on ground-truth boxes only.

        Each instance belongs to exactly one caption chunk, so the matches of
        an image's passes fill disjoint rows of its `MatchedBoxes`.
        """
        if self.sam_prompts == 'gt':
            return None
        per_pass = matched_boxes_per_image(
            outputs.layer_boxes[-1], matches,
            [len(target) for target in targets],
            [content_shape(data_samples[text_pass.image_index].metainfo)
             for text_pass in passes])

        per_image = []
        for sample in data_samples:
            num_instances = len(sample.gt_instances)
            device = outputs.layer_boxes.device
            per_image.append(MatchedBoxes(
                boxes=outputs.layer_boxes.new_zeros((num_instances, 4)),
                matched=torch.zeros(num_instances, dtype=torch.bool, device=device)))
        for text_pass, pass_boxes in zip(passes, per_pass):
            chunk = self.prompt_for(text_pass.texts)[text_pass.chunk_index]
            labels = data_samples[text_pass.image_index].gt_instances.labels
            rows = chunk.holds(labels).nonzero().flatten()
            per_image[text_pass.image_index].boxes[rows] = pass_boxes.boxes.to(
                per_image[text_pass.image_index].boxes.dtype)
            per_image[text_pass.image_index].matched[rows] = pass_boxes.matched
        return per_image

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

    def _mask_losses(self, inputs: Tensor, data_samples: SampleList,
                     matched_boxes: Optional[list[MatchedBoxes]] = None) -> dict[str, Tensor]:
        """Prompt SAM with the boxes `sam_prompts` selects and compare its
        masks with the ground-truth masks on the unpadded pixels only."""
        image_embeddings = self._embed_images(inputs, data_samples)
        scale = self._sam_scale(inputs)
        input_shape = tuple(inputs.shape[-2:])

        mask_logits, gt_masks, valid_masks, iou_predictions = [], [], [], []
        for index, sample in enumerate(data_samples):
            instances = sample.gt_instances
            keep = self._select_instances(len(instances), inputs.device)
            if keep.numel() == 0:
                continue
            matched = None
            if matched_boxes is not None:
                matched = MatchedBoxes(boxes=matched_boxes[index].boxes[keep],
                                       matched=matched_boxes[index].matched[keep])
            prompts, prompt_instances = select_box_prompts(
                self.sam_prompts, gt_box_tensor(instances)[keep].float(), matched,
                self.box_jitter, self.box_jitter_max)
            low_res_logits, iou_prediction = decode_box_prompts(
                self.sam, image_embeddings[index:index + 1], prompts * scale)

            mask_logits.append(self._masks_at_input_size(low_res_logits, input_shape))
            # Select before converting: a crowded image has hundreds of masks.
            kept_masks = instances.masks[keep.cpu().numpy()]
            instance_masks = kept_masks.to_tensor(torch.float32, inputs.device)
            gt_masks.append(instance_masks[prompt_instances])
            valid = torch.zeros(input_shape, dtype=torch.bool, device=inputs.device)
            content_height, content_width = content_shape(sample.metainfo)
            valid[:content_height, :content_width] = True
            valid_masks.append(valid.expand(len(prompt_instances), -1, -1))
            iou_predictions.append(iou_prediction[:, 0])

        if not mask_logits:
            # Keep SAM's decoder and image encoder in the graph so distributed
            # training finds a gradient for every trainable parameter.
            zero = (sum(p.sum() for p in self.sam.mask_decoder.parameters())
                    + image_embeddings.sum()) * 0.0
            return {LOSS_MASK: zero, LOSS_MASK_IOU: zero}

        mask_logits = torch.cat(mask_logits)
        gt_masks = torch.cat(gt_masks)
        valid_masks = torch.cat(valid_masks)
        loss_mask = self.mask_loss(mask_logits, gt_masks, valid_mask=valid_masks)

        with torch.no_grad():
            true_iou = mask_ious((mask_logits > 0) & valid_masks, (gt_masks > 0.5) & valid_masks)
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
        detections = self._detect(inputs, data_samples)

        image_embeddings = self._embed_images(inputs, data_samples)
        scale = self._sam_scale(inputs)
        for index, (sample, (scores, labels, boxes)) in enumerate(zip(data_samples, detections)):
            low_res_logits, _ = decode_box_prompts(
                self.sam, image_embeddings[index:index + 1], boxes * scale)
            masks = self._masks_at_input_size(low_res_logits, tuple(inputs.shape[-2:]))
            sample.pred_instances = to_image_space(scores, labels, boxes, masks,
                                                   sample.metainfo, rescale, self.mask_threshold)

        if self.evaluate_gt_boxes and rescale:
            self._segment_gt_boxes(image_embeddings, tuple(inputs.shape[-2:]), data_samples)
        return data_samples

    def _segment_gt_boxes(self, image_embeddings: Tensor, input_shape: tuple[int, int],
                          data_samples: SampleList) -> None:
        """Prompt SAM with the ground-truth boxes of each sample and store the
        masks, with their IoU against the ground-truth masks, as
        `gt_box_pred_instances` in original image pixels.

        Ground truth must be in original pixels, as it is when the test
        pipeline loads annotations after `Resize`. Other samples are skipped
        and counted in one warning.
        """
        scale = sam_input_size(self.sam) / max(input_shape)
        for index, sample in enumerate(data_samples):
            instances = sample.get('gt_instances')
            original_height, original_width = sample.metainfo['ori_shape'][:2]
            if (instances is None or 'masks' not in instances
                    or instances.masks.height != original_height
                    or instances.masks.width != original_width):
                self._warn_gt_boxes_skipped()
                continue
            if len(instances) == 0:
                continue

            scale_x, scale_y = sample.metainfo['scale_factor']
            gt_boxes = gt_box_tensor(instances).float().to(image_embeddings.device)
            input_boxes = gt_boxes * gt_boxes.new_tensor([scale_x, scale_y, scale_x, scale_y])
            low_res_logits, iou_predictions = decode_box_prompts(
                self.sam, image_embeddings[index:index + 1], input_boxes * scale)
            masks = self._masks_at_input_size(low_res_logits, input_shape)
            segmented = to_image_space(iou_predictions[:, 0], instances.labels, input_boxes,
                                       masks, sample.metainfo, True, self.mask_threshold)

            gt_masks = instances.masks.to_tensor(torch.bool, segmented.masks.device)
            segmented.mask_ious = mask_ious(segmented.masks, gt_masks)
            sample.set_field(segmented, GT_BOX_PRED_INSTANCES)

    def _warn_gt_boxes_skipped(self) -> None:
        self._gt_box_samples_skipped += 1
        if self._gt_box_samples_skipped == 1:
            print_log('evaluate_gt_boxes: a data sample has no ground-truth masks in original '
                      'image pixels (load annotations after Resize in the test pipeline), so '
                      'SAM is not prompted with its boxes. Further such samples are counted, '
                      'not logged.', logger='current', level=30)

    def _prediction_rounds(self, data_samples: SampleList) -> list[list[TextPass]]:
        """Return the passes of prediction: round r runs chunk r of every image
        whose prompt has more than r chunks."""
        prompts = [prompt_texts(sample) for sample in data_samples]
        num_rounds = max(len(self.prompt_for(texts)) for texts in prompts)
        return [[TextPass(image_index, texts, round_index)
                 for image_index, texts in enumerate(prompts)
                 if round_index < len(self.prompt_for(texts))]
                for round_index in range(num_rounds)]

    def _detect(self, inputs: Tensor,
                data_samples: SampleList) -> list[tuple[Tensor, Tensor, Tensor]]:
        """Run every caption chunk and keep each image's top-k detections.

        The image features are computed once and shared by all chunks.

        Returns:
            Per image: scores (N,), dataset labels (N,) and xyxy boxes (N, 4)
            in input pixels.
        """
        image_features = self._image_features(inputs, data_samples)
        candidates: list[list[tuple[Tensor, Tensor, Tensor]]] = [[] for _ in data_samples]
        for passes in self._prediction_rounds(data_samples):
            outputs = self._find_boxes(image_features, passes)
            for row, text_pass in enumerate(passes):
                chunk = self.prompt_for(text_pass.texts)[text_pass.chunk_index]
                candidates[text_pass.image_index].append(score_chunk(
                    outputs.layer_logits[-1, row], outputs.layer_boxes[-1, row], chunk,
                    self.max_per_image))

        return [merge_candidates(image_candidates, sample.metainfo, self.max_per_image)
                for image_candidates, sample in zip(candidates, data_samples)]

    # ------------------------------------------------------------- tensor
    def _forward(self, inputs: Tensor,
                 data_samples: OptSampleList = None) -> tuple[GroundingDinoOutputs, ...]:
        """Return Grounding DINO's raw outputs for every decoder layer, one
        `GroundingDinoOutputs` per caption chunk (the prediction rounds)."""
        image_features = self._image_features(inputs, data_samples)
        return tuple(self._find_boxes(image_features, passes)
                     for passes in self._prediction_rounds(data_samples))

    def extract_feat(self, inputs: Tensor, data_samples: OptSampleList = None) -> Tensor:
        """Return SAM image embeddings (B, C, h, w) of a batch, through the
        embedding cache when it is configured and `data_samples` are given."""
        return self._embed_images(inputs, data_samples)
