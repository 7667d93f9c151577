"""Routing of Grounding DINO's deformable attention to mmcv's CUDA kernel.

No GPU is needed: CPU tensors must give the packaged function's exact
results, and CUDA tensors are FakeTensors, which carry a CUDA device without
one being present. mmcv's kernel is replaced by a recorder there, because a
CPU-only mmcv build has no CUDA kernel to run.
"""
import importlib

import pytest
import torch
from mmcv.ops.multi_scale_deform_attn import (MultiScaleDeformableAttnFunction,
                                              multi_scale_deformable_attn_pytorch)
from mmdet.registry import MODELS
from torch._subclasses.fake_tensor import FakeTensorMode

from gsam_mm.models import deformable_attention
from gsam_mm.models.deformable_attention import (GROUNDING_DINO_ATTENTION_MODULE,
                                                 IM2COL_STEP, PYTORCH_FUNCTION_NAME,
                                                 deformable_attention_kernel,
                                                 install_deformable_attention,
                                                 level_start_index,
                                                 multi_scale_deformable_attention)

from ..conftest import tiny_model_config

BATCH, HEADS, CHANNELS, QUERIES, POINTS = 2, 2, 8, 5, 4
SPATIAL_SHAPES = [(8, 8), (4, 4), (2, 3)]


def attention_inputs(device: str = 'cpu', dtype: torch.dtype = torch.float32) -> tuple:
    """Return (value, spatial_shapes, sampling_locations, attention_weights)."""
    generator = torch.Generator().manual_seed(0)
    levels = len(SPATIAL_SHAPES)
    keys = sum(height * width for height, width in SPATIAL_SHAPES)
    value = torch.randn(BATCH, keys, HEADS, CHANNELS, generator=generator)
    locations = torch.rand(BATCH, QUERIES, HEADS, levels, POINTS, 2, generator=generator)
    weights = torch.rand(BATCH, QUERIES, HEADS, levels, POINTS, generator=generator)
    weights = weights / weights.sum((-2, -1), keepdim=True)
    return (value.to(device, dtype), torch.tensor(SPATIAL_SHAPES, device=device),
            locations.to(device, dtype), weights.to(device, dtype))


class KernelRecorder:
    """Stands in for MultiScaleDeformableAttnFunction.apply and records its inputs."""

    def __init__(self) -> None:
        self.calls: list[dict] = []

    def __call__(self, value, spatial_shapes, start_index, locations, weights, im2col_step):
        self.calls.append(dict(
            dtypes=[tensor.dtype for tensor in (value, locations, weights)],
            devices={tensor.device.type for tensor in (value, locations, weights)},
            contiguous=all(tensor.is_contiguous() for tensor in (value, locations, weights)),
            start_index=start_index, im2col_step=im2col_step,
            autocast=torch.is_autocast_enabled('cuda')))
        if value.is_cuda:
            # FakeTensors cannot run the reference, whose split sizes need real values.
            batch, _, heads, channels = value.shape
            return value.new_zeros(batch, locations.shape[1], heads * channels)
        return multi_scale_deformable_attn_pytorch(value, spatial_shapes, locations, weights)


@pytest.fixture
def packaged_function():
    """The packaged pure-PyTorch function, with the replacement installed."""
    install_deformable_attention()
    return deformable_attention._pytorch_function


@pytest.fixture
def recorder(monkeypatch) -> KernelRecorder:
    recorder = KernelRecorder()
    monkeypatch.setattr(MultiScaleDeformableAttnFunction, 'apply', recorder)
    monkeypatch.setattr(deformable_attention, 'mmcv_cuda_kernel_available', lambda: True)
    return recorder


def test_building_model_installs_router():
    MODELS.build(tiny_model_config())
    module = importlib.import_module(GROUNDING_DINO_ATTENTION_MODULE)

    assert getattr(module, PYTORCH_FUNCTION_NAME) is multi_scale_deformable_attention


def test_install_twice_keeps_packaged_function(packaged_function):
    install_deformable_attention()

    assert deformable_attention._pytorch_function is packaged_function
    assert packaged_function is not multi_scale_deformable_attention


def test_cpu_tensors_give_packaged_results(packaged_function, recorder):
    inputs = attention_inputs()

    output = multi_scale_deformable_attention(*inputs)

    assert recorder.calls == []
    assert output.shape == (BATCH, QUERIES, HEADS * CHANNELS)
    assert torch.equal(output, packaged_function(*inputs))


def test_cuda_tensors_use_kernel(packaged_function, recorder):
    with FakeTensorMode():
        inputs = attention_inputs(device='cuda', dtype=torch.bfloat16)
        output = multi_scale_deformable_attention(*inputs)

    assert len(recorder.calls) == 1
    call = recorder.calls[0]
    assert call['devices'] == {'cuda'}
    assert call['dtypes'] == [torch.float32] * 3
    assert call['contiguous']
    assert call['autocast'] is False
    assert call['im2col_step'] == IM2COL_STEP
    assert output.dtype == torch.bfloat16
    assert output.device.type == 'cuda'


def test_cuda_tensors_without_mmcv_kernel(packaged_function, recorder, monkeypatch):
    monkeypatch.setattr(deformable_attention, 'mmcv_cuda_kernel_available', lambda: False)
    pytorch_calls = []
    monkeypatch.setattr(deformable_attention, '_pytorch_function',
                        lambda *inputs: pytorch_calls.append(inputs) or inputs[0])
    with FakeTensorMode():
        inputs = attention_inputs(device='cuda')
        multi_scale_deformable_attention(*inputs)

    assert recorder.calls == []
    assert len(pytorch_calls) == 1
    assert pytorch_calls[0][0] is inputs[0]


def test_kernel_inputs_match_reference(recorder):
    value, spatial_shapes, locations, weights = attention_inputs(dtype=torch.bfloat16)

    output = deformable_attention_kernel(value, spatial_shapes, locations, weights)

    assert recorder.calls[0]['start_index'].tolist() == [0, 64, 80]
    expected = multi_scale_deformable_attn_pytorch(value.float(), spatial_shapes,
                                                   locations.float(), weights.float())
    assert output.dtype == torch.bfloat16
    torch.testing.assert_close(output.float(), expected.to(torch.bfloat16).float())


def test_level_start_index_offsets():
    shapes = torch.tensor([[100, 150], [50, 75], [25, 38], [13, 19]])

    assert level_start_index(shapes).tolist() == [0, 15000, 18750, 19700]


def test_kernel_check_follows_mmcv_build():
    """The check follows the CUDA version mmcv was compiled with ('not available' without)."""
    from mmcv.ops import get_compiling_cuda_version

    deformable_attention.mmcv_cuda_kernel_available.cache_clear()
    expected = get_compiling_cuda_version() != 'not available'
    assert deformable_attention.mmcv_cuda_kernel_available() is expected
