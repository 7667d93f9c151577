"""Fill the SAM embedding cache of a config before training.

    python tools/cache_embeddings.py configs/gsam_vith.py --no-finetune-sam \
        --annotations data/my_set/train.json --images data/my_set/images

Runs the frozen SAM image encoder once over every image of the chosen splits
(each image once, without dataset wrappers such as RepeatDataset) and writes
the embeddings to `model.sam_embedding_cache.disk_dir`. Images already there
are read, not recomputed. It runs in one process on one device.
"""
import argparse
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import torch  # noqa: E402
from mmdet.registry import DATASETS, MODELS  # noqa: E402
from mmengine.config import DictAction  # noqa: E402
from mmengine.dataset import pseudo_collate  # noqa: E402
from mmengine.logging import print_log  # noqa: E402
from mmengine.registry import init_default_scope  # noqa: E402
from torch.utils.data import DataLoader  # noqa: E402
from tqdm import tqdm  # noqa: E402

import gsam_mm  # noqa: E402,F401  (registers the components)
from gsam_mm.engine.runner_setup import (add_shortcut_arguments, innermost_dataset,  # noqa: E402
                                         load_config)
from gsam_mm.errors import ConfigError  # noqa: E402

SPLITS = ('train', 'val', 'test')


def parse_args(argv=None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description="Store the frozen SAM image encoder's "
                                     'embeddings of every image in the cache folder')
    parser.add_argument('config', help='config file, e.g. configs/gsam_vith.py')
    parser.add_argument('--work-dir', help='work dir that replaces {work_dir} in disk_dir '
                        '(default: work_dirs/CONFIG_NAME)')
    parser.add_argument('--cfg-options', nargs='+', action=DictAction,
                        help='override config values, e.g. model.sam_embedding_cache.disk_dir=X')
    parser.add_argument('--splits', nargs='+', choices=SPLITS, default=['train', 'val'],
                        help='dataloaders whose images are embedded (default: train val)')
    parser.add_argument('--device', default='cuda' if torch.cuda.is_available() else 'cpu',
                        help='device of the encoder (default: cuda when available)')
    parser.set_defaults(launcher='none')
    add_shortcut_arguments(parser)
    return parser.parse_args(argv)


def check_cache_settings(cfg) -> None:
    """Raise ConfigError unless the config caches frozen embeddings on disk."""
    settings = cfg.model.get('sam_embedding_cache')
    if not settings or not settings.get('disk_dir'):
        raise ConfigError('the config has no model.sam_embedding_cache.disk_dir, so there is '
                          'nowhere to store embeddings; set it, e.g. --cfg-options '
                          'model.sam_embedding_cache.disk_dir={work_dir}/sam_embeddings')
    if cfg.model.get('finetune_sam', False):
        raise ConfigError('model.finetune_sam is set: the SAM image encoder trains, so its '
                          'embeddings cannot be cached; pass --no-finetune-sam')


def build_loader(cfg, split: str) -> DataLoader:
    """Return a loader over the split's dataset in order, each image once."""
    loader_cfg = cfg[f'{split}_dataloader']
    dataset = DATASETS.build(innermost_dataset(loader_cfg.dataset))
    return DataLoader(dataset, batch_size=loader_cfg.get('batch_size', 1), shuffle=False,
                      num_workers=loader_cfg.get('num_workers', 0), collate_fn=pseudo_collate)


def main(argv=None) -> None:
    args = parse_args(argv)
    cfg = load_config(args)
    check_cache_settings(cfg)
    init_default_scope(cfg.get('default_scope', 'mmdet'))

    model = MODELS.build(cfg.model).to(args.device).eval()
    cache = model.embedding_cache
    for split in dict.fromkeys(args.splits):
        if cfg.get(f'{split}_dataloader') is None:
            print_log(f'The config has no {split}_dataloader; skipped', logger='current')
            continue
        loader = build_loader(cfg, split)
        with torch.no_grad():
            for data in tqdm(loader, desc=f'SAM embeddings ({split})', unit='batch'):
                data = model.data_preprocessor(data, training=False)
                model.extract_feat(data['inputs'], data['data_samples'])
    print_log(cache.summary(), logger='current')


if __name__ == '__main__':
    main()
