"""Command-line settings applied to a config before the Runner is built.

`tools/train.py` and `tools/test.py` share these, and the original
Grounded-SAM fine-tuning tool's flags (`--annotations`, `--sam-backbone`, ...)
are translated here into the config keys they set.
"""
import argparse
import os
import warnings
from pathlib import Path
from typing import Any, Optional

import torch
from mmengine.config import Config, DictAction
from mmengine.logging import print_log

from ..datasets.coco_file import join_data_root
from ..errors import ConfigError
from ..models.embedding_cache import resolve_work_dir

DATALOADERS = ('train_dataloader', 'val_dataloader', 'test_dataloader')


def add_common_arguments(parser: argparse.ArgumentParser) -> None:
    """Add the arguments shared by training and testing."""
    parser.add_argument('config', help='config file, e.g. configs/gsam_vith.py')
    parser.add_argument('--work-dir', help='folder for logs and checkpoints '
                        '(default: work_dirs/CONFIG_NAME)')
    parser.add_argument('--cfg-options', nargs='+', action=DictAction,
                        help='override config values, e.g. train_cfg.max_epochs=10')
    parser.add_argument('--launcher', choices=['none', 'pytorch', 'slurm', 'mpi'],
                        default='none', help='job launcher for distributed runs')
    parser.add_argument('--local_rank', '--local-rank', type=int, default=0,
                        help=argparse.SUPPRESS)


def add_shortcut_arguments(parser: argparse.ArgumentParser) -> None:
    """Add the original fine-tuning tool's flags as shortcuts for config keys."""
    group = parser.add_argument_group('shortcuts for common config values')
    group.add_argument('--annotations', help='COCO annotation file for training '
                       '(and for evaluation unless --val-annotations is given)')
    group.add_argument('--images', help='folder the annotation file names are relative to '
                       '(for evaluation too unless --val-images is given)')
    group.add_argument('--val-annotations', help='COCO annotation file for evaluation')
    group.add_argument('--val-images', help='image folder for --val-annotations')
    group.add_argument('--dino-config', help='Grounding DINO config file (the original '
                       "tool's --config): a packaged name or a path")
    group.add_argument('--checkpoint', help='Grounding DINO checkpoint file')
    group.add_argument('--text-encoder', help='BERT text encoder: Hugging Face name, local '
                       'folder, or package://MODULE/SUBPATH inside an installed package')
    group.add_argument('--sam-checkpoint', help='SAM checkpoint file')
    group.add_argument('--sam-backbone', choices=['vit_h', 'vit_l', 'vit_b', 'tiny'],
                       help='SAM image encoder size')
    group.add_argument('--sam-model', help='deprecated: a path is taken as --sam-checkpoint, '
                       'anything else as --sam-backbone')
    group.add_argument('--return-masks', action=argparse.BooleanOptionalAction, default=None,
                       help="train SAM's mask decoder on the ground-truth masks")
    group.add_argument('--finetune-sam', action=argparse.BooleanOptionalAction, default=None,
                       help="train SAM's image encoder too")
    group.add_argument('--epochs', type=int, help='number of training epochs')
    group.add_argument('--batch-size', type=int, help='images per GPU per step')
    group.add_argument('--lr', type=float, help='base learning rate of AdamW')
    group.add_argument('--image-size', type=int,
                       help='max image side after resizing, in pixels (images are '
                       'padded to a square of this size)')
    group.add_argument('--output', help='alias of --work-dir')


def translate_sam_model(args: argparse.Namespace) -> None:
    """Map the deprecated --sam-model onto --sam-checkpoint or --sam-backbone."""
    if args.sam_model is None:
        return
    warnings.warn('--sam-model is deprecated: use --sam-checkpoint for a file or '
                  '--sam-backbone for vit_h, vit_l or vit_b', DeprecationWarning, stacklevel=2)
    print_log('--sam-model is deprecated; use --sam-checkpoint or --sam-backbone',
              logger='current', level=30)
    if os.path.sep in args.sam_model or Path(args.sam_model).suffix in ('.pth', '.pt'):
        args.sam_checkpoint = args.sam_checkpoint or args.sam_model
    else:
        args.sam_backbone = args.sam_backbone or args.sam_model


def innermost_dataset(dataset: dict) -> dict:
    """Return the dataset config inside wrappers such as RepeatDataset."""
    while 'dataset' in dataset:
        dataset = dataset['dataset']
    return dataset


def _set_dataset(cfg: Config, dataloader: str, evaluator: Optional[str],
                 ann_file: Optional[str], image_dir: Optional[str]) -> None:
    """Point one dataloader's dataset, and the evaluator that scores it, at
    the given annotation file and image folder.

    The paths become absolute and `data_root` empty. A path that was not
    given keeps its old location, joined with the old `data_root`. The
    evaluator gets the dataset's paths: it reads the same file, and a
    `CocoWithMasksMetric` also reads the image folder (for `mask_path`
    masks and for image sizes missing from the file).
    """
    if ann_file is None and image_dir is None:
        return
    dataset = innermost_dataset(cfg[dataloader]['dataset'])
    data_root = dataset.get('data_root') or ''
    if ann_file is not None:
        dataset['ann_file'] = str(Path(ann_file).resolve())
    else:
        dataset['ann_file'] = join_data_root(data_root, dataset['ann_file'])
    if image_dir is not None:
        dataset['data_prefix'] = dict(img=str(Path(image_dir).resolve()) + os.sep)
    else:
        dataset['data_prefix'] = {key: join_data_root(data_root, value) for key, value
                                  in (dataset.get('data_prefix') or {}).items()}
    dataset['data_root'] = ''
    if evaluator is None:
        return
    metrics = cfg[evaluator] if isinstance(cfg[evaluator], list) else [cfg[evaluator]]
    for metric in metrics:
        if metric.get('type') == 'CocoWithMasksMetric':
            metric.update(data_root='', ann_file=dataset['ann_file'],
                          data_prefix=dict(dataset['data_prefix']))
        elif 'ann_file' in metric:
            metric['ann_file'] = dataset['ann_file']


def set_data_paths(cfg: Config, annotations: Optional[str], images: Optional[str],
                   val_annotations: Optional[str] = None,
                   val_images: Optional[str] = None) -> None:
    """Point the datasets and evaluators at the given files (None keeps the
    config's value). Evaluation uses the training data unless the val paths
    are given."""
    val_annotations = val_annotations or annotations
    val_images = val_images or images
    _set_dataset(cfg, 'train_dataloader', None, annotations, images)
    _set_dataset(cfg, 'val_dataloader', 'val_evaluator', val_annotations, val_images)
    if cfg.get('test_dataloader') is not None:
        _set_dataset(cfg, 'test_dataloader', 'test_evaluator', val_annotations, val_images)


def _set_image_size(cfg: Config, image_size: int) -> None:
    """Set the resize and pad size in every pipeline, and the tiny SAM's input."""
    if image_size < 32:
        raise ConfigError(f'--image-size must be at least 32 pixels, got {image_size}')
    for dataloader in DATALOADERS:
        for transform in innermost_dataset(cfg[dataloader]['dataset']).get('pipeline', []):
            if transform['type'] == 'Resize':
                transform['scale'] = (image_size, image_size)
            elif transform['type'] == 'Pad':
                transform['size'] = (image_size, image_size)
    if cfg.model.sam.get('backbone') == 'tiny':
        cfg.model.sam.image_size = image_size


def _set_epochs(cfg: Config, epochs: int) -> None:
    """Set the number of epochs and stretch the schedulers that span the run.

    An epoch-based scheduler that ends with the run (its `end` is the old
    number of epochs, or unset) ends at the new one. Its milestones move in
    proportion, each at least 1, so that a short run does not start at the
    dropped rate. Schedulers that end earlier, such as a warm-up, keep their
    length. The config that the Runner writes to the work dir shows the result.
    """
    old_epochs = cfg.train_cfg.get('max_epochs')
    cfg.train_cfg.max_epochs = epochs
    for scheduler in cfg.get('param_scheduler') or []:
        if not scheduler.get('by_epoch', True) or scheduler.get('end') not in (None, old_epochs):
            continue
        if scheduler.get('end') is not None:
            scheduler['end'] = epochs
        if 'milestones' in scheduler:
            scheduler['milestones'] = [max(1, int(milestone * epochs / old_epochs))
                                       for milestone in scheduler['milestones']]


def apply_shortcuts(cfg: Config, args: argparse.Namespace) -> None:
    """Write the shortcut flags into the config (in place)."""
    translate_sam_model(args)
    set_data_paths(cfg, args.annotations, args.images, args.val_annotations, args.val_images)

    model_values: dict[str, Any] = {
        'dino.config_file': args.dino_config,
        'dino.checkpoint': args.checkpoint,
        'dino.text_encoder': args.text_encoder,
        'sam.checkpoint': args.sam_checkpoint,
        'sam.backbone': args.sam_backbone,
        'return_masks': args.return_masks,
        'finetune_sam': args.finetune_sam,
    }
    for key, value in model_values.items():
        if value is not None:
            cfg.merge_from_dict({f'model.{key}': value})
    if args.sam_backbone not in (None, 'tiny'):
        # Only the tiny SAM takes another input size; the official ones are
        # fixed at 1024 and GroundingSAM resizes its inputs for them.
        cfg.model.sam.pop('image_size', None)

    if args.epochs is not None:
        _set_epochs(cfg, args.epochs)
    if args.batch_size is not None:
        cfg.train_dataloader.batch_size = args.batch_size
    if args.lr is not None:
        cfg.optim_wrapper.optimizer.lr = args.lr
    if args.image_size is not None:
        _set_image_size(cfg, args.image_size)
    work_dir = args.work_dir or args.output
    if work_dir is not None:
        cfg.work_dir = work_dir


# torch optimizers with a fused CUDA implementation (`fused=True`).
FUSED_OPTIMIZERS = ('Adam', 'AdamW')


def select_optim_wrapper(cfg: Config, amp_requested: bool) -> None:
    """Select mixed precision and the fused optimizer whenever CUDA exists (in place).

    With CUDA, ``AmpOptimWrapper`` autocasts to bfloat16 where the GPU
    computes it natively (compute capability 8.0 and newer, or ROCm).
    bfloat16 has float32's exponent range, so the loss scale is a constant 1,
    and the scaler only skips steps with inf or NaN gradients. Older GPUs,
    which only emulate bfloat16, get float16 with dynamic loss scaling. Adam
    and AdamW also get ``fused=True``, one CUDA kernel for all parameters.
    Values the config sets itself are kept.

    MMEngine's AMP wrapper rejects the CPU, so there the plain wrapper and the
    optimizer's default implementation are used, and one log line reports it.
    """
    if torch.cuda.is_available():
        _select_cuda_optim_wrapper(cfg)
        return
    if cfg.optim_wrapper.get('type') == 'AmpOptimWrapper':
        cfg.optim_wrapper.type = 'OptimWrapper'
        cfg.optim_wrapper.pop('loss_scale', None)
        cfg.optim_wrapper.pop('dtype', None)
    reason = ' (--amp ignored)' if amp_requested else ''
    print_log(f'No CUDA device: training in float32 with OptimWrapper{reason}',
              logger='current')


def _select_cuda_optim_wrapper(cfg: Config) -> None:
    optim_wrapper = cfg.optim_wrapper
    if optim_wrapper.get('type') != 'AmpOptimWrapper':
        optim_wrapper.type = 'AmpOptimWrapper'
    if torch.cuda.is_bf16_supported(including_emulation=False):
        optim_wrapper.setdefault('dtype', 'bfloat16')
        optim_wrapper.setdefault('loss_scale', 1.0)
    else:
        optim_wrapper.setdefault('dtype', 'float16')
        optim_wrapper.setdefault('loss_scale', 'dynamic')

    optimizer = optim_wrapper.optimizer
    if optimizer.get('type') in FUSED_OPTIMIZERS:
        optimizer.setdefault('fused', True)
    fused = ', fused' if optimizer.get('fused') else ''
    print_log(f'CUDA found: training with {optim_wrapper.dtype} autocast '
              f'(AmpOptimWrapper, loss_scale={optim_wrapper.loss_scale}) and '
              f'{optimizer.get("type")}{fused}', logger='current')


def default_work_dir(config_path: str) -> str:
    """Return `work_dirs/CONFIG_NAME`, MMDetection's default."""
    return str(Path('work_dirs') / Path(config_path).stem)


def load_config(args: argparse.Namespace) -> Config:
    """Read the config file and apply --cfg-options and the shortcuts."""
    cfg = Config.fromfile(args.config)
    if args.cfg_options:
        cfg.merge_from_dict(args.cfg_options)
    apply_shortcuts(cfg, args)
    cfg.launcher = args.launcher
    if cfg.get('work_dir') is None:
        cfg.work_dir = default_work_dir(args.config)
    cache = cfg.model.get('sam_embedding_cache')
    if cache is not None and cache.get('disk_dir'):
        cache.disk_dir = resolve_work_dir(cache.disk_dir, cfg.work_dir)
    return cfg
