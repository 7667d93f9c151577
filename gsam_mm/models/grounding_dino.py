"""Build the official Grounding DINO network and run it with every decoder
layer's output exposed.

The packaged `GroundingDINO.forward` returns only the last decoder layer and
caches image features on the module. Training needs every layer and the
encoder's two-stage proposals, so `run_grounding_dino` calls the network's own
submodules (tokenizer, BERT, backbone, input projections, transformer, box and
class embeddings) in the same order, and keeps no state between calls.

Shape letters: B images, P selected rows (image-caption pairs), Q queries,
T text tokens (padded to the encoder limit in logits), L decoder layers,
C channels, H and W pixels.
"""
import argparse
import dataclasses
import os
from pathlib import Path
from typing import Any, Optional, Sequence

import torch
import torch.nn.functional as F
from mmengine.logging import print_log
from torch import Tensor, nn

from ..errors import ConfigError
from .checkpoints import load_state_dict_file, report_load, resolve_model_path
from .deformable_attention import install_deformable_attention

# Official config shipped inside the groundingdino package.
DEFAULT_DINO_CONFIG = 'GroundingDINO_SwinT_OGC.py'

# Key added to the transformer's text dict: (B, sum of H*W) bool, True where
# the encoder cannot place a two-stage proposal.
INVALID_PROPOSALS_KEY = 'invalid_proposals'


class ValidProposalClassEmbed(nn.Module):
    """Two-stage class embedding that gives invalid positions -inf logits.

    The packaged transformer picks its decoder queries as the top-k encoder
    positions by class logit. Padded positions, and those whose proposal
    lies at the image border, all share one constant feature and an infinite
    proposal box. Nothing stops their logit from winning the top-k, and a
    tiny model trained on square-padded images learned exactly that: every
    query started from the box (1, 1, 1, 1). Masking them here keeps the
    selection on real image positions.
    """

    def __init__(self, class_embed: nn.Module) -> None:
        super().__init__()
        self.class_embed = class_embed

    def forward(self, features: Tensor, text_dict: dict) -> Tensor:
        logits = self.class_embed(features, text_dict)
        invalid = text_dict.get(INVALID_PROPOSALS_KEY)
        if invalid is not None and invalid.shape == logits.shape[:2]:
            logits = logits.masked_fill(invalid[..., None], float('-inf'))
        return logits


@dataclasses.dataclass
class TextFeatures:
    """Encoded captions, in the form the Grounding DINO transformer consumes."""

    encoded_text: Tensor              # (B, T, C)
    text_token_mask: Tensor           # (B, T), True on real tokens
    position_ids: Tensor              # (B, T)
    text_self_attention_masks: Tensor  # (B, T, T)

    def as_dict(self) -> dict[str, Tensor]:
        return {
            'encoded_text': self.encoded_text,
            'text_token_mask': self.text_token_mask,
            'position_ids': self.position_ids,
            'text_self_attention_masks': self.text_self_attention_masks,
        }

    def select(self, rows: Tensor) -> 'TextFeatures':
        """Return the captions at `rows` (P,), in that order."""
        return TextFeatures(self.encoded_text[rows], self.text_token_mask[rows],
                            self.position_ids[rows], self.text_self_attention_masks[rows])

    def padded_to(self, num_tokens: int) -> 'TextFeatures':
        """Return the features padded with masked tokens to `num_tokens` (T').

        A padded token attends only to itself, as the tokenizer's own
        padding does in `encode_text`, so no attention row is empty.
        """
        batch_size, length = self.text_token_mask.shape
        extra = num_tokens - length
        if extra <= 0:
            return self
        attention = self.text_self_attention_masks.new_zeros(
            (batch_size, num_tokens, num_tokens))
        attention[:, :length, :length] = self.text_self_attention_masks
        attention[:, length:, length:] = torch.eye(
            extra, dtype=attention.dtype, device=attention.device)
        return TextFeatures(F.pad(self.encoded_text, (0, 0, 0, extra)),
                            F.pad(self.text_token_mask, (0, extra)),
                            F.pad(self.position_ids, (0, extra)), attention)

    @staticmethod
    def concat(parts: Sequence['TextFeatures']) -> 'TextFeatures':
        """Stack caption batches of different token counts, padding to the longest."""
        if len(parts) == 1:
            return parts[0]
        num_tokens = max(part.text_token_mask.shape[1] for part in parts)
        padded = [part.padded_to(num_tokens) for part in parts]
        return TextFeatures(*(torch.cat([getattr(part, name) for part in padded])
                              for name in ('encoded_text', 'text_token_mask',
                                           'position_ids', 'text_self_attention_masks')))


@dataclasses.dataclass
class ImageFeatures:
    """Grounding DINO's projected multi-scale image features, per level."""

    sources: list[Tensor]              # (B, C, H_l, W_l)
    masks: list[Tensor]                # (B, H_l, W_l), True on padding
    position_embeddings: list[Tensor]  # (B, C, H_l, W_l)
    invalid_proposals: Tensor          # (B, sum of H_l*W_l)

    def select(self, rows: Tensor) -> 'ImageFeatures':
        """Return the images at `rows` (P,), in that order; a row may repeat."""
        return ImageFeatures([source[rows] for source in self.sources],
                             [mask[rows] for mask in self.masks],
                             [position[rows] for position in self.position_embeddings],
                             self.invalid_proposals[rows])


@dataclasses.dataclass
class GroundingDinoOutputs:
    """Logits over text tokens and normalized cxcywh boxes for every query."""

    layer_logits: Tensor   # (L, B, Q, max_text_len); -inf on padding tokens
    layer_boxes: Tensor    # (L, B, Q, 4), sigmoid cxcywh
    encoder_logits: Optional[Tensor]  # (B, Q, max_text_len) two-stage proposals
    encoder_boxes: Optional[Tensor]   # (B, Q, 4)
    # (B, T'), True on real tokens; T' is the longest caption, not max_text_len.
    text_token_mask: Tensor


def resolve_dino_config(config_file: Optional[str]) -> Path:
    """Return the path of a Grounding DINO config file.

    A bare file name is looked up among the configs shipped with the
    `groundingdino` package; anything else is taken as a path.
    """
    import groundingdino

    name = config_file or DEFAULT_DINO_CONFIG
    packaged = Path(groundingdino.__file__).parent / 'config' / name
    if os.sep not in name and packaged.is_file():
        return packaged
    path = Path(name).expanduser()
    if not path.is_file():
        raise ConfigError(f'Grounding DINO config file {name!r} not found; give a path '
                          f'or one of the packaged names in {packaged.parent}')
    return path


def build_grounding_dino(config_file: Optional[str] = None,
                         checkpoint: Optional[str] = None,
                         text_encoder: str = 'bert-base-uncased',
                         overrides: Optional[dict[str, Any]] = None) -> nn.Module:
    """Build Grounding DINO from its own config file and load its checkpoint.

    Args:
        config_file: an official config name (`GroundingDINO_SwinT_OGC.py`) or
            a path to a config in that style.
        checkpoint: the official `groundingdino_swint_ogc.pth` or a path in
            the same format; None keeps the random initialisation.
        text_encoder: Hugging Face name or local folder of the BERT encoder
            and its tokenizer (see `resolve_model_path`).
        overrides: config values replacing those of the file, for example
            `dict(num_queries=100, enc_layers=1)`.

    The network's deformable attention runs mmcv's CUDA kernel on CUDA
    tensors (see `install_deformable_attention`).
    """
    from groundingdino.models import build_model
    from groundingdino.util.slconfig import SLConfig

    install_deformable_attention()
    config_path = resolve_dino_config(config_file)
    args = SLConfig.fromfile(str(config_path))
    for key, value in (overrides or {}).items():
        args[key] = value
    args.text_encoder_type = resolve_model_path(text_encoder)
    if os.path.isdir(args.text_encoder_type) and \
            not os.path.isfile(os.path.join(args.text_encoder_type, 'config.json')):
        raise ConfigError(f'text encoder folder {args.text_encoder_type} has no config.json; '
                          'give a folder saved by transformers (model and tokenizer files)')
    args.device = 'cpu'
    print_log(f'Building Grounding DINO from {config_path} with text encoder '
              f'{args.text_encoder_type}', logger='current')
    try:
        network = build_model(args)
    except OSError as err:
        raise ConfigError(
            f'cannot load the text encoder {text_encoder!r} ({err.__class__.__name__}: '
            f'{str(err).splitlines()[0]}). Without access to the Hugging Face hub, set '
            "model.dino.text_encoder (the config's text_encoder variable) to a local "
            'folder holding the model and tokenizer files: --text-encoder DIR in '
            'tools/train.py, --cfg-options model.dino.text_encoder=DIR in the other '
            'tools') from err
    if getattr(network.transformer, 'two_stage_type', 'no') != 'no':
        network.transformer.enc_out_class_embed = ValidProposalClassEmbed(
            network.transformer.enc_out_class_embed)

    if checkpoint:
        state_dict = load_state_dict_file(checkpoint, nested_key='model',
                                          allowed_globals=[argparse.Namespace])
        state_dict = {key.removeprefix('module.'): value for key, value in state_dict.items()}
        report_load(network.load_state_dict(state_dict, strict=False),
                    f'Grounding DINO checkpoint {checkpoint}')
    else:
        print_log('Grounding DINO starts from random weights (apart from the text encoder): '
                  'model.dino.checkpoint is not set', logger='current')
    return network


def encode_text(network: nn.Module, captions: Sequence[str], device: torch.device) -> TextFeatures:
    """Encode captions and project them to the transformer's width."""
    return project_text(network, run_text_encoder(network, captions, device))


def run_text_encoder(network: nn.Module, captions: Sequence[str],
                     device: torch.device) -> TextFeatures:
    """Tokenize captions and run the BERT text encoder with Grounding DINO's
    phrase-wise attention masks (each phrase attends only to itself).

    The returned `encoded_text` is BERT's last hidden state (B, T, C_bert),
    before the trainable projection of `project_text`. BERT runs without
    autograd when none of its parameters train.
    """
    from groundingdino.models.GroundingDINO.bertwarper import (
        generate_masks_with_special_tokens_and_transfer_map)

    tokenized = network.tokenizer(list(captions), padding='longest',
                                  return_tensors='pt').to(device)
    self_attention_masks, position_ids, _ = generate_masks_with_special_tokens_and_transfer_map(
        tokenized, network.specical_tokens, network.tokenizer)

    encoder_inputs = {key: value for key, value in tokenized.items() if key != 'attention_mask'}
    if network.sub_sentence_present:
        encoder_inputs['attention_mask'] = self_attention_masks
        encoder_inputs['position_ids'] = position_ids
    else:
        encoder_inputs['attention_mask'] = tokenized['attention_mask']
    bert_trains = any(parameter.requires_grad for parameter in network.bert.parameters())
    with torch.set_grad_enabled(torch.is_grad_enabled() and bert_trains):
        bert_output = network.bert(**encoder_inputs)

    return TextFeatures(
        encoded_text=bert_output['last_hidden_state'],
        text_token_mask=tokenized['attention_mask'].bool(),
        position_ids=position_ids,
        text_self_attention_masks=self_attention_masks,
    )


def project_text(network: nn.Module, text: TextFeatures) -> TextFeatures:
    """Map BERT's hidden states to the transformer's width (`feat_map`)."""
    return dataclasses.replace(text, encoded_text=network.feat_map(text.encoded_text))


def _image_features(network: nn.Module, images: Tensor,
                    padding_mask: Tensor) -> tuple[list[Tensor], list[Tensor], list[Tensor]]:
    """Return projected multi-scale features, their padding masks and
    position embeddings.

    Levels beyond the backbone's outputs are strided convolutions on its last
    output, as in the packaged forward.
    """
    from groundingdino.util.misc import NestedTensor

    features, position_embeddings = network.backbone(NestedTensor(images, padding_mask))
    sources, masks = [], []
    for level, feature in enumerate(features):
        source, mask = feature.decompose()
        sources.append(network.input_proj[level](source))
        masks.append(mask)

    for level in range(len(features), network.num_feature_levels):
        previous = features[-1].tensors if level == len(features) else sources[-1]
        source = network.input_proj[level](previous)
        mask = F.interpolate(padding_mask[None].float(), size=source.shape[-2:])[0].bool()
        position = network.backbone[1](NestedTensor(source, mask)).to(source.dtype)
        sources.append(source)
        masks.append(mask)
        position_embeddings = [*position_embeddings, position]
    return sources, masks, list(position_embeddings)


def _invalid_proposals(masks: list[Tensor]) -> Tensor:
    """Return (B, sum of H*W) True where the two-stage encoder gets no valid
    proposal: padded pixels and positions whose box reaches the border."""
    from groundingdino.models.GroundingDINO.utils import gen_encoder_output_proposals

    mask_flatten = torch.cat([mask.flatten(1) for mask in masks], dim=1)
    spatial_shapes = torch.as_tensor([mask.shape[-2:] for mask in masks],
                                     device=mask_flatten.device)
    placeholder = mask_flatten.new_zeros(mask_flatten.shape + (1,), dtype=torch.float32)
    _, proposals = gen_encoder_output_proposals(placeholder, mask_flatten, spatial_shapes)
    return torch.isinf(proposals).any(-1)


def extract_image_features(network: nn.Module, images: Tensor,
                           padding_mask: Tensor) -> ImageFeatures:
    """Run the backbone and input projections on a batch.

    Args:
        network: a network from `build_grounding_dino`.
        images: normalized images (B, 3, H, W).
        padding_mask: (B, H, W), True on padded pixels.
    """
    sources, masks, position_embeddings = _image_features(network, images, padding_mask)
    return ImageFeatures(sources, masks, position_embeddings, _invalid_proposals(masks))


def run_grounding_dino(network: nn.Module, image_features: ImageFeatures,
                       text: TextFeatures) -> GroundingDinoOutputs:
    """Run Grounding DINO's transformer and heads on paired images and captions.

    Args:
        network: a network from `build_grounding_dino`.
        image_features: features of B images from `extract_image_features`.
        text: B encoded captions; row b is the caption of image b.
    """
    from groundingdino.util.misc import inverse_sigmoid

    # The transformer replaces `encoded_text` in this dict with the text
    # features its encoder fused with the image; the heads score against those.
    text_dict = {**text.as_dict(), INVALID_PROPOSALS_KEY: image_features.invalid_proposals}
    hidden_states, references, encoder_states, encoder_boxes, _ = network.transformer(
        image_features.sources, image_features.masks, None,
        image_features.position_embeddings, None, None, text_dict)
    fused_text = {key: value for key, value in text_dict.items()
                  if key != INVALID_PROPOSALS_KEY}

    layer_boxes = []
    layer_logits = []
    for layer_index, layer_hidden in enumerate(hidden_states):  # layer_hidden: (B, Q, C)
        box_delta = network.bbox_embed[layer_index](layer_hidden)
        layer_boxes.append((box_delta + inverse_sigmoid(references[layer_index])).sigmoid())
        layer_logits.append(network.class_embed[layer_index](layer_hidden, fused_text))

    encoder_logits = None
    if encoder_states is not None:
        encoder_logits = network.transformer.enc_out_class_embed(encoder_states[-1], fused_text)
        encoder_boxes = encoder_boxes[-1]

    return GroundingDinoOutputs(
        layer_logits=torch.stack(layer_logits),
        layer_boxes=torch.stack(layer_boxes),
        encoder_logits=encoder_logits,
        encoder_boxes=encoder_boxes,
        text_token_mask=text.text_token_mask,
    )
