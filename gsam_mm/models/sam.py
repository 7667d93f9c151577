"""Build Segment Anything and prompt it with boxes.

Shape letters: B images, N box prompts, C embedding channels, h and w the
image-embedding grid (input size / 16).
"""
from dataclasses import dataclass
from functools import partial
from typing import Optional

import torch
from mmengine.logging import print_log
from torch import Tensor, nn

from ..errors import ConfigError
from .checkpoints import load_state_dict_file, report_load
from .sam_attention import ATTENTION_KINDS, ATTENTION_SDPA, SamImageEncoder


@dataclass(frozen=True)
class SamArchitecture:
    """Sizes of one SAM variant; the official values come from
    `segment_anything/build_sam.py` (segment-anything 1.0)."""

    encoder_embed_dim: int
    encoder_depth: int
    encoder_num_heads: int
    global_attn_indexes: tuple[int, ...]
    image_size: int = 1024
    window_size: int = 14
    prompt_embed_dim: int = 256
    decoder_mlp_dim: int = 2048
    decoder_num_heads: int = 8


SAM_ARCHITECTURES = {
    'vit_h': SamArchitecture(1280, 32, 16, (7, 15, 23, 31)),
    'vit_l': SamArchitecture(1024, 24, 16, (5, 11, 17, 23)),
    'vit_b': SamArchitecture(768, 12, 12, (2, 5, 8, 11)),
    # Same classes at toy sizes, for CPU tests and the demo (random weights).
    'tiny': SamArchitecture(64, 2, 2, (1,), image_size=256, window_size=4,
                            prompt_embed_dim=64, decoder_mlp_dim=128, decoder_num_heads=2),
    # The ViT-B encoder at 224 px (one 14 x 14 window), with random weights
    # only: official checkpoints do not fit its position embeddings. CPU
    # benchmarks use it where 1024 px would take half a minute per image.
    'vit_b_224': SamArchitecture(768, 12, 12, (2, 5, 8, 11), image_size=224),
    # The same at 512 px (32 x 32 patches in 14 x 14 windows), for a CPU
    # benchmark in which the encoder, as in real runs, takes most of a step.
    'vit_b_512': SamArchitecture(768, 12, 12, (2, 5, 8, 11), image_size=512),
}

PATCH_SIZE = 16


def build_sam(backbone: str = 'vit_h', checkpoint: Optional[str] = None,
              image_size: Optional[int] = None, attention: str = ATTENTION_SDPA,
              activation_checkpointing: bool = False) -> nn.Module:
    """Build SAM with the `segment_anything` classes.

    Args:
        backbone: `vit_h`, `vit_l`, `vit_b`, `tiny`, or `vit_b_224` or
            `vit_b_512` (ViT-B at a smaller input, random weights only).
        checkpoint: an official SAM checkpoint (`sam_vit_h_4b8939.pth`, ...)
            or a state dict file in the same format.
        image_size: input size of the image encoder; only the `tiny`
            variant may change it, because the official position embeddings
            are learned for 1024.
        attention: `'sdpa'` runs the image encoder's attention through
            `scaled_dot_product_attention`; `'original'` keeps
            `segment_anything`'s own implementation.
        activation_checkpointing: recompute the image encoder's block
            activations in the backward pass (only matters when it trains).
    """
    from segment_anything.modeling import MaskDecoder, PromptEncoder, Sam, TwoWayTransformer

    if backbone not in SAM_ARCHITECTURES:
        raise ConfigError(f'sam backbone must be one of {sorted(SAM_ARCHITECTURES)}, '
                          f'got {backbone!r}')
    arch = SAM_ARCHITECTURES[backbone]
    input_size = image_size or arch.image_size
    if backbone != 'tiny' and input_size != arch.image_size:
        raise ConfigError(f'SAM {backbone} takes {arch.image_size} px inputs, got '
                          f'image_size={input_size}; remove model.sam.image_size (GroundingSAM '
                          'resizes its inputs for SAM) or use the tiny backbone')
    if attention not in ATTENTION_KINDS:
        raise ConfigError(f'sam attention must be one of {list(ATTENTION_KINDS)}, '
                          f'got {attention!r}')
    grid_size = input_size // PATCH_SIZE

    sam = Sam(
        image_encoder=SamImageEncoder(
            attention=attention,
            activation_checkpointing=activation_checkpointing,
            depth=arch.encoder_depth,
            embed_dim=arch.encoder_embed_dim,
            img_size=input_size,
            mlp_ratio=4,
            norm_layer=partial(nn.LayerNorm, eps=1e-6),
            num_heads=arch.encoder_num_heads,
            patch_size=PATCH_SIZE,
            qkv_bias=True,
            use_rel_pos=True,
            global_attn_indexes=arch.global_attn_indexes,
            window_size=arch.window_size,
            out_chans=arch.prompt_embed_dim,
        ),
        prompt_encoder=PromptEncoder(
            embed_dim=arch.prompt_embed_dim,
            image_embedding_size=(grid_size, grid_size),
            input_image_size=(input_size, input_size),
            mask_in_chans=16,
        ),
        mask_decoder=MaskDecoder(
            num_multimask_outputs=3,
            transformer=TwoWayTransformer(
                depth=2,
                embedding_dim=arch.prompt_embed_dim,
                mlp_dim=arch.decoder_mlp_dim,
                num_heads=arch.decoder_num_heads,
            ),
            transformer_dim=arch.prompt_embed_dim,
            iou_head_depth=3,
            iou_head_hidden_dim=256,
        ),
        pixel_mean=[123.675, 116.28, 103.53],
        pixel_std=[58.395, 57.12, 57.375],
    )
    recompute = ', activation checkpointing on' if activation_checkpointing else ''
    print_log(f'Built SAM {backbone} for {input_size} px inputs with {attention} '
              f'attention{recompute}', logger='current')
    if checkpoint:
        report_load(sam.load_state_dict(load_state_dict_file(checkpoint), strict=False),
                    f'SAM checkpoint {checkpoint}')
    else:
        print_log('SAM starts from random weights: model.sam.checkpoint is not set',
                  logger='current')
    return sam


def sam_input_size(sam: nn.Module) -> int:
    """Return the square input size of SAM's image encoder, in pixels."""
    return sam.image_encoder.img_size


def decode_box_prompts(sam: nn.Module, image_embedding: Tensor,
                       boxes: Tensor) -> tuple[Tensor, Tensor]:
    """Predict one mask per box on one image.

    Args:
        sam: a network from `build_sam`.
        image_embedding: (1, C, h, w) output of SAM's image encoder.
        boxes: (N, 4) xyxy boxes in SAM input pixels.

    Returns:
        Low-resolution mask logits (N, 1, 4h, 4w) covering the whole padded
        input, and the predicted IoU of each mask (N, 1).
    """
    sparse_embeddings, dense_embeddings = sam.prompt_encoder(points=None, boxes=boxes, masks=None)
    mask_logits, iou_predictions = sam.mask_decoder(
        image_embeddings=image_embedding,
        image_pe=sam.prompt_encoder.get_dense_pe(),
        sparse_prompt_embeddings=sparse_embeddings,
        dense_prompt_embeddings=dense_embeddings,
        multimask_output=False,
    )
    return mask_logits, iou_predictions


def jitter_boxes(boxes: Tensor, noise_ratio: float, max_noise: float,
                 generator: Optional[torch.Generator] = None) -> Tensor:
    """Shift each xyxy box corner by Gaussian noise with a standard deviation
    of `noise_ratio` times the box side, capped at `max_noise` pixels, as in
    SAM's training recipe. Returns boxes of shape (N, 4)."""
    if noise_ratio <= 0 or boxes.numel() == 0:
        return boxes
    widths = boxes[:, 2] - boxes[:, 0]
    heights = boxes[:, 3] - boxes[:, 1]
    scale = torch.stack([widths, heights, widths, heights], dim=1) * noise_ratio
    scale = scale.clamp(max=max_noise)
    noise = torch.randn(boxes.shape, generator=generator, device=boxes.device, dtype=boxes.dtype)
    jittered = boxes + noise * scale
    x1 = torch.minimum(jittered[:, 0], jittered[:, 2])
    x2 = torch.maximum(jittered[:, 0], jittered[:, 2])
    y1 = torch.minimum(jittered[:, 1], jittered[:, 3])
    y2 = torch.maximum(jittered[:, 1], jittered[:, 3])
    return torch.stack([x1, y1, x2, y2], dim=1)
