"""Names shared by the dataset, the pipeline and the model.

Data-sample metainfo keys and loss names live here so that the producer and
the consumer of a value cannot drift apart.
"""

# Metainfo key holding the prompt text of every category, ordered by label.
CATEGORY_TEXTS = 'category_texts'

# Data-info and data-sample metainfo key carrying those prompt texts to the
# model for each image; `PackDetInputs` needs it in `meta_keys`. The name
# matches the key MMDetection's own grounding models read.
PROMPT_TEXTS = 'text'

# Dataset metainfo key holding the original COCO category id of every label.
CATEGORY_IDS = 'cat_ids'

# Category names that annotation exporters write as placeholders. They never
# become prompt text or training labels.
PLACEHOLDER_CATEGORY_NAMES = ('_background_', '__ignore__')

# Loss names reported by GroundingSAM.loss (per decoder layer a `d{i}.` prefix
# and for the two-stage proposals an `enc.` prefix are added).
LOSS_CLS = 'loss_cls'
LOSS_BBOX = 'loss_bbox'
LOSS_IOU = 'loss_iou'
LOSS_MASK = 'loss_mask'
LOSS_MASK_IOU = 'loss_mask_iou'

# Instance key of a mask given as an image file (absolute path). Nonzero
# pixels belong to the object. Instances carry either this key or `mask`.
MASK_PATH = 'mask_path'

# `bbox_label` of an ignore region whose category is a placeholder and so
# has no label. Such instances always have `ignore_flag=1`.
IGNORE_LABEL = -1

# Data-info key: False when the annotation file's width and height are those
# of the stored pixels, so the image is read without its EXIF rotation.
APPLY_EXIF = 'apply_exif'

# Dataset metainfo key holding the dataset's `on_bad_annotation` setting, so
# that the metric drops the same records as the dataset.
ON_BAD_ANNOTATION = 'on_bad_annotation'

# Box prompts SAM trains on (`GroundingSAM(sam_prompts=...)`): jittered
# ground-truth boxes, the detector's Hungarian-matched boxes, or both.
SAM_PROMPT_MODES = ('gt', 'pred', 'mixed')

# Data-sample field holding SAM's masks for the ground-truth boxes of an
# evaluated image (`GroundingSAM(evaluate_gt_boxes=True)`): an InstanceData
# with `bboxes`, `labels`, `scores` (SAM's predicted IoU), `masks` and
# `mask_ious` (IoU with the ground-truth mask of the same instance).
GT_BOX_PRED_INSTANCES = 'gt_box_pred_instances'

# Data-sample metainfo key of the image file's path (set by the dataset).
IMAGE_PATH = 'img_path'

# Metainfo keys that describe how the pipeline placed an image on its
# canvas. The SAM embedding cache keys entries by them; a transform that
# changes pixels without recording itself here is caught by the cache's
# input checksums instead.
GEOMETRY_META_KEYS = ('ori_shape', 'img_shape', 'pad_shape', 'scale_factor', 'flip',
                      'flip_direction')

# Placeholder in `sam_embedding_cache.disk_dir` that the training and
# testing tools replace with the run's work dir.
WORK_DIR_PLACEHOLDER = '{work_dir}'
