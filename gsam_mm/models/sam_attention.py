"""SAM's ViT image encoder with fused attention and optional activation
checkpointing.

`segment_anything`'s `Attention` materialises the full attention matrix, adds
the decomposed relative-position term to it and applies softmax in separate
kernels. `SdpaAttention` computes the same function with
`torch.nn.functional.scaled_dot_product_attention`, passing the relative-position
term as an additive bias, so PyTorch can pick a fused kernel. It keeps the
original's parameter names, so official checkpoints load unchanged.

Shape letters: B images (times windows in windowed blocks), H and W the token
grid of one attention call, N = H * W tokens, C channels, D channels per head.
"""
from typing import Optional

import torch
import torch.nn.functional as F
from segment_anything.modeling.image_encoder import Attention, ImageEncoderViT, get_rel_pos
from torch import Tensor, nn
from torch.utils.checkpoint import checkpoint

# Values of `build_sam(attention=...)`.
ATTENTION_ORIGINAL = 'original'
ATTENTION_SDPA = 'sdpa'
ATTENTION_KINDS = (ATTENTION_ORIGINAL, ATTENTION_SDPA)


def relative_position_bias(query: Tensor, rel_pos_h: Tensor, rel_pos_w: Tensor,
                           grid_size: tuple[int, int]) -> Tensor:
    """Compute the decomposed relative-position term of SAM's attention as a bias.

    This is the term `add_decomposed_rel_pos` adds to the attention logits
    (MViTv2's decomposition), built as a tensor of its own.

    Args:
        query: (B, heads, N, D) unscaled queries.
        rel_pos_h: (2H - 1, D) embeddings along the height axis.
        rel_pos_w: (2W - 1, D) embeddings along the width axis.
        grid_size: (H, W) token grid, the same for queries and keys.

    Returns:
        Bias (B, heads, N, N) to add to the scaled query-key logits.
    """
    height, width = grid_size
    batch_size, num_heads, num_tokens, head_dim = query.shape
    offsets_h = get_rel_pos(height, height, rel_pos_h)  # (H, H, D)
    offsets_w = get_rel_pos(width, width, rel_pos_w)  # (W, W, D)

    grid_query = query.reshape(batch_size, num_heads, height, width, head_dim)
    bias_h = torch.einsum('bnhwd,hkd->bnhwk', grid_query, offsets_h)  # (B, heads, H, W, H)
    bias_w = torch.einsum('bnhwd,wkd->bnhwk', grid_query, offsets_w)  # (B, heads, H, W, W)
    bias = bias_h[..., :, None] + bias_w[..., None, :]  # (B, heads, H, W, H, W)
    return bias.reshape(batch_size, num_heads, num_tokens, num_tokens)


class SdpaAttention(nn.Module):
    """SAM's windowed or global attention through `scaled_dot_product_attention`.

    Args:
        original: the `segment_anything` attention whose `qkv`, `proj`,
            `rel_pos_h` and `rel_pos_w` this module takes over. The
            parameters are shared, not copied, and keep their state-dict names.
    """

    def __init__(self, original: Attention) -> None:
        super().__init__()
        self.num_heads = original.num_heads
        self.qkv = original.qkv
        self.proj = original.proj
        self.use_rel_pos = original.use_rel_pos
        if self.use_rel_pos:
            self.rel_pos_h = original.rel_pos_h
            self.rel_pos_w = original.rel_pos_w

    def forward(self, tokens: Tensor) -> Tensor:
        """Attend over a (B, H, W, C) token grid and return the same shape."""
        batch_size, height, width, channels = tokens.shape
        num_tokens = height * width
        qkv = self.qkv(tokens).reshape(batch_size, num_tokens, 3, self.num_heads, -1)
        query, key, value = qkv.permute(2, 0, 3, 1, 4).unbind(0)  # each (B, heads, N, D)

        bias: Optional[Tensor] = None
        # NOTE: the bias is a full (B, heads, N, N) tensor, as large as the
        # attention matrix the original builds: 512 MiB per image in bfloat16
        # for ViT-H's global blocks (4096 tokens, 16 heads). Flash attention
        # takes no such bias, so CUDA falls back to the memory-efficient or
        # math kernel. This path has only been run on the CPU.
        if self.use_rel_pos:
            bias = relative_position_bias(query, self.rel_pos_h, self.rel_pos_w,
                                          (height, width)).to(query.dtype)
        attended = F.scaled_dot_product_attention(query, key, value, attn_mask=bias)

        attended = attended.transpose(1, 2).reshape(batch_size, height, width, channels)
        return self.proj(attended)


class SamImageEncoder(ImageEncoderViT):
    """`ImageEncoderViT` with a choice of attention kernel and optional
    activation checkpointing of its blocks.

    Both options keep every state-dict key of the original class.

    Args:
        attention: `'sdpa'` for `SdpaAttention`, `'original'` for
            `segment_anything`'s own attention.
        activation_checkpointing: recompute each block's activations in the
            backward pass instead of storing them. It only acts when gradients
            are enabled, so a frozen encoder runs unchanged.
        **kwargs: arguments of `ImageEncoderViT`.
    """

    def __init__(self, *, attention: str = ATTENTION_SDPA,
                 activation_checkpointing: bool = False, **kwargs) -> None:
        super().__init__(**kwargs)
        self.attention = attention
        self.activation_checkpointing = activation_checkpointing
        if attention == ATTENTION_SDPA:
            for block in self.blocks:
                block.attn = SdpaAttention(block.attn)

    def forward(self, images: Tensor) -> Tensor:
        """Encode (B, 3, S, S) images into (B, C_out, S / 16, S / 16) embeddings."""
        tokens = self.patch_embed(images)  # (B, S / 16, S / 16, C)
        if self.pos_embed is not None:
            tokens = tokens + self.pos_embed

        recompute = self.activation_checkpointing and torch.is_grad_enabled()
        for block in self.blocks:
            if recompute:
                tokens = checkpoint(block, tokens, use_reentrant=False)
            else:
                tokens = block(tokens)

        return self.neck(tokens.permute(0, 3, 1, 2))
