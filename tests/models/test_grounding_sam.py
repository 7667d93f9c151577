"""GroundingSAM at toy sizes: freezing, losses, gradients and predictions."""
import numpy as np
import pytest
import torch
from mmdet.registry import MODELS
from mmdet.structures import DetDataSample
from mmdet.structures.bbox import HorizontalBoxes
from mmdet.structures.mask import BitmapMasks
from mmengine.structures import InstanceData

import gsam_mm  # noqa: F401
from gsam_mm.errors import ConfigError
from gsam_mm.fields import LOSS_CLS, LOSS_MASK, LOSS_MASK_IOU
from gsam_mm.models.grounding_sam import content_shape

from ..conftest import tiny_model_config

IMAGE_SIZE = 128
TEXTS = ('cat', 'dog')


def make_sample(content_shape, boxes, labels) -> DetDataSample:
    """A padded IMAGE_SIZE square sample whose content is `content_shape`,
    with `img_shape` overwritten by the padded size as MMCV's Pad does."""
    height, width = content_shape
    sample = DetDataSample(metainfo=dict(
        img_shape=(IMAGE_SIZE, IMAGE_SIZE), ori_shape=(height * 2, width * 2),
        scale_factor=(0.5, 0.5), pad_shape=(IMAGE_SIZE, IMAGE_SIZE),
        batch_input_shape=(IMAGE_SIZE, IMAGE_SIZE), text=TEXTS))
    masks = np.zeros((len(boxes), IMAGE_SIZE, IMAGE_SIZE), dtype=np.uint8)
    for index, (x1, y1, x2, y2) in enumerate(boxes):
        masks[index, int(y1):int(y2), int(x1):int(x2)] = 1
    sample.gt_instances = InstanceData(
        bboxes=HorizontalBoxes(torch.tensor(boxes, dtype=torch.float32).reshape(-1, 4)),
        labels=torch.tensor(labels, dtype=torch.long),
        masks=BitmapMasks(masks, IMAGE_SIZE, IMAGE_SIZE))
    return sample


@pytest.fixture(scope='module')
def model():
    torch.manual_seed(0)
    return MODELS.build(tiny_model_config(IMAGE_SIZE))


def batch():
    torch.manual_seed(1)
    inputs = torch.randn(2, 3, IMAGE_SIZE, IMAGE_SIZE)
    samples = [make_sample((IMAGE_SIZE, 96), [[10, 10, 60, 50], [30, 40, 90, 120]], [0, 1]),
               make_sample((64, IMAGE_SIZE), [], [])]
    return inputs, samples


def test_content_shape_undoes_padding():
    # 100x200 resized by 0.32 to 32x64, then padded to 64x64.
    meta = dict(img_shape=(64, 64), ori_shape=(100, 200), scale_factor=(0.32, 0.32))
    assert content_shape(meta) == (32, 64)


def test_padding_mask_marks_padded_pixels(model):
    inputs, samples = batch()
    mask = model.padding_mask(inputs, samples)
    assert not mask[0, :, :96].any()
    assert mask[0, :, 96:].all()
    assert not mask[1, :64].any()
    assert mask[1, 64:].all()


def test_frozen_parts(model):
    assert not any(p.requires_grad for p in model.dino.bert.parameters())
    assert not any(p.requires_grad for p in model.sam.prompt_encoder.parameters())
    assert not any(p.requires_grad for p in model.sam.image_encoder.parameters())
    assert all(p.requires_grad for p in model.sam.mask_decoder.parameters())
    assert all(p.requires_grad for p in model.dino.backbone.parameters())
    assert all(p.requires_grad for p in model.dino.transformer.parameters())


def test_finetune_sam_trains_image_encoder():
    model = MODELS.build(tiny_model_config(IMAGE_SIZE, finetune_sam=True, return_masks=True))
    assert all(p.requires_grad for p in model.sam.image_encoder.parameters())
    assert not any(p.requires_grad for p in model.sam.prompt_encoder.parameters())


def test_loss_names_cover_every_layer(model):
    inputs, samples = batch()
    model.train()
    losses = model.loss(inputs, samples)

    # Two decoder layers: d0 plus the last layer's plain names, and the proposals.
    for prefix in ('', 'd0.', 'enc.'):
        for name in ('loss_cls', 'loss_bbox', 'loss_iou'):
            assert prefix + name in losses
    assert LOSS_MASK in losses
    assert LOSS_MASK_IOU in losses
    for name, value in losses.items():
        assert torch.isfinite(value), name


def test_loss_gradients_reach_trainable_parts(model):
    inputs, samples = batch()
    model.train()
    model.zero_grad()
    losses = model.loss(inputs, samples)
    sum(losses.values()).backward()

    assert model.dino.backbone[0].patch_embed.proj.weight.grad is not None
    assert model.sam.mask_decoder.iou_prediction_head.layers[0].weight.grad is not None
    assert all(p.grad is None for p in model.dino.bert.parameters())
    assert all(p.grad is None for p in model.sam.image_encoder.parameters())


def test_loss_on_image_without_objects(model):
    inputs, _ = batch()
    samples = [make_sample((IMAGE_SIZE, IMAGE_SIZE), [], []),
               make_sample((IMAGE_SIZE, IMAGE_SIZE), [], [])]
    model.train()
    losses = model.loss(inputs, samples)

    assert losses[LOSS_CLS] > 0
    assert losses[LOSS_MASK] == 0
    for value in losses.values():
        assert torch.isfinite(value)


def test_instance_cap_limits_sam_prompts():
    model = MODELS.build(tiny_model_config(IMAGE_SIZE, max_sam_instances_per_image=2))
    boxes = [[4 * i, 4 * i, 4 * i + 20, 4 * i + 20] for i in range(5)]
    sample = make_sample((IMAGE_SIZE, IMAGE_SIZE), boxes, [0] * 5)

    selected = model._select_instances(len(sample.gt_instances), torch.device('cpu'))

    assert selected.numel() == 2
    assert model._capped_images == 1


def test_predict_returns_instances_in_original_pixels(model):
    inputs, samples = batch()
    model.eval()
    with torch.no_grad():
        results = model.predict(inputs, samples)

    first = results[0].pred_instances
    assert first.bboxes.shape == (10, 4)
    assert first.masks.shape == (10, IMAGE_SIZE * 2, 96 * 2)
    assert first.masks.dtype == torch.bool
    assert set(first.labels.tolist()) <= {0, 1}
    assert (first.scores[:-1] >= first.scores[1:]).all()
    assert first.bboxes[:, 2].max() <= 96 * 2 + 1e-3
    second = results[1].pred_instances
    assert second.masks.shape == (10, 64 * 2, IMAGE_SIZE * 2)


def test_num_classes_mismatch_names_both_numbers():
    model = MODELS.build(tiny_model_config(IMAGE_SIZE, num_classes=5))
    with pytest.raises(ConfigError, match='num_classes=5.*2 categories'):
        model.prompt_for(TEXTS)


def test_two_stage_queries_avoid_padding(model):
    """Padded positions share one feature and an infinite proposal box; the
    encoder's top-k must never start a query from them."""
    inputs, samples = batch()
    # Push the shared feature of invalid positions to the top of the ranking:
    # with zero weights every position gets the bias, so only masking decides.
    enc_output = model.dino.transformer.enc_output
    saved = enc_output.weight.detach().clone()
    with torch.no_grad():
        enc_output.weight.zero_()
    try:
        model.eval()
        with torch.no_grad():
            outputs, = model._forward(inputs, samples)
    finally:
        with torch.no_grad():
            enc_output.weight.copy_(saved)

    assert torch.isfinite(outputs.encoder_boxes).all()
    assert (outputs.encoder_boxes < 0.99).all()


def test_detector_matches_packaged_forward():
    """Split into image features, text features and transformer, the detector
    gives the packaged `forward`'s last-layer logits and boxes: the heads
    score against the text features the encoder fused with the image.
    The packaged forward has no valid-proposal mask, so it is taken off."""
    from groundingdino.util.misc import NestedTensor

    torch.manual_seed(0)
    model = MODELS.build(tiny_model_config(IMAGE_SIZE)).eval()
    transformer = model.dino.transformer
    transformer.enc_out_class_embed = transformer.enc_out_class_embed.class_embed
    inputs = torch.randn(1, 3, IMAGE_SIZE, IMAGE_SIZE)
    sample = make_sample((IMAGE_SIZE, IMAGE_SIZE), [[10, 10, 60, 50]], [0])

    with torch.no_grad():
        ours = model._forward(inputs, [sample])[0]
        packaged = model.dino(NestedTensor(inputs, model.padding_mask(inputs, [sample])),
                              captions=[model.prompt_for(TEXTS)[0].caption.text])

    torch.testing.assert_close(ours.layer_boxes[-1], packaged['pred_boxes'])
    finite = torch.isfinite(packaged['pred_logits'])
    assert torch.equal(torch.isfinite(ours.layer_logits[-1]), finite)
    torch.testing.assert_close(ours.layer_logits[-1][finite], packaged['pred_logits'][finite])
