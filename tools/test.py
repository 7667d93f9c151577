"""Evaluate a Grounded-SAM checkpoint with COCO bbox and segm mAP.

    python tools/test.py configs/gsam_vith.py work_dirs/gsam_vith/best.pth
"""
import argparse
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from mmengine.runner import Runner  # noqa: E402

import gsam_mm  # noqa: E402,F401  (registers the components)
from gsam_mm.engine.runner_setup import (add_common_arguments,  # noqa: E402
                                         add_shortcut_arguments, load_config)


def parse_args(argv=None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description='Evaluate a Grounded-SAM checkpoint')
    add_common_arguments(parser)
    parser.add_argument('checkpoint_file', help='checkpoint written by tools/train.py')
    parser.add_argument('--show-dir', help='write prediction overlays into this folder '
                        'inside the work dir')
    add_shortcut_arguments(parser)
    return parser.parse_args(argv)


def main(argv=None) -> None:
    args = parse_args(argv)
    cfg = load_config(args)
    cfg.load_from = args.checkpoint_file
    if args.show_dir:
        visualization = cfg.default_hooks.visualization
        visualization.draw = True
        visualization.test_out_dir = args.show_dir
    runner = Runner.from_cfg(cfg)
    runner.test()


if __name__ == '__main__':
    main()
