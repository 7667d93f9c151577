"""Cache of SAM image embeddings for a frozen image encoder.

A frozen encoder maps the same input to the same embedding in every epoch,
so each embedding is computed once and then read back. Entries live in
process memory up to a budget, and in a folder on disk when one is
configured.

An entry's key names the image file: its path with its `os.stat` size and
modification time, or a hash of its bytes. The key also holds the geometry
the pipeline recorded in the data sample's metainfo (`GEOMETRY_META_KEYS`)
and the canvas size the batch was padded to. Each entry also stores a checksum of
the exact SAM input it was computed from (`input_checksums`), and a lookup
whose input has another checksum is served from the encoder instead. That
catches pipelines whose random steps (colour jitter, crops, flips not listed
in `meta_keys`) leave no trace in the metainfo.

Disk entries live under `DISK_DIR/FINGERPRINT/`, where the fingerprint
covers the encoder's parameter names, shapes, dtypes and a strided sample of
their values, its input size and the SAM checkpoint file. Another
checkpoint or input size therefore reads and writes another folder.

Several processes (distributed ranks) may share one disk folder. Each keeps
its own memory entries and writes only the embeddings it computed, each
file through a uniquely named temporary file and `os.replace`, so a reader
sees either no file or a whole one. Two ranks that compute the same image
both write valid copies, and the last replacement wins.

Shape letters: B images, C embedding channels, h and w the embedding grid,
S the SAM input side.
"""
import hashlib
import json
import math
import os
import tempfile
from collections import Counter
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Optional, Sequence

import numpy as np
import torch
from mmengine.logging import print_log
from mmengine.structures import BaseDataElement
from torch import Tensor, nn

from ..errors import ConfigError
from ..fields import GEOMETRY_META_KEYS, IMAGE_PATH, WORK_DIR_PLACEHOLDER
from .checkpoints import weights_fingerprint

STORAGE_DTYPES = {'bfloat16': torch.bfloat16, 'float16': torch.float16,
                  'float32': torch.float32}
KEY_BY_STAT = 'stat'
KEY_BY_CONTENT = 'content'
FINGERPRINT_FILE = 'fingerprint.json'

# Counters of `SamEmbeddingCache.stats`, in the order `summary` lists them.
STAT_NAMES = ('memory_hits', 'disk_hits', 'computed', 'checksum_mismatches', 'uncacheable',
              'not_stored', 'read_errors', 'write_errors')

# Checksums: the input's mean and root mean square (rms), and its mean
# product with NUM_PROJECTIONS fixed Gaussian weight maps. For an unchanged
# input they agree to fp32 rounding. Adding a change d to the input moves
# each projection by about rms(d) / sqrt(numel), so changes with rms(d)
# above about MIN_PROJECTION_CHANGE * rms are caught. Smaller ones, such as
# edits to a few pixels, may go unnoticed.
NUM_PROJECTIONS = 4
MIN_PROJECTION_CHANGE = 1e-2
MIN_MOMENT_CHANGE = 1e-5


@dataclass
class CacheEntry:
    """One cached embedding (C, h, w), kept on the CPU in the storage dtype,
    and the checksums (2 + NUM_PROJECTIONS,) of the input it came from."""

    embedding: Tensor
    checksums: Tensor

    @property
    def num_bytes(self) -> int:
        return self.embedding.numel() * self.embedding.element_size()


def resolve_work_dir(disk_dir: Optional[str], work_dir: str) -> Optional[str]:
    """Replace `{work_dir}` in a configured cache folder with the run's work dir."""
    if disk_dir is None:
        return None
    return disk_dir.replace(WORK_DIR_PLACEHOLDER, str(work_dir))


def describe_sam(sam_settings: dict, input_size: int) -> dict[str, Any]:
    """Describe a SAM encoder for the fingerprint: its backbone, input size
    and checkpoint file (absolute path, size and modification time).

    Args:
        sam_settings: the model config's `sam` dict (`build_sam` arguments).
        input_size: the encoder's input side in pixels.
    """
    checkpoint = sam_settings.get('checkpoint')
    checkpoint_file: Optional[dict[str, Any]] = None
    if checkpoint:
        path = Path(checkpoint).expanduser().resolve()
        status = path.stat()
        checkpoint_file = {'path': str(path), 'size': status.st_size,
                           'mtime_ns': status.st_mtime_ns}
    return {'backbone': sam_settings.get('backbone', 'vit_h'), 'input_size': input_size,
            'checkpoint': checkpoint_file}


def input_checksums(images: Tensor, projection_weights: Tensor) -> Tensor:
    """Summarise each SAM input by a few numbers that change with its pixels.

    Args:
        images: (B, 3, S, S) encoder inputs.
        projection_weights: (NUM_PROJECTIONS, 3, S, S) fixed weights.

    Returns:
        (B, 2 + NUM_PROJECTIONS) float64 on the CPU: mean, root mean square,
        then the mean product with each weight map.
    """
    flat = images.detach().float().flatten(1)  # (B, 3 * S * S)
    mean = flat.mean(dim=1, keepdim=True)
    rms = flat.square().mean(dim=1, keepdim=True).sqrt()
    # Products and sums rather than a matrix product, which CUDA may run in
    # TF32 and so round differently from one batch size to the next.
    projections = torch.stack([(flat * weights).mean(dim=1)
                               for weights in projection_weights.flatten(1)], dim=1)
    return torch.cat([mean, rms, projections], dim=1).double().cpu()


def checksums_match(stored: Tensor, current: Tensor, num_elements: int) -> bool:
    """Return True when two checksum vectors from `input_checksums` describe
    the same input, up to fp32 rounding."""
    rms = float(current[1])
    moment_tolerance = MIN_MOMENT_CHANGE * rms + 1e-12
    projection_tolerance = MIN_PROJECTION_CHANGE * rms / math.sqrt(num_elements) + 1e-12
    difference = (stored - current).abs()
    return bool((difference[:2] <= moment_tolerance).all()
                and (difference[2:] <= projection_tolerance).all())


def encoder_fingerprint(encoder: nn.Module, description: dict[str, Any]) -> str:
    """Hash what the encoder computes: `description` (input size,
    checkpoint) and a sample of every parameter and buffer."""
    return weights_fingerprint(encoder.state_dict().items(), description)


def _plain(value: Any) -> Any:
    """Turn metainfo values (numpy arrays and scalars, tuples) into JSON values."""
    if isinstance(value, np.ndarray):
        return value.tolist()
    if isinstance(value, np.generic):
        return value.item()
    if isinstance(value, (tuple, list)):
        return [_plain(item) for item in value]
    return value


class SamEmbeddingCache:
    """Memory and disk cache of a frozen SAM image encoder's embeddings.

    Args:
        memory_mb: MiB of embeddings kept in this process's memory. Further
            embeddings go to disk only, or are recomputed when there is no
            disk folder.
        disk_dir: folder for the disk entries, or None for memory only.
            `{work_dir}` in it is replaced by the run's work dir
            (`tools/train.py`, `tools/test.py` and `tools/cache_embeddings.py`
            do this).
        dtype: storage dtype, `bfloat16`, `float16` or `float32`. A computed
            embedding is rounded to it before use as well, so the first epoch
            gets the same values as the later ones.
        key_by: `stat` keys an image by its path, size and modification
            time. `content` keys it by a SHA-256 of its bytes, so the key
            survives copying the data set elsewhere.
        description: what the fingerprint records about the encoder besides
            its weights, e.g. backbone, input size and checkpoint path.

    Raises:
        ConfigError: for an invalid setting.
    """

    def __init__(self, *, memory_mb: float = 1024.0, disk_dir: Optional[str] = None,
                 dtype: str = 'bfloat16', key_by: str = KEY_BY_STAT,
                 description: Optional[dict[str, Any]] = None) -> None:
        if memory_mb < 0:
            raise ConfigError(f'sam_embedding_cache.memory_mb must be >= 0, got {memory_mb}')
        if dtype not in STORAGE_DTYPES:
            raise ConfigError(f'sam_embedding_cache.dtype must be one of '
                              f'{sorted(STORAGE_DTYPES)}, got {dtype!r}')
        if key_by not in (KEY_BY_STAT, KEY_BY_CONTENT):
            raise ConfigError(f"sam_embedding_cache.key_by must be '{KEY_BY_STAT}' or "
                              f"'{KEY_BY_CONTENT}', got {key_by!r}")
        if disk_dir is not None and WORK_DIR_PLACEHOLDER in disk_dir:
            raise ConfigError(f'sam_embedding_cache.disk_dir {disk_dir!r} still contains '
                              f'{WORK_DIR_PLACEHOLDER}; run through tools/train.py or '
                              'tools/test.py, which fill it in, or give a plain path')
        self.memory_budget = int(memory_mb * 2**20)
        self.disk_root = Path(disk_dir).expanduser() if disk_dir else None
        self.storage_dtype = STORAGE_DTYPES[dtype]
        self.key_by = key_by
        self.description = dict(description or {})

        self.stats: Counter = Counter()
        self.memory_bytes = 0
        self.fingerprint: Optional[str] = None
        self._memory: dict[str, CacheEntry] = {}
        self._projection_weights: dict[tuple, Tensor] = {}
        self._content_hashes: dict[tuple, str] = {}
        self._warned: set[str] = set()

    # ------------------------------------------------------------ public
    @property
    def disk_dir(self) -> Optional[Path]:
        """Folder of this encoder's entries, known after the first lookup."""
        if self.disk_root is None or self.fingerprint is None:
            return None
        return self.disk_root / self.fingerprint[:16]

    def embed(self, encoder: nn.Module, sam_inputs: Tensor,
              data_samples: Sequence[BaseDataElement],
              canvas_shape: tuple[int, int]) -> Tensor:
        """Return image embeddings, computing only those not cached.

        Args:
            encoder: SAM's frozen image encoder.
            sam_inputs: (B, 3, S, S) encoder inputs.
            data_samples: the B data samples; their metainfo forms the keys.
            canvas_shape: (H, W) of the batch before it was resized for SAM.

        Returns:
            (B, C, h, w) embeddings in the dtype of `sam_inputs`.
        """
        if self.fingerprint is None:
            self._open(encoder)
        keys = [self.key_for(sample.metainfo, canvas_shape) for sample in data_samples]
        checksums = input_checksums(sam_inputs, self._weights_for(sam_inputs))
        num_elements = sam_inputs[0].numel()

        embeddings: list[Optional[Tensor]] = [
            None if key is None else self._lookup(key, checksums[index], num_elements)
            for index, key in enumerate(keys)]

        missing = [index for index, embedding in enumerate(embeddings) if embedding is None]
        if missing:
            with torch.no_grad():
                computed = encoder(sam_inputs[missing]).to(self.storage_dtype)
            self.stats['computed'] += len(missing)
            for row, index in enumerate(missing):
                embeddings[index] = computed[row]
                if keys[index] is not None:
                    self._store(keys[index], computed[row], checksums[index])

        return torch.stack([embedding.to(sam_inputs.device) for embedding in embeddings]
                           ).to(sam_inputs.dtype)

    def key_for(self, metainfo: dict, canvas_shape: tuple[int, int]) -> Optional[str]:
        """Return the cache key of one image, or None when its metainfo has
        no readable image file."""
        path = metainfo.get(IMAGE_PATH)
        if not path:
            self._warn_once('no_path', f'An image without {IMAGE_PATH!r} in its metainfo '
                            'cannot be cached; its SAM embedding is computed every time. '
                            'Further images like it are counted, not logged.')
            self.stats['uncacheable'] += 1
            return None
        try:
            identity = self._file_identity(str(path))
        except OSError as err:
            self._warn_once('unreadable', f'SAM embedding of {path} is not cached: {err}. '
                            'Further unreadable images are counted, not logged.')
            self.stats['uncacheable'] += 1
            return None

        geometry = {name: _plain(metainfo[name]) for name in GEOMETRY_META_KEYS
                    if name in metainfo}
        return json.dumps({'image': identity, 'geometry': geometry,
                           'canvas': list(canvas_shape)}, sort_keys=True)

    def summary(self) -> str:
        """Describe hits, misses and storage since construction in one line."""
        counts = ', '.join(f'{name} {self.stats[name]}' for name in STAT_NAMES)
        where = f', disk folder {self.disk_dir}' if self.disk_dir else ''
        return (f'SAM embedding cache: {counts}; {len(self._memory)} entries '
                f'({self.memory_bytes / 2**20:.1f} MiB) in memory{where}')

    # ------------------------------------------------------------ setup
    def _open(self, encoder: nn.Module) -> None:
        """Fingerprint the encoder and prepare its disk folder.

        This runs at the first lookup rather than at construction, so that
        weights loaded later (`load_from`, resume) enter the fingerprint.
        """
        self.fingerprint = encoder_fingerprint(encoder, self.description)
        where = 'memory only'
        if self.disk_root is not None:
            self.disk_dir.mkdir(parents=True, exist_ok=True)
            record = {'fingerprint': self.fingerprint, 'encoder': self.description}
            self._write_atomically(self.disk_dir / FINGERPRINT_FILE,
                                   json.dumps(record, indent=2, default=str).encode())
            where = f'disk folder {self.disk_dir}'
            self._report_other_fingerprints()
        print_log(f'SAM embedding cache: up to {self.memory_budget / 2**20:.0f} MiB in memory, '
                  f'{where}, stored as {self.storage_dtype}', logger='current')

    def _report_other_fingerprints(self) -> None:
        others = [folder for folder in self.disk_root.iterdir()
                  if folder != self.disk_dir and (folder / FINGERPRINT_FILE).is_file()]
        if others:
            print_log(f'SAM embedding cache: {len(others)} folder(s) in {self.disk_root} '
                      'belong to another encoder checkpoint or input size and are not '
                      'used; delete them to free the space', logger='current')

    def _weights_for(self, sam_inputs: Tensor) -> Tensor:
        """Return the fixed (NUM_PROJECTIONS, 3, S, S) checksum weights."""
        shape = tuple(sam_inputs.shape[1:])
        index = (shape, sam_inputs.device)
        if index not in self._projection_weights:
            # Drawn on the CPU from a fixed seed, so every device and process
            # gets the same weights.
            generator = torch.Generator().manual_seed(0)
            weights = torch.randn((NUM_PROJECTIONS, *shape), generator=generator)
            self._projection_weights[index] = weights.to(sam_inputs.device)
        return self._projection_weights[index]

    def _file_identity(self, path: str) -> dict[str, Any]:
        status = os.stat(path)
        stat_identity = {'path': os.path.abspath(path), 'size': status.st_size,
                         'mtime_ns': status.st_mtime_ns}
        if self.key_by == KEY_BY_STAT:
            return stat_identity
        memo_key = tuple(stat_identity.values())
        if memo_key not in self._content_hashes:
            with open(path, 'rb') as file:
                self._content_hashes[memo_key] = hashlib.file_digest(file, 'sha256').hexdigest()
        return {'sha256': self._content_hashes[memo_key]}

    # ------------------------------------------------------------ lookup
    def _lookup(self, key: str, checksums: Tensor, num_elements: int) -> Optional[Tensor]:
        entry = self._memory.get(key)
        source = 'memory_hits'
        if entry is None and self.disk_dir is not None:
            entry = self._read(key)
            source = 'disk_hits'
        if entry is None:
            return None

        if not checksums_match(entry.checksums, checksums, num_elements):
            self.stats['checksum_mismatches'] += 1
            self._warn_once('mismatch', 'A cached SAM embedding was computed from other pixels '
                            'than this step gives for the same image and geometry, so it is '
                            'recomputed. The pipeline probably has a random step that the '
                            'metainfo does not record; add its key to meta_keys or remove '
                            'sam_embedding_cache. Further mismatches are counted, not logged.')
            self._forget(key)
            return None

        self.stats[source] += 1
        if source == 'disk_hits':
            self._remember(key, entry)
        return entry.embedding

    def _store(self, key: str, embedding: Tensor, checksums: Tensor) -> None:
        entry = CacheEntry(embedding.detach().to('cpu', copy=True).contiguous(), checksums)
        remembered = self._remember(key, entry)
        if self.disk_dir is not None:
            self._write(key, entry)
        elif not remembered:
            self.stats['not_stored'] += 1

    # ------------------------------------------------------------ memory
    def _remember(self, key: str, entry: CacheEntry) -> bool:
        """Keep an entry in memory if the budget allows; return whether it was kept."""
        self._forget(key)
        if self.memory_bytes + entry.num_bytes > self.memory_budget:
            after = ('are read from and written to disk only' if self.disk_dir is not None
                     else 'are computed every time; set disk_dir to keep them')
            self._warn_once('budget', f'SAM embedding cache: the memory budget of '
                            f'{self.memory_budget / 2**20:.0f} MiB is full after '
                            f'{len(self._memory)} embeddings; further embeddings {after}',
                            level=20)
            return False
        self._memory[key] = entry
        self.memory_bytes += entry.num_bytes
        return True

    def _forget(self, key: str) -> None:
        entry = self._memory.pop(key, None)
        if entry is not None:
            self.memory_bytes -= entry.num_bytes

    # ------------------------------------------------------------ disk
    def _entry_path(self, key: str) -> Path:
        name = hashlib.sha256(key.encode()).hexdigest()
        return self.disk_dir / name[:2] / f'{name}.pt'

    def _read(self, key: str) -> Optional[CacheEntry]:
        path = self._entry_path(key)
        if not path.is_file():
            return None
        try:
            record = torch.load(path, map_location='cpu', weights_only=True)
        except Exception as err:  # noqa: BLE001
            # A damaged file fails in pickle, zip or torch code with many
            # exception types. Recomputing the embedding replaces the entry.
            self._warn_once('read', f'SAM embedding cache: cannot read {path} ({err}); the '
                            'embedding is recomputed and the file rewritten. Further read '
                            'errors are counted, not logged.')
            self.stats['read_errors'] += 1
            return None
        if record.get('key') != key:
            # Another key under the same file name (a SHA-256 collision).
            return None
        return CacheEntry(record['embedding'], record['checksums'])

    def _write(self, key: str, entry: CacheEntry) -> None:
        path = self._entry_path(key)
        record = {'key': key, 'embedding': entry.embedding, 'checksums': entry.checksums}
        try:
            path.parent.mkdir(exist_ok=True)
            self._write_atomically(path, record)
        except OSError as err:
            self.stats['write_errors'] += 1
            self._warn_once('write', f'SAM embedding cache: cannot write {path} ({err}); '
                            'training goes on without it. Further write errors are '
                            'counted, not logged.')

    @staticmethod
    def _write_atomically(path: Path, content: Any) -> None:
        """Write bytes, or a record through `torch.save`, to a temporary file
        in the same folder and move it onto `path`."""
        handle, temporary = tempfile.mkstemp(dir=path.parent, prefix=f'.{path.name}.',
                                             suffix='.tmp')
        try:
            with os.fdopen(handle, 'wb') as file:
                if isinstance(content, bytes):
                    file.write(content)
                else:
                    torch.save(content, file)
            os.replace(temporary, path)
        except BaseException:
            Path(temporary).unlink(missing_ok=True)
            raise

    def _warn_once(self, topic: str, message: str, level: int = 30) -> None:
        if topic not in self._warned:
            self._warned.add(topic)
            print_log(message, logger='current', level=level)
