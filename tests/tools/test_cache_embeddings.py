"""tools/cache_embeddings.py fills the disk cache once per image."""
import pytest

from gsam_mm.errors import ConfigError

from ..conftest import REPO_ROOT, load_tool

cache_embeddings = load_tool('cache_embeddings')

DEMO_CONFIG = str(REPO_ROOT / 'configs' / 'gsam_tiny_demo.py')


def run_tool(work_dir, *extra):
    cache_embeddings.main([DEMO_CONFIG, '--no-finetune-sam', '--work-dir', str(work_dir),
                           '--device', 'cpu', '--splits', 'train', *extra])


def test_tool_writes_each_image_once(demo_data, tmp_path):
    options = ['--cfg-options',
               'model.sam_embedding_cache.disk_dir={work_dir}/sam_embeddings',
               f'train_dataloader.dataset.dataset.data_root={demo_data}/']
    run_tool(tmp_path, *options)

    [folder] = (tmp_path / 'sam_embeddings').iterdir()
    # The demo repeats its three photos ten times; the tool embeds each once.
    assert len(list(folder.glob('*/*.pt'))) == 3
    assert (folder / 'fingerprint.json').is_file()

    written = {path: path.stat().st_mtime_ns for path in folder.glob('*/*.pt')}

    run_tool(tmp_path, *options)
    rewritten = {path: path.stat().st_mtime_ns for path in folder.glob('*/*.pt')}
    assert rewritten == written


def test_tool_needs_disk_dir(tmp_path):
    with pytest.raises(ConfigError, match='no model.sam_embedding_cache.disk_dir'):
        run_tool(tmp_path, '--cfg-options', 'model.sam_embedding_cache.disk_dir=None')


def test_tool_rejects_trained_encoder(tmp_path):
    with pytest.raises(ConfigError, match='finetune_sam is set'):
        cache_embeddings.main([DEMO_CONFIG, '--work-dir', str(tmp_path), '--cfg-options',
                               'model.sam_embedding_cache.disk_dir=/unused'])
