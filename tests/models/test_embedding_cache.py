"""SAM embedding cache: same losses as without it, keys, invalidation,
memory budget and disk entries."""
import multiprocessing
from pathlib import Path

import pytest
import torch
from mmdet.registry import MODELS

import gsam_mm  # noqa: F401
from gsam_mm.errors import ConfigError
from gsam_mm.fields import LOSS_MASK, LOSS_MASK_IOU
from gsam_mm.models.embedding_cache import (SamEmbeddingCache, describe_sam,
                                             resolve_work_dir)
from gsam_mm.models.sam import build_sam

from ..conftest import tiny_model_config
from .test_grounding_sam import IMAGE_SIZE, make_sample

# The tiny encoder's embedding (64 channels, 8 x 8) in bfloat16.
EMBEDDING_BYTES = 64 * 8 * 8 * 2

# Measured with these weights and this batch, bfloat16 storage moved the
# mask loss by 2.5e-7 and the IoU loss by 6.7e-4 relative. Other random SAM
# weights moved them by 3.4e-3 and 2.5, so these tolerances tell the two apart.
LOSS_RTOL = {LOSS_MASK: 1e-5, LOSS_MASK_IOU: 2e-3}
# bfloat16 keeps 8 significant bits, so rounding errs by at most 2**-8 relative.
EMBEDDING_RTOL = 2**-8


def image_files(folder: Path, count: int) -> list[str]:
    paths = []
    for index in range(count):
        path = folder / f'image_{index}.jpg'
        path.write_bytes(f'image {index}'.encode())
        paths.append(str(path))
    return paths


def cached_batch(folder: Path, count: int = 2, seed: int = 1):
    """Random inputs with samples that name real files, so the cache can key them."""
    torch.manual_seed(seed)
    inputs = torch.randn(count, 3, IMAGE_SIZE, IMAGE_SIZE)
    samples = []
    for index, path in enumerate(image_files(folder, count)):
        sample = make_sample((IMAGE_SIZE, IMAGE_SIZE), [[10, 10, 60, 50], [30, 40, 90, 120]],
                             [0, 1])
        sample.set_metainfo({'img_path': path, 'flip': False})
        samples.append(sample)
    return inputs, samples


def build_model(seed: int = 0, **changes):
    torch.manual_seed(seed)
    return MODELS.build(tiny_model_config(IMAGE_SIZE, **changes))


def build_encoder(seed: int = 0, image_size: int = IMAGE_SIZE, checkpoint=None):
    torch.manual_seed(seed)
    return build_sam('tiny', checkpoint=checkpoint, image_size=image_size).image_encoder.eval()


def build_cache(encoder, checkpoint=None, **settings) -> SamEmbeddingCache:
    """A cache described as the model would describe this encoder."""
    sam_settings = dict(backbone='tiny', checkpoint=checkpoint)
    return SamEmbeddingCache(**settings, description=describe_sam(sam_settings,
                                                                  encoder.img_size))


def embed(cache, encoder, inputs, samples):
    """Embed a batch of inputs already at the encoder's input size."""
    return cache.embed(encoder, inputs, samples, tuple(inputs.shape[-2:]))


def plain_embeddings(encoder, inputs):
    with torch.no_grad():
        return encoder(inputs)


def test_cached_losses_match_uncached(tmp_path):
    inputs, samples = cached_batch(tmp_path)
    plain = build_model()
    cached = build_model(sam_embedding_cache=dict(memory_mb=16))
    plain.train()
    cached.train()

    torch.manual_seed(5)
    expected = plain.loss(inputs, samples)
    torch.manual_seed(5)
    first = cached.loss(inputs, samples)
    torch.manual_seed(5)
    second = cached.loss(inputs, samples)

    for name, rtol in LOSS_RTOL.items():
        torch.testing.assert_close(first[name], expected[name], rtol=rtol, atol=0)
        assert second[name] == first[name]
    assert cached.embedding_cache.stats['computed'] == 2
    assert cached.embedding_cache.stats['memory_hits'] == 2


def test_cached_loss_trains_mask_decoder(tmp_path):
    inputs, samples = cached_batch(tmp_path)
    model = build_model(sam_embedding_cache=dict(memory_mb=16))
    model.train()
    for _ in range(2):
        model.zero_grad()
        losses = model.loss(inputs, samples)
        (losses[LOSS_MASK] + losses[LOSS_MASK_IOU]).backward()

    assert model.sam.mask_decoder.iou_prediction_head.layers[0].weight.grad is not None
    assert all(p.grad is None for p in model.sam.image_encoder.parameters())


def test_predict_uses_cache(tmp_path):
    inputs, samples = cached_batch(tmp_path)
    model = build_model(sam_embedding_cache=dict(memory_mb=16))
    model.eval()
    with torch.no_grad():
        first = model.predict(inputs, samples)[0].pred_instances.masks.clone()
        second = model.predict(inputs, samples)[0].pred_instances.masks

    assert torch.equal(first, second)
    assert model.embedding_cache.stats['memory_hits'] == 2


def test_finetune_sam_turns_cache_off():
    model = build_model(finetune_sam=True, sam_embedding_cache=dict(memory_mb=16))
    assert model.embedding_cache is None


def test_cache_kept_when_encoder_gets_no_gradient():
    """Without mask losses nothing trains the encoder, even with finetune_sam."""
    model = build_model(finetune_sam=True, return_masks=False,
                        sam_embedding_cache=dict(memory_mb=16))

    assert not model.sam_encoder_trains
    assert model.embedding_cache is not None
    assert not any(p.requires_grad for p in model.sam.image_encoder.parameters())


def test_checkpoint_change_invalidates(tmp_path):
    inputs, samples = cached_batch(tmp_path)
    first_checkpoint = tmp_path / 'sam_a.pth'
    second_checkpoint = tmp_path / 'sam_b.pth'
    torch.manual_seed(10)
    torch.save(build_sam('tiny', image_size=IMAGE_SIZE).state_dict(), first_checkpoint)
    torch.manual_seed(11)
    torch.save(build_sam('tiny', image_size=IMAGE_SIZE).state_dict(), second_checkpoint)
    disk_dir = str(tmp_path / 'cache')

    def encoder_and_cache(checkpoint):
        encoder = build_encoder(checkpoint=str(checkpoint))
        return encoder, build_cache(encoder, checkpoint=str(checkpoint), memory_mb=16,
                                    disk_dir=disk_dir)

    writer_encoder, writer = encoder_and_cache(first_checkpoint)
    embed(writer, writer_encoder, inputs, samples)
    other_encoder, other = encoder_and_cache(second_checkpoint)
    other_embeddings = embed(other, other_encoder, inputs, samples)
    reader_encoder, reader = encoder_and_cache(first_checkpoint)
    embed(reader, reader_encoder, inputs, samples)

    assert writer.stats['computed'] == 2
    assert other.stats['disk_hits'] == 0
    assert other.stats['computed'] == 2
    assert other.disk_dir != writer.disk_dir
    torch.testing.assert_close(other_embeddings, plain_embeddings(other_encoder, inputs),
                               rtol=EMBEDDING_RTOL, atol=1e-6)
    assert reader.stats['disk_hits'] == 2
    assert reader.stats['computed'] == 0


def test_weights_loaded_later_change_fingerprint(tmp_path):
    """`load_from` replaces weights after the model is built, so the cache
    fingerprints the encoder at its first lookup."""
    inputs, samples = cached_batch(tmp_path)
    disk_dir = str(tmp_path / 'cache')
    encoder = build_encoder()
    writer = build_cache(encoder, memory_mb=16, disk_dir=disk_dir)
    embed(writer, encoder, inputs, samples)

    reader = build_cache(encoder, memory_mb=16, disk_dir=disk_dir)
    with torch.no_grad():
        for parameter in encoder.parameters():
            parameter.add_(0.01)
    embed(reader, encoder, inputs, samples)

    assert reader.stats['disk_hits'] == 0
    assert reader.disk_dir != writer.disk_dir


def test_input_size_change_invalidates(tmp_path):
    disk_dir = str(tmp_path / 'cache')
    small_encoder = build_encoder(image_size=64)
    large_encoder = build_encoder(image_size=IMAGE_SIZE)
    small = build_cache(small_encoder, memory_mb=16, disk_dir=disk_dir)
    large = build_cache(large_encoder, memory_mb=16, disk_dir=disk_dir)
    inputs, samples = cached_batch(tmp_path)

    embed(small, small_encoder, inputs[..., :64, :64], samples)
    embed(large, large_encoder, inputs, samples)

    assert large.stats['disk_hits'] == 0
    assert large.disk_dir != small.disk_dir


def test_memory_budget_spills_to_disk(tmp_path):
    inputs, samples = cached_batch(tmp_path, count=3)
    encoder = build_encoder()
    cache = build_cache(encoder, memory_mb=1.5 * EMBEDDING_BYTES / 2**20,
                        disk_dir=str(tmp_path / 'cache'))

    first = embed(cache, encoder, inputs, samples)
    assert len(cache._memory) == 1
    assert cache.memory_bytes == EMBEDDING_BYTES
    assert len(list(cache.disk_dir.glob('*/*.pt'))) == 3

    second = embed(cache, encoder, inputs, samples)
    assert cache.stats['memory_hits'] == 1
    assert cache.stats['disk_hits'] == 2
    assert cache.stats['computed'] == 3
    assert torch.equal(first, second)


def test_memory_only_cache_recomputes_over_budget(tmp_path):
    inputs, samples = cached_batch(tmp_path, count=3)
    encoder = build_encoder()
    cache = build_cache(encoder, memory_mb=1.5 * EMBEDDING_BYTES / 2**20)

    embed(cache, encoder, inputs, samples)
    embed(cache, encoder, inputs, samples)

    assert cache.stats['memory_hits'] == 1
    assert cache.stats['computed'] == 5
    assert cache.stats['not_stored'] == 4


def test_flip_is_part_of_key(tmp_path):
    inputs, samples = cached_batch(tmp_path, count=1)
    encoder = build_encoder()
    cache = build_cache(encoder, memory_mb=16)
    embed(cache, encoder, inputs, samples)

    samples[0].set_metainfo({'flip': True, 'flip_direction': 'horizontal'})
    embed(cache, encoder, inputs.flip(-1), samples)

    assert cache.stats['computed'] == 2
    assert cache.stats['memory_hits'] == 0


@pytest.mark.parametrize('change', ['flip', 'brightness', 'shift'])
def test_changed_pixels_not_served(tmp_path, change):
    """A random step that leaves the metainfo unchanged gives the same key;
    the input checksum must reject the stored embedding."""
    inputs, samples = cached_batch(tmp_path, count=1)
    encoder = build_encoder()
    cache = build_cache(encoder, memory_mb=16)
    embed(cache, encoder, inputs, samples)

    changed = {'flip': inputs.flip(-1),
               'brightness': inputs + 1 / 58,
               'shift': inputs.roll(1, dims=-1)}[change]
    result = embed(cache, encoder, changed, samples)

    assert cache.stats['checksum_mismatches'] == 1
    assert cache.stats['memory_hits'] == 0
    torch.testing.assert_close(result, plain_embeddings(encoder, changed),
                               rtol=EMBEDDING_RTOL, atol=1e-6)


def test_same_pixels_pass_checksum(tmp_path):
    inputs, samples = cached_batch(tmp_path, count=2)
    encoder = build_encoder()
    cache = build_cache(encoder, memory_mb=16)
    embed(cache, encoder, inputs, samples)
    # A copy whose values pass through another memory layout.
    embed(cache, encoder, inputs.permute(0, 2, 3, 1).contiguous().permute(0, 3, 1, 2), samples)

    assert cache.stats['checksum_mismatches'] == 0
    assert cache.stats['memory_hits'] == 2


def test_sample_without_path_is_computed(tmp_path):
    inputs, samples = cached_batch(tmp_path, count=1)
    samples[0].set_metainfo({'img_path': None})
    encoder = build_encoder()
    cache = build_cache(encoder, memory_mb=16)

    embed(cache, encoder, inputs, samples)
    embed(cache, encoder, inputs, samples)

    assert cache.stats['computed'] == 2
    assert cache.stats['uncacheable'] == 2


def test_modified_image_file_is_new_key(tmp_path):
    inputs, samples = cached_batch(tmp_path, count=1)
    encoder = build_encoder()
    cache = build_cache(encoder, memory_mb=16)
    embed(cache, encoder, inputs, samples)

    Path(samples[0].img_path).write_bytes(b'edited image, another size')
    embed(cache, encoder, inputs, samples)

    assert cache.stats['computed'] == 2


def test_content_key_survives_copy(tmp_path):
    inputs, samples = cached_batch(tmp_path, count=1)
    encoder = build_encoder()
    cache = build_cache(encoder, memory_mb=16, key_by='content')
    embed(cache, encoder, inputs, samples)

    copy = tmp_path / 'copied.jpg'
    copy.write_bytes(Path(samples[0].img_path).read_bytes())
    samples[0].set_metainfo({'img_path': str(copy)})
    embed(cache, encoder, inputs, samples)

    assert cache.stats['memory_hits'] == 1


def test_processes_share_disk_entries(tmp_path):
    """Two caches on one folder stand for two ranks: each writes what it
    computes, reads the other's entries, and no temporary file remains."""
    inputs, samples = cached_batch(tmp_path, count=2)
    encoder = build_encoder()
    rank_0 = build_cache(encoder, memory_mb=16, disk_dir=str(tmp_path / 'cache'))
    rank_1 = build_cache(encoder, memory_mb=16, disk_dir=str(tmp_path / 'cache'))

    embed(rank_0, encoder, inputs[:1], samples[:1])
    embed(rank_1, encoder, inputs[1:], samples[1:])
    embed(rank_1, encoder, inputs, samples)

    assert rank_1.stats['disk_hits'] == 1
    assert rank_1.stats['memory_hits'] == 1
    folder = rank_0.disk_dir
    assert folder == rank_1.disk_dir
    assert len(list(folder.glob('*/*.pt'))) == 2
    assert list(folder.rglob('*.tmp')) == []
    assert (folder / 'fingerprint.json').is_file()


def test_corrupt_disk_entry_is_recomputed(tmp_path):
    inputs, samples = cached_batch(tmp_path, count=1)
    encoder = build_encoder()
    writer = build_cache(encoder, memory_mb=16, disk_dir=str(tmp_path / 'cache'))
    embed(writer, encoder, inputs, samples)
    [entry] = writer.disk_dir.glob('*/*.pt')
    entry.write_bytes(b'truncated')

    reader = build_cache(encoder, memory_mb=16, disk_dir=str(tmp_path / 'cache'))
    embed(reader, encoder, inputs, samples)

    assert reader.stats['read_errors'] == 1
    assert 'read_errors 1' in reader.summary()
    assert reader.stats['computed'] == 1
    assert len(list(reader.disk_dir.glob('*/*.pt'))) == 1


@pytest.mark.parametrize('settings, message', [
    (dict(memory_mb=-1), 'memory_mb must be >= 0'),
    (dict(dtype='int8'), "dtype must be one of.*'int8'"),
    (dict(key_by='name'), "key_by must be.*'name'"),
    (dict(disk_dir='{work_dir}/sam'), 'still contains {work_dir}'),
])
def test_invalid_settings_rejected(settings, message):
    with pytest.raises(ConfigError, match=message):
        SamEmbeddingCache(**settings)


def test_work_dir_placeholder_resolved():
    assert resolve_work_dir('{work_dir}/sam', 'work_dirs/run') == 'work_dirs/run/sam'
    assert resolve_work_dir('/data/sam', 'work_dirs/run') == '/data/sam'
    assert resolve_work_dir(None, 'work_dirs/run') is None


def write_entries(folder: Path, writer: int) -> None:
    """Write the same entry files as the other writer, with other contents."""
    for _ in range(5):
        for index in range(20):
            record = {'key': f'writer {writer}',
                      'embedding': torch.full((64 * (writer + 1),), float(writer))}
            SamEmbeddingCache._write_atomically(folder / f'{index}.pt', record)


def check_whole_entry(path: Path) -> None:
    record = torch.load(path, weights_only=True)
    writer = int(record['key'].split()[-1])
    assert torch.equal(record['embedding'], torch.full((64 * (writer + 1),), float(writer)))


def test_concurrent_writers_leave_whole_files(tmp_path):
    """Two processes replace the same files while this one reads them:
    every read gets one writer's whole record."""
    context = multiprocessing.get_context('fork')
    writers = [context.Process(target=write_entries, args=(tmp_path, writer))
               for writer in (0, 1)]
    for writer in writers:
        writer.start()
    while any(writer.is_alive() for writer in writers):
        for path in tmp_path.glob('*.pt'):
            check_whole_entry(path)
    for writer in writers:
        writer.join()

    assert [writer.exitcode for writer in writers] == [0, 0]
    entries = list(tmp_path.glob('*.pt'))
    assert len(entries) == 20
    for path in entries:
        check_whole_entry(path)
    assert list(tmp_path.glob('*.tmp')) == []


def test_cache_under_bfloat16_autocast(tmp_path):
    inputs, samples = cached_batch(tmp_path, count=2)
    encoder = build_encoder()
    cache = build_cache(encoder, memory_mb=16)

    with torch.autocast('cpu', dtype=torch.bfloat16):
        first = embed(cache, encoder, inputs, samples)
        second = embed(cache, encoder, inputs, samples)

    assert first.dtype == inputs.dtype
    assert torch.equal(first, second)
    assert cache.stats['memory_hits'] == 2
