"""tools/fetch_demo_data.py against a local stand-in for labelme's sdist (no network)."""
import hashlib
import importlib.util
import io
import json
import tarfile
from pathlib import Path

import pytest

TOOL_PATH = Path(__file__).resolve().parents[2] / 'tools' / 'fetch_demo_data.py'


@pytest.fixture(scope='module')
def tool():
    spec = importlib.util.spec_from_file_location('fetch_demo_data', TOOL_PATH)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def add_file(archive: tarfile.TarFile, name: str, data: bytes) -> None:
    info = tarfile.TarInfo(name)
    info.size = len(data)
    archive.addfile(info, io.BytesIO(data))


def make_sdist(path: Path, tool, extra_members: tuple = ()) -> str:
    """Write a small sdist with the demo folder layout; return its SHA-256."""
    annotations = json.dumps({'images': [], 'annotations': [], 'categories': []}).encode()
    with tarfile.open(path, 'w:gz') as archive:
        add_file(archive, 'labelme-6.3.1/README.md', b'readme')
        add_file(archive, tool.DATASET_PREFIX + 'annotations.json', annotations)
        add_file(archive, tool.DATASET_PREFIX + 'JPEGImages/2011_000003.jpg', b'jpeg bytes')
        for member in extra_members:
            archive.addfile(member)
    return hashlib.sha256(path.read_bytes()).hexdigest()


class FakeDownload:
    """Copies a prepared sdist into the download folder and counts the calls."""

    def __init__(self, source: Path, tool) -> None:
        self.source = source
        self.tool = tool
        self.calls = 0

    def __call__(self, download_dir: Path) -> Path:
        self.calls += 1
        target = download_dir / self.tool.SDIST_NAME
        target.write_bytes(self.source.read_bytes())
        return target


def test_extracts_demo_folder(tmp_path, tool):
    digest = make_sdist(tmp_path / 'source.tar.gz', tool)
    download = FakeDownload(tmp_path / 'source.tar.gz', tool)
    out_dir = tmp_path / 'data' / 'labelme_coco'

    tool.fetch_demo_data(out_dir, tmp_path / 'cache', expected_sha256=digest, download=download)

    assert (out_dir / 'annotations.json').is_file()
    assert (out_dir / 'JPEGImages' / '2011_000003.jpg').read_bytes() == b'jpeg bytes'
    assert not (out_dir / 'README.md').exists()
    assert (tmp_path / 'cache' / tool.SDIST_NAME).is_file()
    assert tool.is_intact(out_dir)


def test_second_run_does_nothing(tmp_path, tool):
    digest = make_sdist(tmp_path / 'source.tar.gz', tool)
    download = FakeDownload(tmp_path / 'source.tar.gz', tool)
    out_dir = tmp_path / 'labelme_coco'
    tool.fetch_demo_data(out_dir, tmp_path / 'cache', expected_sha256=digest, download=download)
    annotation_mtime = (out_dir / 'annotations.json').stat().st_mtime_ns

    tool.fetch_demo_data(out_dir, tmp_path / 'cache', expected_sha256=digest, download=download)

    assert download.calls == 1
    assert (out_dir / 'annotations.json').stat().st_mtime_ns == annotation_mtime


def test_cached_sdist_is_reused(tmp_path, tool):
    digest = make_sdist(tmp_path / 'source.tar.gz', tool)
    download = FakeDownload(tmp_path / 'source.tar.gz', tool)
    tool.fetch_demo_data(tmp_path / 'first', tmp_path / 'cache', expected_sha256=digest,
                         download=download)

    tool.fetch_demo_data(tmp_path / 'second', tmp_path / 'cache', expected_sha256=digest,
                         download=download)

    assert download.calls == 1
    assert (tmp_path / 'second' / 'annotations.json').is_file()


def test_checksum_mismatch_caches_and_extracts_nothing(tmp_path, tool):
    make_sdist(tmp_path / 'source.tar.gz', tool)
    download = FakeDownload(tmp_path / 'source.tar.gz', tool)
    out_dir = tmp_path / 'labelme_coco'

    with pytest.raises(tool.FetchError, match='has SHA-256 .* expected 0000'):
        tool.fetch_demo_data(out_dir, tmp_path / 'cache', expected_sha256='0' * 64,
                             download=download)

    assert not out_dir.exists()
    assert list((tmp_path / 'cache').iterdir()) == []


def test_changed_file_is_not_intact(tmp_path, tool):
    digest = make_sdist(tmp_path / 'source.tar.gz', tool)
    download = FakeDownload(tmp_path / 'source.tar.gz', tool)
    out_dir = tmp_path / 'labelme_coco'
    tool.fetch_demo_data(out_dir, tmp_path / 'cache', expected_sha256=digest, download=download)
    (out_dir / 'annotations.json').write_text('{}')

    assert not tool.is_intact(out_dir)
    with pytest.raises(tool.FetchError, match='does not hold the intact demo data'):
        tool.fetch_demo_data(out_dir, tmp_path / 'cache', expected_sha256=digest,
                             download=download)


def test_link_member_is_rejected(tmp_path, tool):
    link = tarfile.TarInfo(tool.DATASET_PREFIX + 'JPEGImages/link.jpg')
    link.type = tarfile.SYMTYPE
    link.linkname = '/etc/passwd'
    digest = make_sdist(tmp_path / 'source.tar.gz', tool, extra_members=(link,))
    download = FakeDownload(tmp_path / 'source.tar.gz', tool)
    out_dir = tmp_path / 'labelme_coco'

    with pytest.raises(tool.FetchError, match='is not a plain file'):
        tool.fetch_demo_data(out_dir, tmp_path / 'cache', expected_sha256=digest,
                             download=download)

    assert not out_dir.exists()
    assert [path.name for path in tmp_path.iterdir() if path.name.startswith('.labelme')] == []
