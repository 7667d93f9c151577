"""What only a CUDA GPU can check: mmcv's deformable-attention kernel against
the packaged PyTorch path, SAM's fused attention and the embedding cache on
CUDA tensors, and a mixed-precision training step with the fused optimizer.

Skipped without CUDA. `tools/gpu_check.sh` runs them on a GPU machine.
"""
import pytest
import torch
from mmdet.registry import MODELS
from mmengine.config import Config
from mmengine.optim import build_optim_wrapper

import gsam_mm  # noqa: F401
from gsam_mm.engine.runner_setup import select_optim_wrapper
from gsam_mm.fields import LOSS_MASK
from gsam_mm.models import deformable_attention
from gsam_mm.models.deformable_attention import (deformable_attention_kernel,
                                                 install_deformable_attention,
                                                 mmcv_cuda_kernel_available)
from gsam_mm.models.sam import build_sam
from gsam_mm.models.sam_attention import SdpaAttention

from ..conftest import tiny_model_config
from ..models.test_deformable_attention import attention_inputs
from ..models.test_embedding_cache import LOSS_RTOL, cached_batch
from ..models.test_grounding_sam import IMAGE_SIZE, make_sample
from ..models.test_sam_attention import randomized_attention

pytestmark = pytest.mark.skipif(not torch.cuda.is_available(), reason='needs a CUDA GPU')

# Grounding DINO's first decoder layer at 800 x 1333: 4 levels of the
# stride 8 to 64 feature maps, 8 heads of 32 channels, 900 queries, 4 points.
DINO_SHAPES = [(100, 167), (50, 84), (25, 42), (13, 21)]


@pytest.fixture(scope='module')
def pytorch_path():
    """The packaged pure-PyTorch function, with the router installed."""
    install_deformable_attention()
    if not mmcv_cuda_kernel_available():
        pytest.fail('the installed mmcv has no CUDA kernels: rebuild it with FORCE_CUDA=1')
    return deformable_attention._pytorch_function


def dino_sized_inputs(batch: int = 2) -> list[torch.Tensor]:
    generator = torch.Generator().manual_seed(0)
    keys = sum(height * width for height, width in DINO_SHAPES)
    levels, heads, channels, queries, points = len(DINO_SHAPES), 8, 32, 900, 4
    weights = torch.rand(batch, queries, heads, levels, points, generator=generator)
    return [torch.randn(batch, keys, heads, channels, generator=generator).cuda(),
            torch.tensor(DINO_SHAPES).cuda(),
            torch.rand(batch, queries, heads, levels, points, 2, generator=generator).cuda(),
            (weights / weights.sum((-2, -1), keepdim=True)).cuda()]


def forward_and_gradients(function, inputs: list[torch.Tensor]) -> list[torch.Tensor]:
    """Return the output and the gradients of its squared sum with respect
    to the value, the sampling locations and the attention weights."""
    leaves = [tensor.detach().clone().requires_grad_(tensor.is_floating_point())
              for tensor in inputs]
    output = function(*leaves)
    output.square().sum().backward()
    return [output.detach()] + [leaves[index].grad for index in (0, 2, 3)]


@pytest.mark.parametrize('size', ['small', 'dino-sized'])
def test_kernel_matches_pytorch_path(pytorch_path, size):
    inputs = list(attention_inputs('cuda')) if size == 'small' else dino_sized_inputs()

    kernel = forward_and_gradients(deformable_attention_kernel, inputs)
    reference = forward_and_gradients(pytorch_path, inputs)

    names = ('output', 'value grad', 'location grad', 'weight grad')
    for name, result, expected in zip(names, kernel, reference):
        torch.testing.assert_close(result, expected, atol=1e-4, rtol=1e-4,
                                   msg=lambda text, name=name: f'{name}: {text}')


def test_kernel_under_bfloat16_autocast(pytorch_path):
    value, shapes, locations, weights = (tensor.bfloat16() if tensor.is_floating_point()
                                         else tensor for tensor in dino_sized_inputs())
    # The PyTorch path on the same bfloat16 inputs, computed in float32 as the
    # kernel computes them. Rounding the sampling locations to bfloat16 moves
    # points by up to a third of a pixel on the 167-wide level, so the float32
    # inputs would give other values.
    expected = pytorch_path(value.float(), shapes, locations.float(), weights.float())

    with torch.autocast('cuda', dtype=torch.bfloat16):
        result = deformable_attention.multi_scale_deformable_attention(
            value, shapes, locations, weights)

    assert result.dtype == torch.bfloat16
    # Only the rounding of the output to bfloat16 differs, by at most 2**-8 relative.
    torch.testing.assert_close(result.float(), expected, atol=1e-2, rtol=1e-2)


def test_model_losses_kernel_match_pytorch(pytorch_path, monkeypatch):
    torch.manual_seed(0)
    model = MODELS.build(tiny_model_config(IMAGE_SIZE)).cuda().eval()
    samples = [make_sample((IMAGE_SIZE, 96), [[10, 10, 60, 50], [30, 40, 90, 120]], [0, 1])
               .to('cuda')]
    inputs = torch.randn(1, 3, IMAGE_SIZE, IMAGE_SIZE, device='cuda')

    def losses() -> dict[str, torch.Tensor]:
        model.return_masks = False
        with torch.no_grad():
            return model.loss(inputs, samples)

    with_kernel = losses()
    monkeypatch.setattr(deformable_attention, 'mmcv_cuda_kernel_available', lambda: False)
    with_pytorch = losses()

    for name, value in with_pytorch.items():
        torch.testing.assert_close(with_kernel[name], value, atol=1e-4, rtol=1e-3,
                                   msg=lambda text, name=name: f'{name}: {text}')


def test_sdpa_attention_matches_original_on_cuda():
    original = randomized_attention(dim=64, num_heads=4, grid=14).cuda()
    tokens = torch.randn(2, 14, 14, 64, device='cuda')
    fused = SdpaAttention(original)
    with torch.no_grad():
        torch.testing.assert_close(fused(tokens), original(tokens), atol=1e-4, rtol=1e-4)
        with torch.autocast('cuda', dtype=torch.bfloat16):
            result, expected = fused(tokens), original(tokens)
    assert result.dtype == torch.bfloat16
    torch.testing.assert_close(result.float(), expected.float(), atol=3e-2, rtol=0)


def test_encoder_sdpa_matches_original_on_cuda():
    torch.manual_seed(0)
    original = build_sam('tiny', image_size=64, attention='original').image_encoder
    with torch.no_grad():
        for name, parameter in original.named_parameters():
            if 'rel_pos' in name:
                parameter.normal_()  # zero tables would hide a wrong bias
    fused = build_sam('tiny', image_size=64, attention='sdpa').image_encoder
    fused.load_state_dict(original.state_dict())
    images = torch.randn(2, 3, 64, 64, device='cuda')

    with torch.no_grad():
        torch.testing.assert_close(fused.cuda()(images), original.cuda()(images),
                                   atol=1e-4, rtol=1e-4)


def test_cached_losses_match_uncached_on_cuda(tmp_path):
    inputs, samples = cached_batch(tmp_path)
    inputs, samples = inputs.cuda(), [sample.to('cuda') for sample in samples]
    torch.manual_seed(0)
    plain = MODELS.build(tiny_model_config(IMAGE_SIZE)).cuda().train()
    torch.manual_seed(0)
    cached = MODELS.build(tiny_model_config(IMAGE_SIZE, sam_embedding_cache=dict(memory_mb=16)))
    cached.cuda().train()

    losses = []
    for model in (plain, cached, cached):
        torch.manual_seed(5)
        losses.append(model.loss(inputs, samples))

    expected, first, second = losses
    # Not measured yet: an allowance ten times the CPU test's, since the
    # embeddings that bfloat16 rounds come from other kernels here.
    torch.testing.assert_close(first[LOSS_MASK], expected[LOSS_MASK],
                               rtol=max(LOSS_RTOL[LOSS_MASK], 1e-4), atol=0)
    assert torch.equal(second[LOSS_MASK], first[LOSS_MASK])
    assert cached.embedding_cache.stats['memory_hits'] == 2


def test_mixed_precision_step_with_fused_adamw():
    """The optimizer wrapper that tools/train.py selects on CUDA trains the
    tiny model: finite losses, and every trainable part moves."""
    cfg = Config(dict(optim_wrapper=dict(
        type='OptimWrapper', optimizer=dict(type='AdamW', lr=1e-3, weight_decay=1e-4),
        clip_grad=dict(max_norm=0.1, norm_type=2))))
    select_optim_wrapper(cfg, amp_requested=False)
    torch.manual_seed(0)
    model = MODELS.build(tiny_model_config(IMAGE_SIZE, return_masks=True)).cuda()
    optim_wrapper = build_optim_wrapper(model, cfg.optim_wrapper)
    before = {name: parameter.detach().clone()
              for name, parameter in model.named_parameters() if parameter.requires_grad}
    batch = dict(
        inputs=[torch.randint(0, 256, (3, IMAGE_SIZE, IMAGE_SIZE), dtype=torch.uint8)],
        data_samples=[make_sample((IMAGE_SIZE, 96), [[10, 10, 60, 50], [30, 40, 90, 120]],
                                  [0, 1])])

    model.train()
    for _ in range(2):
        log_vars = model.train_step(batch, optim_wrapper)

    assert type(optim_wrapper).__name__ == 'AmpOptimWrapper'
    assert optim_wrapper.cast_dtype in (torch.bfloat16, torch.float16)
    assert optim_wrapper.optimizer.defaults['fused'] is True
    for name, value in log_vars.items():
        assert torch.isfinite(torch.as_tensor(value)), name
    for prefix in ('dino.backbone', 'dino.transformer', 'sam.mask_decoder'):
        moved = [name for name, parameter in model.named_parameters()
                 if name.startswith(prefix) and name in before
                 and not torch.equal(parameter, before[name])]
        assert moved, f'no parameter of {prefix} changed'
