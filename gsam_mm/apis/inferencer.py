"""Run a trained (or the official, zero-shot) Grounded-SAM on new images.

    from gsam_mm.apis import GroundedSAMInferencer

    inferencer = GroundedSAMInferencer('configs/gsam_vith.py', 'work_dirs/my_set/epoch_50.pth')
    result = inferencer('photo.jpg', texts='crack . rust')
    result.bboxes, result.scores, result.labels, result.masks

Shape letters: N detections, H and W the original image height and width.
"""
import os.path as osp
import uuid
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Optional, Union

import numpy as np
import torch
from mmdet.registry import MODELS, VISUALIZERS
from mmdet.structures import DetDataSample
from mmengine.config import Config
from mmengine.dataset import Compose, pseudo_collate
from mmengine.logging import print_log
from mmengine.registry import init_default_scope
from mmengine.structures import InstanceData

from ..datasets.coco_file import load_coco_annotations
from ..datasets.images import read_rgb_image
from ..engine.checkpoint_loader import load_from_local
from ..engine.hooks.epoch_checkpoint_hook import (TRAINABLE_ONLY_META_KEY,
                                                  check_frozen_parameters,
                                                  restore_frozen_parameters)
from ..engine.runner_setup import innermost_dataset
from ..errors import ConfigError, InputError, PromptError
from ..fields import CATEGORY_IDS, CATEGORY_TEXTS, PROMPT_TEXTS
from ..prompt import CATEGORY_SEPARATOR, find_duplicate_texts, normalize_category_name

# Pipeline steps that read from disk; the inferencer decodes images itself
# and has no annotations.
LOADING_TRANSFORMS = ('LoadImageRGB', 'LoadImageFromFile', 'LoadGroundingAnnotations',
                      'LoadAnnotations', 'mmdet.LoadImageFromFile', 'mmdet.LoadAnnotations')

CHANNEL_ORDERS = ('rgb', 'bgr')

ImageInput = Union[str, np.ndarray]


@dataclass(frozen=True)
class PromptCategories:
    """The phrases of a prompt and the COCO category id written for each.

    Attributes:
        names: display name of each label (the dataset's category names, or
            the user's phrases).
        texts: prompt text of each label, as the model reads it.
        category_ids: COCO `category_id` of each label: the dataset's own
            ids for training categories (int or str, as in the file), 1-based
            phrase positions for free text.
        from_dataset: whether the categories are the training categories.
    """

    names: tuple[str, ...]
    texts: tuple[str, ...]
    category_ids: tuple[Union[int, str], ...]
    from_dataset: bool

    @classmethod
    def from_free_text(cls, texts: Union[str, Sequence[str]]) -> 'PromptCategories':
        """Split `'crack . rust'` (or take a list of phrases) into categories
        numbered 1, 2, ... in the given order.

        Raises:
            PromptError: when no phrase is left after normalization, or a
                phrase occurs twice.
        """
        phrases = texts.split(CATEGORY_SEPARATOR.strip()) if isinstance(texts, str) else texts
        normalized = [normalize_category_name(phrase) for phrase in phrases]
        normalized = [phrase for phrase in normalized if phrase]
        if not normalized:
            raise PromptError(f'the prompt {texts!r} contains no phrase; give phrases '
                              'separated by " . ", e.g. "crack . rust"')
        repeated = find_duplicate_texts(normalized)
        if repeated:
            raise PromptError(f'the prompt {texts!r} repeats {repeated}; give each phrase once, '
                              'because every phrase becomes one category')
        return cls(names=tuple(normalized), texts=tuple(normalized),
                   category_ids=tuple(range(1, len(normalized) + 1)), from_dataset=False)

    @classmethod
    def from_dataset_meta(cls, meta: dict) -> 'PromptCategories':
        """Read the training categories from a `CocoWithMasksDataset` metainfo."""
        names = tuple(meta['classes'])
        texts = tuple(meta.get(CATEGORY_TEXTS) or
                      (normalize_category_name(name) for name in names))
        # Ids keep the file's type: COCO files may use strings.
        category_ids = tuple(meta.get(CATEGORY_IDS) or range(1, len(names) + 1))
        return cls(names=names, texts=texts, category_ids=category_ids, from_dataset=True)


@dataclass
class Detections:
    """Detections of one image, in original image pixels.

    Attributes:
        bboxes: (N, 4) float32 xyxy boxes.
        scores: (N,) float32 box scores, highest first.
        labels: (N,) int64 indices into `categories.names`.
        masks: (N, H, W) bool masks.
        categories: the prompt's categories.
        image_path: the file the image came from; None for arrays.
        image_shape: (H, W) of the image.
    """

    bboxes: np.ndarray
    scores: np.ndarray
    labels: np.ndarray
    masks: np.ndarray
    categories: PromptCategories
    image_path: Optional[str]
    image_shape: tuple[int, int]

    @property
    def label_names(self) -> list[str]:
        """Return the category name of every detection."""
        return [self.categories.names[label] for label in self.labels]

    def __len__(self) -> int:
        return len(self.scores)


class GroundedSAMInferencer:
    """Build GroundingSAM from a config and a checkpoint and run it on images.

    Args:
        config: config file or `Config`, e.g. `configs/gsam_vith.py`.
        checkpoint: checkpoint written by `tools/train.py` (full or
            trainable-only). None runs zero-shot Grounded-SAM with the
            official weights that the config's `model.dino.checkpoint` and
            `model.sam.checkpoint` name.
        device: torch device; CUDA when available by default.
        score_threshold: detections with a lower box score are dropped.
        mask_threshold: logit above which a mask pixel is set; None keeps
            the config's `model.mask_threshold`.
        cfg_options: config overrides, as `--cfg-options` takes them.
    """

    def __init__(self, config: Union[str, Config], checkpoint: Optional[str] = None, *,
                 device: Optional[str] = None, score_threshold: float = 0.3,
                 mask_threshold: Optional[float] = None,
                 cfg_options: Optional[dict] = None) -> None:
        cfg = Config.fromfile(config) if isinstance(config, str) else config.copy()
        if cfg_options:
            cfg.merge_from_dict(cfg_options)
        init_default_scope(cfg.get('default_scope', 'mmdet'))
        self.cfg = cfg
        self.device = torch.device(device or ('cuda' if torch.cuda.is_available() else 'cpu'))
        self.score_threshold = score_threshold

        model_cfg = cfg.model.copy()
        # The ground-truth-box evaluation needs annotations, which new images lack.
        model_cfg['evaluate_gt_boxes'] = False
        # Each photo is embedded once here, so a training-time embedding cache
        # would only take memory and disk.
        model_cfg['sam_embedding_cache'] = None
        if mask_threshold is not None:
            model_cfg['mask_threshold'] = mask_threshold
        self.model = MODELS.build(model_cfg)
        checkpoint_meta = self._load_checkpoint(checkpoint) if checkpoint else {}
        self.model.to(self.device).eval()

        self.pipeline = Compose(self._inference_pipeline())
        self.training_categories = self._training_categories(checkpoint_meta)
        self._visualizer = None

    # ----------------------------------------------------------- building
    def _load_checkpoint(self, checkpoint: str) -> dict:
        """Load the weights (completing a trainable-only checkpoint with the
        frozen pretrained weights) and return the checkpoint's meta."""
        contents = load_from_local(checkpoint, map_location='cpu')
        state_dict = contents.get('state_dict', contents)
        meta = contents.get('meta') or {}
        if TRAINABLE_ONLY_META_KEY in meta:
            check_frozen_parameters(meta, self.model, checkpoint)
            restore_frozen_parameters(state_dict, meta[TRAINABLE_ONLY_META_KEY], self.model)
        try:
            self.model.load_state_dict(state_dict, strict=True)
        except RuntimeError as err:
            raise ConfigError(f'checkpoint {checkpoint} does not fit the model of the config; '
                              'use the config the checkpoint was trained with') from err
        print_log(f'Loaded checkpoint {checkpoint} ({len(state_dict)} tensors)',
                  logger='current')
        return meta

    def _inference_pipeline(self) -> list[dict]:
        """Return the config's test pipeline without its loading steps."""
        dataset = innermost_dataset(self.cfg.test_dataloader.dataset)
        transforms = [transform for transform in dataset.pipeline
                      if transform['type'] not in LOADING_TRANSFORMS]
        for transform in transforms:
            if transform['type'] in ('PackDetInputs', 'mmdet.PackDetInputs'):
                meta_keys = tuple(transform.get('meta_keys', ()))
                if PROMPT_TEXTS not in meta_keys:
                    transform['meta_keys'] = meta_keys + (PROMPT_TEXTS,)
        return transforms

    def _training_categories(self, checkpoint_meta: dict) -> Optional[PromptCategories]:
        """Return the training categories from the checkpoint's dataset meta,
        else from the config's test annotation file, else None."""
        dataset_meta = checkpoint_meta.get('dataset_meta')
        if dataset_meta and dataset_meta.get('classes'):
            return PromptCategories.from_dataset_meta(dataset_meta)

        dataset = innermost_dataset(self.cfg.test_dataloader.dataset)
        data_root = dataset.get('data_root', '')
        ann_file = osp.join(data_root, dataset.get('ann_file', ''))
        if not osp.isfile(ann_file):
            print_log(f'No training categories: the checkpoint has no dataset meta and '
                      f'{ann_file} does not exist; pass texts', logger='current', level=30)
            return None
        image_dir = osp.join(data_root, (dataset.get('data_prefix') or {}).get('img', ''))
        annotations = load_coco_annotations(
            ann_file, image_dir, classes=(dataset.get('metainfo') or {}).get('classes'),
            on_bad_annotation=dataset.get('on_bad_annotation', 'error'),
            check_image_files=False)
        selected = annotations.categories.selected
        print_log(f'Training categories from {ann_file}: {len(selected)}', logger='current')
        return PromptCategories.from_dataset_meta({
            'classes': [category.name for category in selected],
            CATEGORY_TEXTS: [category.text for category in selected],
            CATEGORY_IDS: [category.id for category in selected]})

    # ---------------------------------------------------------- inference
    def categories_for(self, texts: Union[None, str, Sequence[str]]) -> PromptCategories:
        """Return the categories of a free-text prompt, or the training
        categories when `texts` is None.

        Raises:
            PromptError: when `texts` is None and the training categories
                are unknown.
        """
        if texts is not None:
            return PromptCategories.from_free_text(texts)
        if self.training_categories is None:
            raise PromptError('no text prompt given and the training categories are unknown '
                              '(neither the checkpoint nor the config names them); pass texts, '
                              'e.g. texts="crack . rust"')
        return self.training_categories

    def __call__(self, images: Union[ImageInput, Sequence[ImageInput]],
                 texts: Union[None, str, Sequence[str]] = None, *,
                 channel_order: Optional[str] = None, batch_size: int = 1,
                 apply_exif: Union[bool, Sequence[bool]] = True
                 ) -> Union[Detections, list[Detections]]:
        """Detect and segment the prompt's categories.

        Args:
            images: an image file path or a (H, W, 3) uint8 array, or a list
                of them.
            texts: the prompt, as `'crack . rust'` or `['crack', 'rust']`;
                None prompts with the training categories.
            channel_order: `'rgb'` or `'bgr'`; required for arrays, because
                Pillow and imageio return RGB while cv2.imread and
                mmcv.imread return BGR. Files are always decoded to RGB.
            batch_size: images per forward pass.
            apply_exif: whether files are read with their EXIF orientation
                applied, for all images or one value per image. Set False
                for images whose annotation sizes are those of the stored
                pixels, as `match_annotation_images` decides. Arrays are
                used as given.

        Returns:
            One `Detections` for a single image, a list for a list.

        Raises:
            InputError: when `apply_exif` is a sequence whose length is not
                the number of images.
        """
        single = isinstance(images, (str, np.ndarray))
        image_list = [images] if single else list(images)
        exif_flags = _flag_per_image(apply_exif, len(image_list))
        categories = self.categories_for(texts)
        results = []
        for start in range(0, len(image_list), batch_size):
            batch = slice(start, start + batch_size)
            results.extend(self.predict_batch(image_list[batch], categories, channel_order,
                                              apply_exif=exif_flags[batch]))
        return results[0] if single else results

    def predict_batch(self, images: Sequence[ImageInput], categories: PromptCategories,
                      channel_order: Optional[str] = None,
                      apply_exif: Union[bool, Sequence[bool]] = True) -> list[Detections]:
        """Run one forward pass on a batch of images (`apply_exif` as in
        `__call__`)."""
        exif_flags = _flag_per_image(apply_exif, len(images))
        data = [self._prepare(image, categories, channel_order, flag)
                for image, flag in zip(images, exif_flags)]
        with torch.no_grad():
            samples = self.model.test_step(pseudo_collate(data))
        return [self._to_detections(sample, categories) for sample in samples]

    def _prepare(self, image: ImageInput, categories: PromptCategories,
                 channel_order: Optional[str], apply_exif: bool) -> dict:
        path = image if isinstance(image, str) else None
        pixels = read_rgb_image(image, apply_exif) if path else to_rgb(image, channel_order)
        height, width = pixels.shape[:2]
        return self.pipeline({'img': pixels, 'img_path': path, 'img_id': 0,
                              'img_shape': (height, width), 'ori_shape': (height, width),
                              PROMPT_TEXTS: categories.texts})

    def _to_detections(self, sample: DetDataSample, categories: PromptCategories) -> Detections:
        instances = sample.pred_instances
        keep = instances.scores >= self.score_threshold
        instances = instances[keep]
        return Detections(
            bboxes=instances.bboxes.float().cpu().numpy(),
            scores=instances.scores.float().cpu().numpy(),
            labels=instances.labels.cpu().numpy().astype(np.int64),
            masks=instances.masks.cpu().numpy().astype(bool),
            categories=categories,
            image_path=sample.metainfo.get('img_path'),
            image_shape=tuple(sample.metainfo['ori_shape'][:2]))

    # -------------------------------------------------------- visualizing
    def draw(self, image: np.ndarray, detections: Detections,
             out_file: Optional[str] = None) -> np.ndarray:
        """Draw boxes, masks, names and scores over an RGB image, one colour
        per category, with MMDetection's `DetLocalVisualizer`.

        Args:
            image: (H, W, 3) uint8 RGB pixels.
            detections: the image's detections.
            out_file: when given, the drawing is written there (PNG by the
                file's extension).

        Returns:
            The drawn (H, W, 3) uint8 RGB image.
        """
        visualizer = self._get_visualizer()
        visualizer.dataset_meta = {'classes': detections.categories.names}
        sample = DetDataSample()
        sample.pred_instances = InstanceData(
            bboxes=torch.from_numpy(detections.bboxes), scores=torch.from_numpy(detections.scores),
            labels=torch.from_numpy(detections.labels), masks=torch.from_numpy(detections.masks))
        visualizer.add_datasample('inference', image, data_sample=sample, draw_gt=False,
                                  pred_score_thr=0.0, out_file=out_file)
        return visualizer.get_image()

    def _get_visualizer(self):
        if self._visualizer is None:
            self._visualizer = VISUALIZERS.build(dict(
                type='DetLocalVisualizer', name=f'gsam_inferencer_{uuid.uuid4().hex}'))
        return self._visualizer


def to_rgb(image: np.ndarray, channel_order: Optional[str]) -> np.ndarray:
    """Return the (H, W, 3) uint8 pixels of an array in RGB order, contiguous.

    Raises:
        InputError: for a missing or unknown `channel_order`, or an array
            that is not (H, W, 3) uint8.
    """
    if channel_order not in CHANNEL_ORDERS:
        raise InputError(f'channel_order must be one of {list(CHANNEL_ORDERS)} for an array '
                         f'input, got {channel_order!r}: use "rgb" for Pillow or imageio '
                         'arrays and "bgr" for cv2.imread or mmcv.imread arrays')
    if image.ndim != 3 or image.shape[2] != 3 or image.dtype != np.uint8:
        raise InputError(f'an image array must be (H, W, 3) uint8, got shape {image.shape} '
                         f'and dtype {image.dtype}')
    if channel_order == 'bgr':
        image = image[:, :, ::-1]
    return np.ascontiguousarray(image)


def _flag_per_image(apply_exif: Union[bool, Sequence[bool]], num_images: int) -> list[bool]:
    """Expand one `apply_exif` value to every image, or check that a
    sequence has one value per image.

    Raises:
        InputError: when the sequence's length is not `num_images`.
    """
    if isinstance(apply_exif, bool):
        return [apply_exif] * num_images
    flags = [bool(flag) for flag in apply_exif]
    if len(flags) != num_images:
        raise InputError(f'apply_exif has {len(flags)} value(s) for {num_images} images; give '
                         'one value per image, or a single True or False for all')
    return flags
