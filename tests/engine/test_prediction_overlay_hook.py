"""PredictionOverlayHook in a real Runner: validation overlays reach the visualizer's backend."""
import pytest
from mmdet.structures import DetDataSample
from mmdet.visualization import DetLocalVisualizer
from mmengine.config import Config
from mmengine.runner import Runner
from PIL import Image

import gsam_mm  # noqa: F401
from gsam_mm.errors import ConfigError
from gsam_mm.engine.hooks import PredictionOverlayHook

from ..conftest import REPO_ROOT

DEMO = str(REPO_ROOT / 'configs' / 'gsam_tiny_demo.py')


def demo_runner(demo_data, work_dir, val_images: int) -> Runner:
    cfg = Config.fromfile(DEMO)
    cfg.work_dir = str(work_dir)
    cfg.val_dataloader.dataset.data_root = str(demo_data) + '/'
    cfg.val_evaluator.ann_file = str(demo_data / 'annotations.json')
    cfg.default_hooks.visualization.val_images = val_images
    cfg.model.evaluate_gt_boxes = False
    return Runner.from_cfg(cfg)


def test_val_overlays_written_by_backend(demo_data, tmp_path):
    runner = demo_runner(demo_data, tmp_path, val_images=2)
    runner.val()

    overlays = sorted(tmp_path.glob('*/vis_data/vis_image/*.png'))
    # The local backend names an image NAME_STEP.png; the step is the epoch (0 before training).
    assert [path.name for path in overlays] == ['2011_000003_val_0.png',
                                                '2011_000025_val_0.png']
    original_width, original_height = Image.open(demo_data / 'JPEGImages/2011_000003.jpg').size
    with Image.open(overlays[0]) as overlay:
        # Ground truth left, predictions right.
        assert overlay.size == (2 * original_width, original_height)


def test_val_overlays_off():
    # The hook takes the current visualizer when it is built.
    DetLocalVisualizer.get_instance('overlay_hook_test')
    hook = PredictionOverlayHook(val_images=0)
    # Drawing would call the visualizer, so removing it makes any draw fail.
    hook._visualizer = None
    hook.before_val_epoch(runner=None)

    hook.after_val_iter(runner=None, batch_idx=0, data_batch={},
                        outputs=[DetDataSample(metainfo=dict(img_path='a.png'))])

    assert hook._val_drawn == 0


def test_negative_val_images_rejected():
    with pytest.raises(ConfigError, match='val_images must be 0 or more, got -1'):
        PredictionOverlayHook(val_images=-1)
