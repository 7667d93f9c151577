"""Check a dataset before training: every annotation problem, the prompt
vocabulary and statistics of the data, in one report.

    python tools/check_dataset.py configs/gsam_vith.py
    python tools/check_dataset.py --annotations data/train.json --images data/images
    python tools/check_dataset.py configs/gsam_vith.py --json report.json

Exits with status 0 when training can start and 1 when it cannot. Image
headers are read, pixels are not.
"""
import argparse
import json
import os
import os.path as osp
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Optional

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from mmengine.config import Config, DictAction  # noqa: E402
from tqdm import tqdm  # noqa: E402

from gsam_mm.datasets.coco_file import join_data_root  # noqa: E402
from gsam_mm.datasets.dataset_report import (DatasetReport, check_split,  # noqa: E402
                                             format_report)
from gsam_mm.datasets.vocabulary_report import check_vocabulary  # noqa: E402
from gsam_mm.engine.runner_setup import (DATALOADERS, innermost_dataset,  # noqa: E402
                                         set_data_paths)

DEFAULT_TEXT_ENCODER = 'bert-base-uncased'
DEFAULT_MAX_TEXT_LEN = 256


@dataclass
class DataSource:
    """One annotation file and the splits that read it."""

    names: list[str]
    ann_file: str
    img_dir: str
    classes: Optional[tuple] = None
    on_bad_annotation: str = 'error'


@dataclass
class PromptSettings:
    """Text encoder and token limits that the model's prompt is built with."""

    text_encoder: str = DEFAULT_TEXT_ENCODER
    max_text_len: int = DEFAULT_MAX_TEXT_LEN
    max_prompt_tokens: Optional[int] = None


def parse_args(argv=None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        description='Check annotation files before training and report every problem')
    parser.add_argument('config', nargs='?', help='training config; its train, val and '
                        'test datasets are checked')
    parser.add_argument('--annotations', help='COCO annotation file (replaces the '
                        "config's training and, unless --val-annotations is given, "
                        'evaluation file)')
    parser.add_argument('--images', help='folder the annotation file names are relative to')
    parser.add_argument('--val-annotations', help='COCO annotation file for evaluation')
    parser.add_argument('--val-images', help='image folder for --val-annotations')
    parser.add_argument('--classes', nargs='+', help='category names to train on, as '
                        'metainfo.classes (default: every category of the file)')
    parser.add_argument('--on-bad-annotation', choices=['error', 'skip'],
                        help="what training does with invalid records (default: the "
                        "config's value, else 'error')")
    parser.add_argument('--text-encoder', help='tokenizer for the token counts: Hugging Face '
                        'name, local folder or package://MODULE/SUBPATH (default: the '
                        f"config's text encoder, else {DEFAULT_TEXT_ENCODER})")
    parser.add_argument('--max-prompt-tokens', type=int,
                        help='token budget of one caption (default: the text encoder limit)')
    parser.add_argument('--json', metavar='PATH', help="also write the report as JSON; "
                        "'-' prints only the JSON")
    parser.add_argument('--no-progress', action='store_true', help='hide the progress bar')
    parser.add_argument('--cfg-options', nargs='+', action=DictAction,
                        help='override config values, e.g. train_dataloader.batch_size=2')
    args = parser.parse_args(argv)
    if args.config is None and not (args.annotations and args.images):
        parser.error('give a CONFIG, or --annotations and --images')
    return args


def sources_from_config(cfg: Config) -> list[DataSource]:
    """Return the annotation files of the config's dataloaders, each once."""
    sources: dict[tuple, DataSource] = {}
    for dataloader in DATALOADERS:
        if cfg.get(dataloader) is None:
            continue
        dataset = innermost_dataset(cfg[dataloader]['dataset'])
        data_root = dataset.get('data_root') or ''
        ann_file = join_data_root(data_root, dataset['ann_file'])
        prefix = dataset.get('data_prefix') or {}
        img_dir = join_data_root(data_root, prefix.get('img', prefix.get('img_path', '')))
        classes = (dataset.get('metainfo') or {}).get('classes')
        classes = tuple(classes) if classes else None
        key = (osp.abspath(ann_file), osp.abspath(img_dir), classes)
        if key not in sources:
            sources[key] = DataSource([], ann_file, img_dir, classes,
                                      dataset.get('on_bad_annotation', 'error'))
        sources[key].names.append(dataloader.removesuffix('_dataloader'))
    return list(sources.values())


def prompt_settings_from_config(cfg: Config) -> PromptSettings:
    """Read the text encoder and token limits from the model config."""
    dino = cfg.model.get('dino', {})
    overrides = dino.get('overrides') or {}
    return PromptSettings(text_encoder=dino.get('text_encoder', DEFAULT_TEXT_ENCODER),
                          max_text_len=overrides.get('max_text_len', DEFAULT_MAX_TEXT_LEN),
                          max_prompt_tokens=cfg.model.get('max_prompt_tokens'))


def load_tokenizer(text_encoder: str):
    """Return the text encoder's tokenizer and None, or None and the reason."""
    from transformers import AutoTokenizer

    from gsam_mm.models.checkpoints import resolve_model_path
    try:
        return AutoTokenizer.from_pretrained(resolve_model_path(text_encoder)), None
    except (OSError, ValueError) as err:
        return None, (f'cannot load the tokenizer of {text_encoder!r} ({err}); pass '
                      '--text-encoder with a local folder or an installed package')


def build_report(sources: list[DataSource], prompt: PromptSettings,
                 show_progress: bool = True) -> DatasetReport:
    """Check every source, then the vocabulary of the training categories."""
    splits = []
    loaded = {}
    for source in sources:
        def progress(images, label=', '.join(source.names)):
            return tqdm(images, desc=f'{label}: images', unit='image', file=sys.stderr,
                        disable=None if show_progress else True)

        split, annotations = check_split(source.names, source.ann_file, source.img_dir,
                                         classes=source.classes,
                                         on_bad_annotation=source.on_bad_annotation,
                                         progress=progress)
        splits.append(split)
        if annotations is not None:
            loaded.update({name: annotations for name in source.names})

    report = DatasetReport(splits=splits)
    training = loaded.get('train') or next(iter(loaded.values()), None)
    if training is not None:
        tokenizer, note = load_tokenizer(prompt.text_encoder)
        report.vocabulary = check_vocabulary(training.categories, loaded, tokenizer,
                                             prompt.max_text_len, prompt.max_prompt_tokens,
                                             tokenizer_note=note)
    return report


def main(argv=None) -> int:
    args = parse_args(argv)
    prompt = PromptSettings()
    if args.config is not None:
        cfg = Config.fromfile(args.config)
        if args.cfg_options:
            cfg.merge_from_dict(args.cfg_options)
        set_data_paths(cfg, args.annotations, args.images, args.val_annotations,
                       args.val_images)
        sources = sources_from_config(cfg)
        prompt = prompt_settings_from_config(cfg)
    else:
        sources = [DataSource(['train'], args.annotations, args.images)]
        if args.val_annotations:
            sources.append(DataSource(['val'], args.val_annotations,
                                      args.val_images or args.images))
    for source in sources:
        if args.classes:
            source.classes = tuple(args.classes)
        if args.on_bad_annotation:
            source.on_bad_annotation = args.on_bad_annotation
    if args.text_encoder:
        prompt.text_encoder = args.text_encoder
    if args.max_prompt_tokens:
        prompt.max_prompt_tokens = args.max_prompt_tokens

    report = build_report(sources, prompt, show_progress=not args.no_progress)
    if args.json:
        text = json.dumps(report.to_dict(), indent=1, default=repr)
        if args.json == '-':
            print(text)
        else:
            Path(args.json).write_text(text + os.linesep)
    if args.json != '-':
        print(format_report(report))
    return 0 if report.can_train else 1


if __name__ == '__main__':
    sys.exit(main())
