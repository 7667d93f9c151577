"""Plot a training run's losses, learning rate and validation metrics.

    python tools/plot_logs.py work_dirs/my_set

Reads every `WORK_DIR/TIMESTAMP/vis_data/scalars.json` that MMEngine's
`LocalVisBackend` wrote and writes `losses.png`, `learning_rate.png` and
`val_metrics.png` to `WORK_DIR/plots/` (or `--out-dir`). A resumed run adds
a new TIMESTAMP folder, and its record of a step replaces the earlier one.
"""
import argparse
import json
import math
import sys
from pathlib import Path
from typing import Optional

import matplotlib

matplotlib.use('Agg')  # files only, no display needed
import matplotlib.pyplot as plt  # noqa: E402
from matplotlib.ticker import MaxNLocator  # noqa: E402

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from gsam_mm.errors import ConfigError  # noqa: E402

# Loss families: the last decoder layer's name; `d{i}.` and `enc.` variants
# are drawn in the same panel.
LOSS_PANELS = ('loss', 'loss_cls', 'loss_bbox', 'loss_iou', 'loss_mask', 'loss_mask_iou')
LEARNING_RATE_KEYS = ('lr', 'base_lr')
METRIC_PREFIX = 'coco/'
# Per-category keys end with this; they are left out of the plots.
PER_CATEGORY_SUFFIX = '_precision'


def read_scalars(work_dir: Path) -> tuple[list[dict], list[dict]]:
    """Return the training records and the validation records of a run.

    Training records carry `epoch` and `iter`; validation records carry
    metrics and `step`, the epoch they followed.

    Raises:
        ConfigError: when the work dir has no scalars.json.
    """
    files = sorted(work_dir.glob('*/vis_data/scalars.json'))
    if not files:
        raise ConfigError(f'no */vis_data/scalars.json under {work_dir}; give the work dir '
                          'of a run of tools/train.py')
    train_by_iter: dict[int, dict] = {}
    val_by_epoch: dict[int, dict] = {}
    for path in files:
        for line in path.read_text().splitlines():
            if not line.strip():
                continue
            record = json.loads(line)
            if 'iter' in record and 'epoch' in record:
                train_by_iter[record['iter']] = record
            elif any(key.startswith(METRIC_PREFIX) for key in record):
                val_by_epoch[record['step']] = record
    return ([train_by_iter[key] for key in sorted(train_by_iter)],
            [val_by_epoch[key] for key in sorted(val_by_epoch)])


def fractional_epochs(train_records: list[dict]) -> list[float]:
    """Place each training record on an epoch axis.

    A record logged at iteration `iter` of epoch e gets
    `e - 1 + (iter - end of e-1) / (end of e - end of e-1)`, where an
    epoch's end is the last iteration logged in it. When the logging
    interval does not divide the epoch length, positions are off by less
    than one interval.
    """
    epoch_ends: dict[int, int] = {}
    for record in train_records:
        epoch_ends[record['epoch']] = max(epoch_ends.get(record['epoch'], 0), record['iter'])
    positions = []
    for record in train_records:
        epoch = record['epoch']
        start = epoch_ends.get(epoch - 1, 0)
        length = max(epoch_ends[epoch] - start, 1)
        positions.append(epoch - 1 + (record['iter'] - start) / length)
    return positions


def _series(records: list[dict], key: str, positions: list[float]) -> tuple[list, list]:
    pairs = [(position, record[key]) for position, record in zip(positions, records)
             if key in record and record[key] is not None and math.isfinite(record[key])]
    return [pair[0] for pair in pairs], [pair[1] for pair in pairs]


def plot_losses(train_records: list[dict], out_file: Path) -> None:
    """Plot one panel per loss family, with every decoder layer and the proposals."""
    positions = fractional_epochs(train_records)
    keys = {key for record in train_records for key in record}
    panels = [name for name in LOSS_PANELS if name in keys]
    columns = 3
    rows = math.ceil(len(panels) / columns)
    figure, axes = plt.subplots(rows, columns, figsize=(5 * columns, 3.6 * rows), squeeze=False)
    for axis, name in zip(axes.flat, panels):
        variants = sorted(key for key in keys
                          if key == name or (key.endswith('.' + name) and name != 'loss'))
        for key in variants:
            x, y = _series(train_records, key, positions)
            axis.plot(x, y, label=key, linewidth=1.5 if key == name else 1.0)
        axis.set_title(name)
        axis.set_xlabel('epoch')
        axis.xaxis.set_major_locator(MaxNLocator(integer=True))
        if min(_series(train_records, name, positions)[1], default=0) > 0:
            axis.set_yscale('log')
        if len(variants) > 1:
            axis.legend(fontsize='small')
        axis.grid(alpha=0.3)
    for axis in list(axes.flat)[len(panels):]:
        axis.set_visible(False)
    figure.suptitle('Training losses')
    figure.tight_layout()
    figure.savefig(out_file, dpi=100)
    plt.close(figure)


def plot_learning_rate(train_records: list[dict], out_file: Path) -> None:
    positions = fractional_epochs(train_records)
    figure, axis = plt.subplots(figsize=(7, 4))
    for key in LEARNING_RATE_KEYS:
        x, y = _series(train_records, key, positions)
        if y:
            axis.plot(x, y, label=key, linestyle='-' if key == 'lr' else '--')
    axis.set_xlabel('epoch')
    axis.xaxis.set_major_locator(MaxNLocator(integer=True))
    axis.set_ylabel('learning rate')
    axis.set_yscale('log')
    axis.legend()
    axis.grid(alpha=0.3)
    axis.set_title('Learning rate')
    figure.tight_layout()
    figure.savefig(out_file, dpi=100)
    plt.close(figure)


def plot_val_metrics(val_records: list[dict], out_file: Path) -> None:
    """Plot the overall validation metrics in two panels: mAP over IoU
    0.5:0.95 with the mean mask IoU on ground-truth boxes, and mAP at IoU 0.5
    and 0.75. Per-category and per-area figures are left out."""
    keys = sorted({key for record in val_records for key in record
                   if key.startswith(METRIC_PREFIX) and not key.endswith(PER_CATEGORY_SUFFIX)})
    panels = (
        ('mAP (IoU 0.5:0.95) and mask IoU on GT boxes',
         [key for key in keys if key.endswith(('mAP', 'mask_iou'))]),
        ('mAP at IoU 0.5 (solid) and 0.75 (dashed)',
         [key for key in keys if key.endswith(('mAP_50', 'mAP_75'))]),
    )
    epochs = [record['step'] for record in val_records]
    figure, axes = plt.subplots(1, 2, figsize=(13, 4.5))
    for axis, (title, panel_keys) in zip(axes, panels):
        for key in panel_keys:
            x, y = _series(val_records, key, epochs)
            axis.plot(x, y, label=key[len(METRIC_PREFIX):], marker='.',
                      linestyle='--' if key.endswith('_75') else '-')
        axis.set_title(title)
        axis.set_xlabel('epoch')
        axis.xaxis.set_major_locator(MaxNLocator(integer=True))
        axis.set_ylim(0, 1)
        if panel_keys:
            axis.legend(fontsize='small')
        axis.grid(alpha=0.3)
    figure.suptitle('Validation metrics')
    figure.tight_layout()
    figure.savefig(out_file, dpi=100)
    plt.close(figure)


def parse_args(argv=None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description='Plot the losses, learning rate and '
                                     'validation metrics of a training run')
    parser.add_argument('work_dir', help='work dir of a tools/train.py run')
    parser.add_argument('--out-dir', help='folder for the PNG files (default: WORK_DIR/plots)')
    return parser.parse_args(argv)


def main(argv: Optional[list[str]] = None) -> list[Path]:
    """Write the plots and return their paths."""
    args = parse_args(argv)
    work_dir = Path(args.work_dir)
    out_dir = Path(args.out_dir) if args.out_dir else work_dir / 'plots'
    train_records, val_records = read_scalars(work_dir)
    out_dir.mkdir(parents=True, exist_ok=True)

    written = []
    if train_records:
        plot_losses(train_records, out_dir / 'losses.png')
        plot_learning_rate(train_records, out_dir / 'learning_rate.png')
        written += [out_dir / 'losses.png', out_dir / 'learning_rate.png']
    if val_records:
        plot_val_metrics(val_records, out_dir / 'val_metrics.png')
        written.append(out_dir / 'val_metrics.png')
    for path in written:
        print(f'Wrote {path}')
    return written


if __name__ == '__main__':
    main()
