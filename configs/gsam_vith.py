# Grounded-SAM fine-tuning with SAM ViT-H: the original tool's defaults
# (image size 1024, 50 epochs, batch 4, AdamW at lr 1e-4, masks and SAM
# fine-tuning on). Values users change most are plain variables here;
# `tools/train.py` flags such as --annotations and --image-size update every
# place that uses them.

# Data: a COCO file with boxes and masks, and the folder its file_name values
# are relative to, for training and for evaluation. tools/train.py's
# --annotations and --images replace both, unless --val-annotations and
# --val-images set evaluation apart.
data_root = 'data/coco/'
train_ann_file = 'annotations/instances_train.json'
train_image_dir = 'images/'
val_ann_file = 'annotations/instances_val.json'
val_image_dir = 'images/'

image_size = 1024  # max side after resize, in pixels; images are padded to a square
max_epochs = 50
batch_size = 4
num_workers = 4
learning_rate = 1e-4
weight_decay = 1e-4
backbone_lr_mult = 0.1  # the Swin backbone trains at learning_rate * 0.1

# Trainable parts. The text encoder and SAM's prompt encoder stay frozen.
return_masks = True   # train SAM's mask decoder on the ground-truth masks
finetune_sam = True   # also train SAM's image encoder (ViT-H: 637M parameters)
freeze_text_encoder = True
max_sam_instances_per_image = 16
# Boxes SAM trains on: 'gt' (jittered ground truth), 'pred' (the detector's
# matched boxes) or 'mixed' (both).
sam_prompts = 'gt'
# Evaluation also prompts SAM with the ground-truth boxes and reports
# coco/gt_box_segm_mAP and coco/gt_box_mask_iou: mask quality when detection
# is perfect. It costs one more SAM decoder pass per image.
evaluate_gt_boxes = True

# Several GPUs (tools/dist_train.sh): GroundingSAM gives every trainable
# parameter a gradient in every step, so DDP can skip the per-step search for
# unused ones. Set True if a model change leaves a trainable part without one.
find_unused_parameters = False

# Speed. The embedding cache acts only while SAM's image encoder is frozen
# (finetune_sam = False). It keeps memory_mb MiB of embeddings per process and
# writes every embedding to disk_dir: 2 MiB per image for 1024 px inputs in
# bfloat16. tools/cache_embeddings.py fills it before training.
sam_embedding_cache = dict(memory_mb=4096, disk_dir='{work_dir}/sam_embeddings')
sam_attention = 'sdpa'  # or 'original' (segment_anything's own attention)
sam_activation_checkpointing = False  # recompute encoder activations when it trains

# Official checkpoints: download them and point these at the local files.
#   groundingdino_swint_ogc.pth from the GroundingDINO v0.1.0-alpha release
#   sam_vit_h_4b8939.pth from the segment-anything model checkpoints
dino_config = 'GroundingDINO_SwinT_OGC.py'  # a packaged name or a path
dino_checkpoint = 'checkpoints/groundingdino_swint_ogc.pth'
# A Hugging Face name, fetched by transformers on first use, or a local folder
# holding the same files (config.json, vocab.txt, model weights).
text_encoder = 'bert-base-uncased'
sam_backbone = 'vit_h'
sam_checkpoint = 'checkpoints/sam_vit_h_4b8939.pth'

custom_imports = dict(imports=['gsam_mm'], allow_failed_imports=False)
default_scope = 'mmdet'

model = dict(
    type='GroundingSAM',
    dino=dict(config_file=dino_config, checkpoint=dino_checkpoint, text_encoder=text_encoder),
    sam=dict(backbone=sam_backbone, checkpoint=sam_checkpoint, attention=sam_attention,
             activation_checkpointing=sam_activation_checkpointing),
    sam_embedding_cache=sam_embedding_cache,
    data_preprocessor=dict(
        type='DetDataPreprocessor',
        # ImageNet statistics on 0-255 pixels: what both networks were trained with.
        mean=[123.675, 116.28, 103.53],
        std=[58.395, 57.12, 57.375],
        bgr_to_rgb=False,  # LoadImageRGB already yields RGB
        pad_size_divisor=1),
    return_masks=return_masks,
    finetune_sam=finetune_sam,
    freeze_text_encoder=freeze_text_encoder,
    max_sam_instances_per_image=max_sam_instances_per_image,
    sam_prompts=sam_prompts,
    evaluate_gt_boxes=evaluate_gt_boxes,
    max_per_image=100)

meta_keys = ('img_id', 'img_path', 'ori_shape', 'img_shape', 'scale_factor', 'text')
train_pipeline = [
    dict(type='LoadImageRGB'),
    dict(type='LoadGroundingAnnotations', with_bbox=True, with_mask=True),
    dict(type='Resize', scale=(image_size, image_size), keep_ratio=True),
    dict(type='Pad', size=(image_size, image_size)),
    dict(type='PackDetInputs', meta_keys=meta_keys),
]
test_pipeline = [
    dict(type='LoadImageRGB'),
    dict(type='Resize', scale=(image_size, image_size), keep_ratio=True),
    dict(type='Pad', size=(image_size, image_size)),
    dict(type='LoadGroundingAnnotations', with_bbox=True, with_mask=True),
    dict(type='PackDetInputs', meta_keys=meta_keys),
]

train_dataloader = dict(
    batch_size=batch_size,
    num_workers=num_workers,
    persistent_workers=num_workers > 0,
    sampler=dict(type='DefaultSampler', shuffle=True),
    batch_sampler=dict(type='AspectRatioBatchSampler'),
    dataset=dict(
        type='CocoWithMasksDataset',
        data_root=data_root,
        ann_file=train_ann_file,
        data_prefix=dict(img=train_image_dir),
        filter_cfg=dict(filter_empty_gt=False),
        pipeline=train_pipeline))
val_dataloader = dict(
    batch_size=1,
    num_workers=num_workers,
    persistent_workers=num_workers > 0,
    drop_last=False,
    sampler=dict(type='DefaultSampler', shuffle=False),
    dataset=dict(
        type='CocoWithMasksDataset',
        data_root=data_root,
        ann_file=val_ann_file,
        data_prefix=dict(img=val_image_dir),
        test_mode=True,
        pipeline=test_pipeline))
test_dataloader = val_dataloader

# The same paths as the evaluated dataset: the metric reads the annotation file
# again, and the image folder for `mask_path` masks and missing image sizes.
val_evaluator = dict(
    type='CocoWithMasksMetric',
    data_root=data_root,
    ann_file=val_ann_file,
    data_prefix=dict(img=val_image_dir),
    metric=['bbox', 'segm'],
    classwise=True)
test_evaluator = val_evaluator

optim_wrapper = dict(
    type='OptimWrapper',  # tools/train.py switches to AmpOptimWrapper when CUDA exists
    # MMEngine's default constructor, with one log line for the frozen
    # parameters instead of a warning for each of them.
    constructor='TrainableOnlyOptimWrapperConstructor',
    optimizer=dict(type='AdamW', lr=learning_rate, weight_decay=weight_decay),
    clip_grad=dict(max_norm=0.1, norm_type=2),
    paramwise_cfg=dict(
        custom_keys={'dino.backbone': dict(lr_mult=backbone_lr_mult)},
        # Grounding DINO shares its box and class heads between decoder layers.
        bypass_duplicate=True))
param_scheduler = [
    dict(type='MultiStepLR', by_epoch=True, begin=0, end=max_epochs,
         milestones=[int(max_epochs * 0.8)], gamma=0.1),
]

train_cfg = dict(type='EpochBasedTrainLoop', max_epochs=max_epochs, val_interval=1)
val_cfg = dict(type='ValLoop')
test_cfg = dict(type='TestLoop')

default_hooks = dict(
    timer=dict(type='IterTimerHook'),
    logger=dict(type='LoggerHook', interval=10),
    param_scheduler=dict(type='ParamSchedulerHook'),
    checkpoint=dict(
        type='EpochCheckpointHook',
        interval=1,
        max_keep_ckpts=3,
        save_best='coco/segm_mAP',
        rule='greater',
        # Frozen weights (2.4 GB for ViT-H) come back from the official
        # checkpoints above, so only what trains is stored.
        save_trainable_only=True),
    sampler_seed=dict(type='DistSamplerSeedHook'),
    visualization=dict(type='PredictionOverlayHook', score_thr=0.3))

# PromptCheckHook builds the prompt from the dataset before step 0 (logging
# how a long one is split into captions), so a category name over the token
# limit or a wrong num_classes stops the run at once. EmbeddingCacheLogHook
# logs the SAM embedding cache's counts after each epoch.
custom_hooks = [dict(type='PromptCheckHook'), dict(type='EmbeddingCacheLogHook')]

env_cfg = dict(
    cudnn_benchmark=False,
    mp_cfg=dict(mp_start_method='fork', opencv_num_threads=0),
    dist_cfg=dict(backend='nccl'))
vis_backends = [dict(type='LocalVisBackend')]
# No fixed `name`: the Runner then names the visualizer after the run. MMEngine
# returns an existing visualizer of the same name, so with a fixed name a second
# Runner in one process (a notebook, the tests) would write its scalars and
# images into the first run's folder.
visualizer = dict(type='DetLocalVisualizer', vis_backends=vis_backends)
log_processor = dict(type="LogProcessor", window_size=50, by_epoch=True)
log_level = 'INFO'
load_from = None
resume = False
