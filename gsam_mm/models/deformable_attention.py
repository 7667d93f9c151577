"""Multi-scale deformable attention for Grounding DINO through mmcv's CUDA kernel.

The packaged ``groundingdino`` (rf-groundingdino 0.3.0) ships no compiled
extension, so every ``MultiScaleDeformableAttention.forward`` in its encoder
and decoder calls the pure-PyTorch
``groundingdino.models.GroundingDINO.ms_deform_attn.multi_scale_deformable_attn_pytorch``:
one ``grid_sample`` per feature level and a weighted sum. The forward looks
that name up in its module at every call. :func:`install_deformable_attention`
therefore replaces the module attribute with
:func:`multi_scale_deformable_attention`, which sends CUDA tensors to mmcv's
``MultiScaleDeformableAttnFunction`` kernel and all other tensors to the
original function, so CPU results stay exactly as before.

NOTE: the CUDA branch has only been tested with mocks of the kernel; it has
not run on a GPU yet.

Shape letters: B images, K keys (the sum of H*W over the levels), M heads,
D channels per head, Q queries, L levels, P sampling points per level.
"""
import functools
import importlib
from typing import Callable, Optional

import torch
from mmengine.logging import print_log
from torch import Tensor

# Module of the packaged Grounding DINO that defines and calls the function.
GROUNDING_DINO_ATTENTION_MODULE = 'groundingdino.models.GroundingDINO.ms_deform_attn'
PYTORCH_FUNCTION_NAME = 'multi_scale_deformable_attn_pytorch'

# Images per kernel launch: the default of Grounding DINO's module
# (img2col_step=64). mmcv 2.1.0 lowers it to the batch size when the batch is
# smaller, and rejects a larger batch that is not a multiple of it.
IM2COL_STEP = 64

_pytorch_function: Optional[Callable[..., Tensor]] = None


@functools.lru_cache(maxsize=None)
def mmcv_cuda_kernel_available() -> bool:
    """Return whether the installed mmcv was compiled with its CUDA kernels."""
    try:
        from mmcv.ops import get_compiling_cuda_version
        from mmcv.ops.multi_scale_deform_attn import MultiScaleDeformableAttnFunction  # noqa: F401
    except ImportError:
        return False
    return get_compiling_cuda_version() != 'not available'


def level_start_index(spatial_shapes: Tensor) -> Tensor:
    """Return the (L,) offset of each level's first key in the flattened keys."""
    level_sizes = spatial_shapes[:, 0] * spatial_shapes[:, 1]
    return torch.cat((level_sizes.new_zeros(1), level_sizes.cumsum(0)[:-1]))


def deformable_attention_kernel(value: Tensor, spatial_shapes: Tensor,
                                sampling_locations: Tensor,
                                attention_weights: Tensor) -> Tensor:
    """Run mmcv's CUDA kernel in float32, also under autocast.

    Sampling locations in bfloat16 would move in steps of 1/256 of a level's
    width near its right edge, half a pixel on the 128-wide first level of a
    1024-pixel input. So the inputs are cast to float32, and the (B, Q, M*D)
    output back to the dtype of ``value``.
    """
    from mmcv.ops.multi_scale_deform_attn import MultiScaleDeformableAttnFunction

    with torch.autocast(device_type='cuda', enabled=False):
        output = MultiScaleDeformableAttnFunction.apply(
            value.float().contiguous(), spatial_shapes, level_start_index(spatial_shapes),
            sampling_locations.float().contiguous(), attention_weights.float().contiguous(),
            IM2COL_STEP)
    return output.to(value.dtype)


def multi_scale_deformable_attention(value: Tensor, spatial_shapes: Tensor,
                                     sampling_locations: Tensor,
                                     attention_weights: Tensor) -> Tensor:
    """Compute multi-scale deformable attention, with the CUDA kernel where it applies.

    Same arguments and result as the packaged function it replaces.

    Args:
        value: (B, K, M, D) projected keys.
        spatial_shapes: (L, 2) height and width of each level, int64.
        sampling_locations: (B, Q, M, L, P, 2) x and y in [0, 1].
        attention_weights: (B, Q, M, L, P), summing to 1 over L and P.

    Returns:
        (B, Q, M*D) attended values.
    """
    if value.is_cuda and mmcv_cuda_kernel_available():
        return deformable_attention_kernel(value, spatial_shapes, sampling_locations,
                                           attention_weights)
    return _pytorch_function(value, spatial_shapes, sampling_locations, attention_weights)


def install_deformable_attention() -> None:
    """Route the packaged Grounding DINO's deformable attention through
    :func:`multi_scale_deformable_attention`; calling it again changes nothing."""
    global _pytorch_function
    module = importlib.import_module(GROUNDING_DINO_ATTENTION_MODULE)
    current = getattr(module, PYTORCH_FUNCTION_NAME)
    if current is multi_scale_deformable_attention:
        return
    _pytorch_function = current
    setattr(module, PYTORCH_FUNCTION_NAME, multi_scale_deformable_attention)

    if mmcv_cuda_kernel_available():
        route = "mmcv's CUDA kernel for CUDA tensors (in float32), PyTorch otherwise"
    else:
        route = 'PyTorch grid_sample, because the installed mmcv has no CUDA kernels'
    print_log(f'Grounding DINO multi-scale deformable attention: {route}', logger='current')
