"""Train Grounded-SAM with the MMEngine Runner.

    python tools/train.py configs/gsam_vith.py \
        --annotations data/train.json --images data/images --epochs 50

Several GPUs: `tools/dist_train.sh CONFIG GPUS [args]` (torchrun) or
`tools/slurm_train.sh PARTITION JOB_NAME CONFIG GPUS [args]` (srun).
"""
import argparse
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from mmengine.runner import Runner  # noqa: E402

import gsam_mm  # noqa: E402,F401  (registers the components, fixes resume on torch >= 2.6)
from gsam_mm.engine.distributed import (finish_distributed, init_distributed,  # noqa: E402
                                        select_model_wrapper)
from gsam_mm.engine.runner_setup import (add_common_arguments,  # noqa: E402
                                         add_shortcut_arguments, load_config,
                                         select_optim_wrapper)


def parse_args(argv=None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description='Fine-tune Grounding DINO and SAM together')
    add_common_arguments(parser)
    parser.add_argument('--resume', nargs='?', const='auto', default=None,
                        help='resume from a checkpoint file, or with no value from the '
                        "latest checkpoint in the work dir")
    parser.add_argument('--amp', action='store_true',
                        help='mixed precision (on by default whenever CUDA exists)')
    add_shortcut_arguments(parser)
    return parser.parse_args(argv)


def main(argv=None) -> None:
    args = parse_args(argv)
    cfg = load_config(args)
    init_distributed(cfg)
    select_optim_wrapper(cfg, args.amp)
    select_model_wrapper(cfg)
    if args.resume == 'auto':
        cfg.resume = True
        cfg.load_from = None
    elif args.resume is not None:
        cfg.resume = True
        cfg.load_from = args.resume
    runner = Runner.from_cfg(cfg)
    runner.train()
    finish_distributed()


if __name__ == '__main__':
    main()
