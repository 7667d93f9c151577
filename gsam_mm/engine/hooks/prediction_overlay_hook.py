"""Overlays of ground truth and predictions, drawn by the runner's visualizer."""
import os.path as osp
from pathlib import Path
from typing import Optional, Sequence

from mmdet.engine.hooks import DetVisualizationHook
from mmdet.registry import HOOKS
from mmdet.structures import DetDataSample
from mmengine.runner import Runner
from mmengine.utils import mkdir_or_exist

from ...datasets.images import read_rgb_image
from ...errors import ConfigError

# Suffix of the image name under which validation overlays are stored, so
# that they are distinguishable from other images in a backend's image list.
VAL_NAME_SUFFIX = '_val'


@HOOKS.register_module()
class PredictionOverlayHook(DetVisualizationHook):
    """Draw ground truth (left) and predicted boxes, masks, labels and scores
    (right) over images, with the runner's `DetLocalVisualizer`.

    - Validation: the first `val_images` images of every validation run go
      to the visualizer's backends as `STEM_val` at step = epoch. With
      `LocalVisBackend` (the default) they are PNG files under
      `WORK_DIR/TIMESTAMP/vis_data/vis_image/`. With
      `TensorboardVisBackend` in `vis_backends` they appear in
      TensorBoard's image tab.
    - Test: with `draw=True` and `test_out_dir` set, every image is written
      as `WORK_DIR/TIMESTAMP/test_out_dir/STEM.png`. PNG is lossless, so
      thin mask edges stay visible.

    Images are read as the training pipeline reads them: EXIF orientation
    applied, gray, RGBA and 16-bit images converted to RGB. The test folder
    is resolved once, because mmdet's hook joins it again on every
    iteration, which nests folders when the work dir is relative.

    Args:
        val_images: images drawn per validation run; 0 draws none.
        test_out_dir: folder inside the run's timestamped work dir; None
            writes no test overlays.
        **kwargs: arguments of `DetVisualizationHook` (`draw`, `score_thr`,
            `show`, `wait_time`, ...). `draw` switches the test overlays
            only; `interval` is not used.
    """

    def __init__(self, val_images: int = 3, test_out_dir: Optional[str] = None,
                 **kwargs) -> None:
        if val_images < 0:
            raise ConfigError(f'PredictionOverlayHook: val_images must be 0 or more, got '
                              f'{val_images}')
        super().__init__(test_out_dir=None, **kwargs)
        self.val_images = val_images
        self.overlay_dir = test_out_dir
        self._resolved_dir: Optional[str] = None
        self._val_drawn = 0

    def before_val_epoch(self, runner: Runner) -> None:
        self._val_drawn = 0

    def after_val_iter(self, runner: Runner, batch_idx: int, data_batch: dict,
                       outputs: Sequence[DetDataSample]) -> None:
        """Send the first `val_images` overlays of this run to the backends."""
        for data_sample in outputs:
            if self._val_drawn >= self.val_images:
                return
            self._val_drawn += 1
            self._draw(data_sample, Path(data_sample.img_path).stem + VAL_NAME_SUFFIX,
                       step=runner.epoch, out_file=None)

    def before_test(self, runner: Runner) -> None:
        if self.draw and self.overlay_dir is not None:
            self._resolved_dir = osp.join(runner.work_dir, runner.timestamp, self.overlay_dir)
            mkdir_or_exist(self._resolved_dir)
            runner.logger.info(f'Writing overlays (ground truth left, predictions right) to '
                               f'{self._resolved_dir}')

    def after_test_iter(self, runner: Runner, batch_idx: int, data_batch: dict,
                        outputs: Sequence[DetDataSample]) -> None:
        if not self.draw:
            return
        for data_sample in outputs:
            self._test_index += 1
            out_file = None
            if self._resolved_dir is not None:
                out_file = osp.join(self._resolved_dir, Path(data_sample.img_path).stem + '.png')
            self._draw(data_sample, Path(data_sample.img_path).name, step=self._test_index,
                       out_file=out_file)

    def _draw(self, data_sample: DetDataSample, name: str, step: int,
              out_file: Optional[str]) -> None:
        """Draw one sample; the ground-truth half appears when the sample has it."""
        self._visualizer.add_datasample(
            name,
            read_rgb_image(data_sample.img_path),
            data_sample=data_sample,
            draw_gt='gt_instances' in data_sample,
            show=self.show,
            wait_time=self.wait_time,
            pred_score_thr=self.score_thr,
            out_file=out_file,
            step=step)
