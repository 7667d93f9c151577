"""GroundingSAM with a prompt split over several captions."""
import numpy as np
import pytest
import torch
from mmdet.registry import MODELS
from mmdet.structures import DetDataSample
from mmdet.structures.bbox import HorizontalBoxes
from mmdet.structures.mask import BitmapMasks
from mmengine.structures import InstanceData

import gsam_mm.models.grounding_sam as grounding_sam_module
from gsam_mm.fields import LOSS_CLS
from gsam_mm.models.grounding_dino import extract_image_features, run_grounding_dino

from ..conftest import tiny_model_config

IMAGE_SIZE = 64
# With a budget of 8 tokens, "[CLS] a cat . a dog . [SEP]" fills a caption,
# so these six categories make three captions: labels 0-1, 2-3 and 4-5.
TEXTS = ('a cat', 'a dog', 'a bird', 'a fish', 'a cow', 'a fox')
CAPTION_BUDGET = 8


def make_sample(labels, texts=TEXTS) -> DetDataSample:
    sample = DetDataSample(metainfo=dict(
        img_shape=(IMAGE_SIZE, IMAGE_SIZE), ori_shape=(IMAGE_SIZE, IMAGE_SIZE),
        scale_factor=(1.0, 1.0), pad_shape=(IMAGE_SIZE, IMAGE_SIZE),
        batch_input_shape=(IMAGE_SIZE, IMAGE_SIZE), text=texts))
    boxes = [[4 + 8 * index, 4, 20 + 8 * index, 30] for index in range(len(labels))]
    masks = np.zeros((len(labels), IMAGE_SIZE, IMAGE_SIZE), dtype=np.uint8)
    for index, (x1, y1, x2, y2) in enumerate(boxes):
        masks[index, y1:y2, x1:x2] = 1
    sample.gt_instances = InstanceData(
        bboxes=HorizontalBoxes(torch.tensor(boxes, dtype=torch.float32).reshape(-1, 4)),
        labels=torch.tensor(labels, dtype=torch.long),
        masks=BitmapMasks(masks, IMAGE_SIZE, IMAGE_SIZE))
    return sample


@pytest.fixture(scope='module')
def model():
    torch.manual_seed(0)
    model = MODELS.build(tiny_model_config(IMAGE_SIZE, max_prompt_tokens=CAPTION_BUDGET,
                                           max_per_image=1000))
    assert [chunk.labels for chunk in model.prompt_for(TEXTS)] == [(0, 1), (2, 3), (4, 5)]
    return model


def test_training_pairs_images_with_their_captions(model):
    samples = [make_sample([0, 5, 4]), make_sample([3]), make_sample([]), make_sample([])]
    model._negative_passes = 0

    passes = model._training_passes(samples)

    assert [(text_pass.image_index, text_pass.chunk_index) for text_pass in passes] == [
        (0, 0), (0, 2), (1, 1), (2, 0), (3, 1)]


def test_pass_targets_use_caption_labels(model):
    sample = make_sample([0, 5, 4])
    text_pass = grounding_sam_module.TextPass(0, TEXTS, 2)

    targets = model._pass_targets(sample, text_pass)

    chunk = model.prompt_for(TEXTS)[2]
    assert targets.labels.tolist() == [1, 0]
    assert targets.bboxes.tolist() == [[12, 4, 28, 30], [20, 4, 36, 30]]
    assert torch.equal(targets.positive_maps, chunk.positive_map[[1, 0]])


def test_loss_with_split_prompt_is_finite(model):
    torch.manual_seed(2)
    inputs = torch.randn(2, 3, IMAGE_SIZE, IMAGE_SIZE)
    model.train()

    losses = model.loss(inputs, [make_sample([0, 5]), make_sample([])])

    assert LOSS_CLS in losses
    total = sum(value for value in losses.values())
    assert torch.isfinite(total)
    total.backward()
    assert model.dino.feat_map.weight.grad is not None


def test_prediction_merges_every_caption(model):
    """Each label's scores equal those of a run with its caption alone."""
    torch.manual_seed(3)
    inputs = torch.randn(1, 3, IMAGE_SIZE, IMAGE_SIZE)
    model.eval()

    with torch.no_grad():
        merged = model.predict(inputs, [make_sample([])])[0].pred_instances
        per_caption = {}
        for chunk in model.prompt_for(TEXTS):
            texts = tuple(TEXTS[label] for label in chunk.labels)
            alone = model.predict(inputs, [make_sample([], texts)])[0].pred_instances
            for local_label, label in enumerate(chunk.labels):
                per_caption[label] = alone.scores[alone.labels == local_label]

    assert set(merged.labels.tolist()) == set(range(len(TEXTS)))
    for label, expected in per_caption.items():
        scores = merged.scores[merged.labels == label]
        torch.testing.assert_close(scores.sort().values, expected.sort().values,
                                   atol=1e-5, rtol=1e-4)


def test_top_k_spans_captions():
    torch.manual_seed(0)
    model = MODELS.build(tiny_model_config(IMAGE_SIZE, max_prompt_tokens=CAPTION_BUDGET,
                                           max_per_image=5))
    model.eval()
    with torch.no_grad():
        instances = model.predict(torch.randn(1, 3, IMAGE_SIZE, IMAGE_SIZE),
                                  [make_sample([])])[0].pred_instances

    assert len(instances) == 5
    assert (instances.scores[:-1] >= instances.scores[1:]).all()


def test_frozen_text_encoder_runs_once_per_prompt(model, monkeypatch):
    calls = []
    original = grounding_sam_module.run_text_encoder

    def counting_encoder(network, captions, device):
        calls.append(list(captions))
        return original(network, captions, device)

    monkeypatch.setattr(grounding_sam_module, 'run_text_encoder', counting_encoder)
    model._frozen_text_states.clear()
    inputs = torch.randn(2, 3, IMAGE_SIZE, IMAGE_SIZE)
    model.train()
    for _ in range(2):
        model.loss(inputs, [make_sample([0]), make_sample([4])])

    assert calls == [[chunk.caption.text for chunk in model.prompt_for(TEXTS)]]

    # Loading weights into the text encoder makes the cached states stale.
    model.load_state_dict(model.state_dict())
    model.loss(inputs, [make_sample([0]), make_sample([4])])
    assert len(calls) == 2


def test_padded_captions_match_separate_encoding(model):
    """Captions encoded together (padded by the tokenizer) and encoded alone,
    then padded by `TextFeatures.concat`, give the same detector logits."""
    torch.manual_seed(4)
    inputs = torch.randn(2, 3, IMAGE_SIZE, IMAGE_SIZE)
    captions = [chunk.caption.text for chunk in model.prompt_for(TEXTS)[:2]]
    captions[1] = 'a dog . a fox . a very small bird .'
    model.eval()
    with torch.no_grad():
        image_features = extract_image_features(
            model.dino, inputs, torch.zeros(2, IMAGE_SIZE, IMAGE_SIZE, dtype=torch.bool))
        together = grounding_sam_module.project_text(
            model.dino, grounding_sam_module.run_text_encoder(model.dino, captions, 'cpu'))
        alone = [grounding_sam_module.project_text(
            model.dino, grounding_sam_module.run_text_encoder(model.dino, [caption], 'cpu'))
            for caption in captions]
        concatenated = type(together).concat(alone)

        expected = run_grounding_dino(model.dino, image_features, together)
        actual = run_grounding_dino(model.dino, image_features, concatenated)

    assert torch.equal(concatenated.text_token_mask, together.text_token_mask)
    torch.testing.assert_close(actual.layer_logits, expected.layer_logits, atol=1e-4, rtol=1e-4)
    torch.testing.assert_close(actual.layer_boxes, expected.layer_boxes, atol=1e-5, rtol=1e-4)


def test_matched_boxes_follow_each_caption(model):
    """With sam_prompts='pred', each instance gets the box its own caption's
    pass matched, in the image's instance order."""
    torch.manual_seed(4)
    inputs = torch.randn(1, 3, IMAGE_SIZE, IMAGE_SIZE)
    sample = make_sample([5, 0, 4])
    passes = model._training_passes([sample])
    targets = [model._pass_targets(sample, text_pass) for text_pass in passes]
    model.sam_prompts = 'pred'
    try:
        with torch.no_grad():
            outputs = model._find_boxes(model._image_features(inputs, [sample]), passes)
            matches = []
            model.detection_loss(outputs, targets,
                                 [grounding_sam_module.with_content_shape(sample.metainfo)] * 2,
                                 matches)
            per_image = model._matched_boxes(outputs, matches, [sample], passes, targets)
    finally:
        model.sam_prompts = 'gt'

    assert [text_pass.chunk_index for text_pass in passes] == [0, 2]
    assert per_image[0].matched.tolist() == [True, True, True]
    # Instance 1 (label 0) is in caption 0; instances 0 and 2 (labels 5, 4) in caption 2.
    for pass_row, instance_rows in ((0, [1]), (1, [0, 2])):
        query_indices, gt_indices = matches[pass_row]
        for query, target_row in zip(query_indices.tolist(), gt_indices.tolist()):
            box = outputs.layer_boxes[-1, pass_row, query]
            expected = torch.cat([box[:2] - box[2:] / 2, box[:2] + box[2:] / 2]) * IMAGE_SIZE
            torch.testing.assert_close(per_image[0].boxes[instance_rows[target_row]], expected)
