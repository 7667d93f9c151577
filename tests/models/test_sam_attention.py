"""Fused SAM attention against segment_anything's own, and activation
checkpointing against plain backpropagation (fp32 on the CPU)."""
import pytest
import torch
from segment_anything.modeling.image_encoder import Attention

from gsam_mm.errors import ConfigError
from gsam_mm.models.sam import build_sam
from gsam_mm.models.sam_attention import SdpaAttention

# Both sum in another order, and their outputs differed by at most 2.3e-7
# here (grids of 4, 7 and 14 tokens). Dropping the relative-position bias
# changed them by 0.5 to 0.75, so 1e-5 cannot hide a wrong bias.
ATOL = 1e-5
RTOL = 1e-5


def randomized_attention(dim: int, num_heads: int, grid: int) -> Attention:
    """A segment_anything attention whose relative-position tables are
    random, since their zero initialisation would hide a wrong bias."""
    torch.manual_seed(0)
    attention = Attention(dim, num_heads=num_heads, use_rel_pos=True, input_size=(grid, grid))
    with torch.no_grad():
        attention.rel_pos_h.normal_()
        attention.rel_pos_w.normal_()
    return attention


@pytest.mark.parametrize('grid', [4, 7])
def test_sdpa_attention_matches_original(grid):
    original = randomized_attention(dim=32, num_heads=4, grid=grid)
    tokens = torch.randn(3, grid, grid, 32)
    expected = original(tokens)

    fused = SdpaAttention(original)
    result = fused(tokens)

    assert result.shape == expected.shape
    torch.testing.assert_close(result, expected, atol=ATOL, rtol=RTOL)


def test_sdpa_attention_gradients_match_original():
    original = randomized_attention(dim=32, num_heads=4, grid=5)
    tokens = torch.randn(2, 5, 5, 32, requires_grad=True)
    original(tokens).square().sum().backward()
    expected_input_grad = tokens.grad.clone()
    expected_rel_pos_grad = original.rel_pos_h.grad.clone()
    original.zero_grad()
    tokens.grad = None

    SdpaAttention(original)(tokens).square().sum().backward()

    torch.testing.assert_close(tokens.grad, expected_input_grad, atol=1e-4, rtol=1e-4)
    torch.testing.assert_close(original.rel_pos_h.grad, expected_rel_pos_grad,
                               atol=1e-4, rtol=1e-4)


def test_sdpa_attention_keeps_parameter_names():
    original = randomized_attention(dim=32, num_heads=4, grid=4)
    assert SdpaAttention(original).state_dict().keys() == original.state_dict().keys()


def test_encoder_sdpa_matches_original():
    """Windowed and global blocks of the whole tiny encoder, with the same
    weights loaded into both."""
    torch.manual_seed(0)
    original = build_sam('tiny', image_size=64, attention='original').image_encoder
    with torch.no_grad():
        for name, parameter in original.named_parameters():
            if 'rel_pos' in name:
                parameter.normal_()
    fused = build_sam('tiny', image_size=64, attention='sdpa').image_encoder
    fused.load_state_dict(original.state_dict())
    images = torch.randn(2, 3, 64, 64)

    with torch.no_grad():
        torch.testing.assert_close(fused(images), original(images), atol=ATOL, rtol=RTOL)


def test_unknown_attention_is_rejected():
    with pytest.raises(ConfigError, match="attention must be one of.*'flash'"):
        build_sam('tiny', image_size=64, attention='flash')


def test_activation_checkpointing_gives_equal_gradients():
    torch.manual_seed(0)
    plain = build_sam('tiny', image_size=64).image_encoder
    recomputed = build_sam('tiny', image_size=64, activation_checkpointing=True).image_encoder
    recomputed.load_state_dict(plain.state_dict())
    images = torch.randn(2, 3, 64, 64)

    plain(images).square().mean().backward()
    recomputed(images).square().mean().backward()

    for (name, expected), (_, parameter) in zip(plain.named_parameters(),
                                                recomputed.named_parameters()):
        torch.testing.assert_close(parameter.grad, expected.grad, atol=1e-6, rtol=1e-5,
                                   msg=lambda text, name=name: f'{name}: {text}')


def test_activation_checkpointing_only_with_grad(monkeypatch):
    from gsam_mm.models import sam_attention

    encoder = build_sam('tiny', image_size=64, activation_checkpointing=True).image_encoder
    calls = []

    def counting_checkpoint(function, *args, **kwargs):
        calls.append(function)
        return function(*args)

    monkeypatch.setattr(sam_attention, 'checkpoint', counting_checkpoint)
    images = torch.randn(1, 3, 64, 64)
    with torch.no_grad():
        encoder(images)
    assert calls == []

    encoder(images)
    assert len(calls) == len(encoder.blocks)


def test_sdpa_attention_under_bfloat16_autocast():
    """The dtype mixing that mixed-precision training on a GPU brings,
    reproduced with the CPU's autocast."""
    original = randomized_attention(dim=32, num_heads=4, grid=7)
    tokens = torch.randn(2, 7, 7, 32)
    with torch.autocast('cpu', dtype=torch.bfloat16):
        expected = original(tokens)
        result = SdpaAttention(original)(tokens)

    assert result.dtype == torch.bfloat16
    # Outputs of magnitude up to 0.8 differed by at most 1.2e-2 on grids of 4,
    # 7 and 14 tokens (a few units of bfloat16's last bit), and dropping the
    # bias changed them by 0.47 to 0.66.
    torch.testing.assert_close(result.float(), expected.float(), atol=3e-2, rtol=0)
