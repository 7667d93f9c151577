"""EmbeddingCacheLogHook inside a real, tiny MMEngine Runner (see toy_runner.py)."""
from mmdet.registry import HOOKS

from gsam_mm.engine.hooks import EmbeddingCacheLogHook
from gsam_mm.models.embedding_cache import SamEmbeddingCache


def checkpoint_hook_cfg() -> dict:
    return dict(type='EpochCheckpointHook', interval=1)


def test_hook_builds_from_registry():
    assert isinstance(HOOKS.build(dict(type='EmbeddingCacheLogHook')), EmbeddingCacheLogHook)


def test_hook_logs_cache_counts_each_epoch(tmp_path, build_runner):
    runner = build_runner(tmp_path, checkpoint_hook_cfg(), max_epochs=2,
                          custom_hooks=(EmbeddingCacheLogHook(),))
    cache = SamEmbeddingCache(memory_mb=1)
    cache.stats.update(memory_hits=7, computed=3)
    runner.model.embedding_cache = cache

    runner.train()

    cache_lines = [message for message in runner.log_collector.messages
                   if message.startswith('SAM embedding cache: memory_hits 7, disk_hits 0, '
                                         'computed 3, checksum_mismatches 0')]
    for moment in ('after training epoch 1', 'after training epoch 2', 'after validation'):
        assert any(line.endswith(f'({moment})') for line in cache_lines), moment


def test_hook_silent_without_cache(tmp_path, build_runner):
    runner = build_runner(tmp_path, checkpoint_hook_cfg(), max_epochs=1,
                          custom_hooks=(EmbeddingCacheLogHook(),))

    runner.train()

    assert not runner.log_collector.contains('SAM embedding cache')
