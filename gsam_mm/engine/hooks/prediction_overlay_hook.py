"""Prediction overlays written as PNG files during testing and validation."""
import os.path as osp
from pathlib import Path
from typing import Optional, Sequence

from mmdet.engine.hooks import DetVisualizationHook
from mmdet.registry import HOOKS
from mmdet.structures import DetDataSample
from mmengine.runner import Runner
from mmengine.utils import mkdir_or_exist

from ...datasets.images import read_rgb_image


@HOOKS.register_module()
class PredictionOverlayHook(DetVisualizationHook):
    """Draw predicted boxes, masks, labels and scores over each test image.

    It differs from MMDetection's `DetVisualizationHook` in three ways.
    Overlays are PNG files, which are lossless, so thin mask edges stay
    visible. Images are read as the training pipeline reads them, with EXIF
    orientation applied and gray, RGBA and 16-bit images converted to RGB.
    The output folder `WORK_DIR/TIMESTAMP/test_out_dir` is resolved once,
    because the parent class joins it again on every iteration, which nests
    folders when the work dir is relative. Validation overlays go through the
    visualizer's backends as in the parent class.

    Args:
        test_out_dir: folder inside the run's timestamped work dir; None
            writes no test overlays.
        **kwargs: arguments of `DetVisualizationHook` (`draw`, `interval`,
            `score_thr`, ...).
    """

    def __init__(self, test_out_dir: Optional[str] = None, **kwargs) -> None:
        super().__init__(test_out_dir=None, **kwargs)
        self.overlay_dir = test_out_dir
        self._resolved_dir: Optional[str] = None

    def before_test(self, runner: Runner) -> None:
        if self.draw and self.overlay_dir is not None:
            self._resolved_dir = osp.join(runner.work_dir, runner.timestamp, self.overlay_dir)
            mkdir_or_exist(self._resolved_dir)
            runner.logger.info(f'Writing prediction overlays to {self._resolved_dir}')

    def after_test_iter(self, runner: Runner, batch_idx: int, data_batch: dict,
                        outputs: Sequence[DetDataSample]) -> None:
        if not self.draw:
            return
        for data_sample in outputs:
            self._test_index += 1
            out_file = None
            if self._resolved_dir is not None:
                out_file = osp.join(self._resolved_dir, Path(data_sample.img_path).stem + '.png')
            self._visualizer.add_datasample(
                Path(data_sample.img_path).name,
                read_rgb_image(data_sample.img_path),
                data_sample=data_sample,
                draw_gt=False,
                show=self.show,
                wait_time=self.wait_time,
                pred_score_thr=self.score_thr,
                out_file=out_file,
                step=self._test_index)
