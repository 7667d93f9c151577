"""Detect and segment the prompt's categories in new images.

    python tools/infer.py configs/gsam_vith.py work_dirs/my_set/epoch_50.pth photos/ \
        --texts "crack . rust" --out-dir outputs/photos

Writes one PNG overlay per image, `results.json` (COCO results: boxes and
RLE masks) and `run_info.json` (what the image and category ids mean).
Pass `none` as the checkpoint to run zero-shot with the official weights
that the config names.
"""
import argparse
import os
import re
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import numpy as np  # noqa: E402
from mmengine.config import DictAction  # noqa: E402
from mmengine.logging import print_log  # noqa: E402
from mmengine.utils import ProgressBar  # noqa: E402
from PIL import Image  # noqa: E402

import gsam_mm  # noqa: E402,F401  (registers the components)
from gsam_mm.apis import (Detections, GroundedSAMInferencer,  # noqa: E402
                          detections_to_coco, match_annotation_images, run_info)
from gsam_mm.apis.coco_results import write_json  # noqa: E402
from gsam_mm.apis.image_inputs import collect_image_paths  # noqa: E402
from gsam_mm.datasets.images import read_rgb_image  # noqa: E402

ZERO_SHOT = 'none'


def parse_args(argv=None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description='Run Grounded-SAM on images')
    parser.add_argument('config', help='config file, e.g. configs/gsam_vith.py')
    parser.add_argument('checkpoint', help='checkpoint written by tools/train.py, or "none" '
                        'for the official Grounding DINO and SAM weights the config names')
    parser.add_argument('inputs', nargs='+', help='image files, folders or glob patterns')
    parser.add_argument('--texts', help='prompt as phrases separated by " . ", e.g. '
                        '"crack . rust" (default: the training categories)')
    parser.add_argument('--out-dir', default='outputs/infer', help='output folder')
    parser.add_argument('--score-thr', type=float, default=0.3,
                        help='keep detections whose box score is at least this (0 to 1)')
    parser.add_argument('--mask-thr', type=float, default=None,
                        help='mask logit above which a pixel is set (default: the '
                        "config's model.mask_threshold)")
    parser.add_argument('--batch-size', type=int, default=1, help='images per forward pass')
    parser.add_argument('--device', help='torch device (default: cuda when available)')
    parser.add_argument('--ann-file', help='COCO file whose image ids the results use, '
                        'matched by file name (default: images numbered 1, 2, ...); '
                        'images are then read with or without EXIF orientation as in '
                        'training')
    parser.add_argument('--save-masks', action='store_true',
                        help='also write each instance mask as a PNG under masks/')
    parser.add_argument('--no-overlays', action='store_true', help='write no overlay PNGs')
    parser.add_argument('--cfg-options', nargs='+', action=DictAction,
                        help='override config values, e.g. model.max_per_image=50')
    return parser.parse_args(argv)


def output_stems(paths: list[str]) -> dict[str, str]:
    """Name each image's outputs by its file stem, adding the position for
    stems that repeat (same name in two folders)."""
    stems = [Path(path).stem for path in paths]
    repeated = {stem for stem in stems if stems.count(stem) > 1}
    return {path: f'{stem}_{index + 1}' if stem in repeated else stem
            for index, (path, stem) in enumerate(zip(paths, stems))}


def save_instance_masks(detections: Detections, folder: Path, stem: str) -> None:
    """Write each mask as `STEM_INDEX_NAME.png`, 255 on the object."""
    for index, (mask, name) in enumerate(zip(detections.masks, detections.label_names)):
        safe_name = re.sub(r'[^A-Za-z0-9_-]+', '-', name)
        pixels = mask.astype(np.uint8) * 255
        Image.fromarray(pixels).save(folder / f'{stem}_{index:03d}_{safe_name}.png')


def main(argv=None) -> None:
    args = parse_args(argv)
    checkpoint = None if args.checkpoint.lower() == ZERO_SHOT else args.checkpoint
    # Inputs first: a wrong path should not wait for the model to load.
    paths = collect_image_paths(args.inputs)
    inferencer = GroundedSAMInferencer(args.config, checkpoint, device=args.device,
                                       score_threshold=args.score_thr,
                                       mask_threshold=args.mask_thr,
                                       cfg_options=args.cfg_options)
    categories = inferencer.categories_for(args.texts)
    if args.ann_file:
        # Read each image as the dataset does, so results fit the ground truth.
        matches = match_annotation_images(paths, args.ann_file)
        image_ids = {path: match.image_id for path, match in matches.items()}
        apply_exif = {path: match.apply_exif for path, match in matches.items()}
    else:
        image_ids = {path: index + 1 for index, path in enumerate(paths)}
        apply_exif = {path: True for path in paths}
    stems = output_stems(paths)

    out_dir = Path(args.out_dir)
    overlay_dir = out_dir / 'overlays'
    mask_dir = out_dir / 'masks'
    for folder, requested in ((out_dir, True), (overlay_dir, not args.no_overlays),
                              (mask_dir, args.save_masks)):
        if requested:
            os.makedirs(folder, exist_ok=True)
    print_log(f'{len(paths)} images, prompt {list(categories.texts)}, writing to {out_dir}',
              logger='current')

    results = []
    images = []
    progress = ProgressBar(len(paths))
    for start in range(0, len(paths), args.batch_size):
        batch = paths[start:start + args.batch_size]
        batch_detections = inferencer.predict_batch(
            batch, categories, apply_exif=[apply_exif[path] for path in batch])
        for path, detections in zip(batch, batch_detections):
            height, width = detections.image_shape
            images.append({'id': image_ids[path], 'file_name': path,
                           'width': width, 'height': height})
            results.extend(detections_to_coco(detections, image_ids[path]))
            if not args.no_overlays:
                inferencer.draw(read_rgb_image(path, apply_exif[path]), detections,
                                out_file=str(overlay_dir / f'{stems[path]}.png'))
            if args.save_masks:
                save_instance_masks(detections, mask_dir, stems[path])
            progress.update()
    sys.stdout.write('\n')

    write_json(str(out_dir / 'results.json'), results)
    write_json(str(out_dir / 'run_info.json'), run_info(categories, images, args.ann_file))
    print_log(f'{len(results)} detections in {len(paths)} images', logger='current')


if __name__ == '__main__':
    main()
