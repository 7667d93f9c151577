"""Evaluate a Grounded-SAM checkpoint with COCO bbox and segm mAP.

    python tools/test.py configs/gsam_vith.py work_dirs/gsam_vith/best_coco_segm_mAP_epoch_N.pth

Prints AP per category for bbox, segm and (with the model's
`evaluate_gt_boxes`) segm with SAM prompted by the ground-truth boxes.
`--show-dir` writes each image's ground truth and predictions side by side.
"""
import argparse
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from mmengine.dist import is_main_process  # noqa: E402
from mmengine.runner import Runner  # noqa: E402

import gsam_mm  # noqa: E402,F401  (registers the components)
from gsam_mm.evaluation.report import format_metrics_table  # noqa: E402
from gsam_mm.engine.runner_setup import (add_common_arguments,  # noqa: E402
                                         add_shortcut_arguments, load_config)


def parse_args(argv=None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description='Evaluate a Grounded-SAM checkpoint')
    add_common_arguments(parser)
    parser.add_argument('checkpoint_file', help='checkpoint written by tools/train.py')
    parser.add_argument('--show-dir', help='write overlays of the ground truth (left) and '
                        'the predictions (right) into this folder inside the timestamped '
                        'work dir')
    parser.add_argument('--gt-box-eval', action=argparse.BooleanOptionalAction, default=None,
                        help='also evaluate SAM prompted by the ground-truth boxes '
                        "(default: the config's model.evaluate_gt_boxes)")
    add_shortcut_arguments(parser)
    return parser.parse_args(argv)


def main(argv=None) -> dict:
    """Evaluate, print the per-category table and return the metrics."""
    args = parse_args(argv)
    cfg = load_config(args)
    cfg.load_from = args.checkpoint_file
    if args.gt_box_eval is not None:
        cfg.model.evaluate_gt_boxes = args.gt_box_eval
    if args.show_dir:
        visualization = cfg.default_hooks.visualization
        visualization.draw = True
        visualization.test_out_dir = args.show_dir
    runner = Runner.from_cfg(cfg)
    metrics = runner.test()
    if is_main_process():
        class_names = runner.test_dataloader.dataset.metainfo['classes']
        print(format_metrics_table(metrics, class_names), flush=True)
    return metrics


if __name__ == '__main__':
    main()
