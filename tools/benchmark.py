"""Measure the speed and peak memory of each part of a Grounded-SAM training step.

    python tools/benchmark.py configs/gsam_tiny_demo.py --no-finetune-sam \
        --cfg-options model.sam.backbone=vit_b_224 model.sam.image_size=224 \
        --out work_dirs/benchmark.json

Rows, each timed on one batch of the config's training data. Rows of one
group run in interleaved rounds after warm-up iterations, and each reports
its median wall time and median CPU time of this process (CPU time is the
steadier number on a machine shared with other jobs):

- the data pipeline alone (the training dataloader, batches per second);
- Grounding DINO forward and backward (the detection losses only);
- SAM image encoder forward with `original` and `sdpa` attention, and served
  by a warm embedding cache;
- SAM decoder step: mask losses, forward and backward, with embeddings from
  a warm cache;
- the whole training step through MMEngine (`train_step` with the config's
  optimizer wrapper), with each attention kernel and the cache off and on;
- a plain PyTorch loop over the same networks, written against the
  `groundingdino` and `segment_anything` packages as a user would without
  this plugin (see `PlainLoop`);
- one epoch over the training dataloader with the cache off and on, after
  an untimed epoch that fills the cache, when the encoder is frozen.

On CUDA every row runs at the precision training uses: the rows that call
the model directly enter the same autocast as the config's
`AmpOptimWrapper` (bfloat16 on GPUs that compute it natively), and the
plain loop uses it too, with the same optimizer settings (`fused=True`).
`--rows` picks groups of rows, for example `--rows parts` to time the
networks alone.

Peak memory is `torch.cuda.max_memory_allocated` on CUDA. On the CPU it is
the process's peak resident set size (RSS) during an iteration, and its
rise over the RSS when the iteration started (see `PeakMemory`). Each row
reports the highest of its iterations.
"""
import argparse
import contextlib
import copy
import json
import os
import platform
import statistics
import sys
import threading
import time
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, ContextManager, Iterator, Optional

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import torch  # noqa: E402
import torch.nn.functional as F  # noqa: E402
from mmdet.registry import MODELS  # noqa: E402
from mmengine.config import DictAction  # noqa: E402
from mmengine.optim import build_optim_wrapper  # noqa: E402
from mmengine.registry import init_default_scope  # noqa: E402
from mmengine.runner import Runner  # noqa: E402
from mmengine.structures import InstanceData  # noqa: E402

import gsam_mm  # noqa: E402,F401  (registers the components)
from gsam_mm.engine.runner_setup import (add_shortcut_arguments, load_config,  # noqa: E402
                                         select_optim_wrapper)
from gsam_mm.models.grounding_dino import GroundingDinoOutputs  # noqa: E402
from gsam_mm.models.grounding_sam import content_shape, gt_box_tensor, prompt_texts  # noqa: E402
from gsam_mm.models.sam_attention import ATTENTION_KINDS, ATTENTION_SDPA  # noqa: E402

PAGE_SIZE = os.sysconf('SC_PAGE_SIZE') if hasattr(os, 'sysconf') else 4096
# Groups of rows that --rows selects.
ROW_GROUPS = ('pipeline', 'parts', 'steps', 'epochs')


def parse_args(argv=None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description='Time each part of a training step')
    parser.add_argument('config', help='config file, e.g. configs/gsam_tiny_demo.py')
    parser.add_argument('--work-dir', help='work dir for the disk cache (default: a '
                        'benchmark folder in work_dirs/CONFIG_NAME)')
    parser.add_argument('--cfg-options', nargs='+', action=DictAction,
                        help='override config values, e.g. model.sam.backbone=vit_b_224')
    parser.add_argument('--iterations', type=int, default=5,
                        help='timed iterations per row (default: 5)')
    parser.add_argument('--warmup', type=int, default=2,
                        help='untimed iterations before each row (default: 2)')
    parser.add_argument('--epoch-iterations', type=int, default=1,
                        help='timed epochs per epoch row, after one untimed epoch; 0 leaves '
                        'the epoch rows out (default: 1)')
    parser.add_argument('--device', default='cuda' if torch.cuda.is_available() else 'cpu',
                        help='device to run on (default: cuda when available)')
    parser.add_argument('--threads', type=int,
                        help="torch's CPU threads (default: torch's choice). With one thread "
                        'the CPU time is not inflated by threads that spin while they wait '
                        'for a core other jobs hold')
    parser.add_argument('--rows', nargs='+', choices=ROW_GROUPS, default=list(ROW_GROUPS),
                        help='groups of rows to time: the data pipeline, the network parts, '
                        'the whole training steps, the epochs (default: all)')
    parser.add_argument('--out', help='JSON file for the results')
    parser.set_defaults(launcher='none')
    add_shortcut_arguments(parser)
    return parser.parse_args(argv)


# --------------------------------------------------------------- measuring
class PeakMemory:
    """Peak memory of the code run inside `measure()`, in MiB.

    On the CPU the kernel's RSS high-water mark (VmHWM) is reset through
    /proc/self/clear_refs (Linux 4.0 and later) and read afterwards. Where
    that file cannot be written, a thread samples the RSS every millisecond
    instead. Memory that the process freed earlier but kept resident is reused
    without raising the RSS, so the rise can be smaller than what the code
    allocated.
    """

    def __init__(self, device: torch.device) -> None:
        self.device = device
        self.peak_mib = 0.0
        self.rise_mib = 0.0
        if device.type == 'cuda':
            self.kind = 'cuda max_memory_allocated'
        elif self._reset_high_water_mark():
            self.kind = 'process peak RSS (VmHWM after /proc/self/clear_refs)'
        else:
            self.kind = 'process peak RSS (sampled from /proc/self/statm every 1 ms)'

    @staticmethod
    def _rss_bytes() -> int:
        with open('/proc/self/statm') as statm:
            return int(statm.read().split()[1]) * PAGE_SIZE

    @staticmethod
    def _reset_high_water_mark() -> bool:
        try:
            with open('/proc/self/clear_refs', 'w') as clear_refs:
                clear_refs.write('5')
        except OSError:
            return False
        return True

    @staticmethod
    def _high_water_mark_bytes() -> int:
        with open('/proc/self/status') as status:
            for line in status:
                if line.startswith('VmHWM:'):
                    return int(line.split()[1]) * 1024
        raise RuntimeError('VmHWM missing from /proc/self/status')

    @contextmanager
    def measure(self) -> Iterator[None]:
        if self.device.type == 'cuda':
            torch.cuda.synchronize(self.device)
            start = torch.cuda.memory_allocated(self.device)
            torch.cuda.reset_peak_memory_stats(self.device)
            yield
            torch.cuda.synchronize(self.device)
            peak = torch.cuda.max_memory_allocated(self.device)
        elif self.kind.startswith('process peak RSS (VmHWM'):
            self._reset_high_water_mark()
            start = self._rss_bytes()
            yield
            peak = self._high_water_mark_bytes()
        else:
            start = peak = self._rss_bytes()
            running = True

            def sample() -> None:
                nonlocal peak
                while running:
                    peak = max(peak, self._rss_bytes())
                    time.sleep(0.001)

            sampler = threading.Thread(target=sample, daemon=True)
            sampler.start()
            try:
                yield
            finally:
                running = False
                sampler.join()
            peak = max(peak, self._rss_bytes())
        self.peak_mib = peak / 2**20
        self.rise_mib = (peak - start) / 2**20


def autocast_dtype(cfg, device: torch.device) -> Optional[torch.dtype]:
    """Return the dtype that the config's `AmpOptimWrapper` autocasts to in
    `train_step`, or None when it runs in float32 (always on the CPU)."""
    if device.type != 'cuda' or cfg.optim_wrapper.get('type') != 'AmpOptimWrapper':
        return None
    return getattr(torch, cfg.optim_wrapper.get('dtype') or 'float16')


def autocast(dtype: Optional[torch.dtype]) -> ContextManager:
    """Return a context that autocasts CUDA operations to `dtype`, or one
    that changes nothing when `dtype` is None."""
    if dtype is None:
        return contextlib.nullcontext()
    return torch.autocast(device_type='cuda', dtype=dtype)


def synchronize(device: torch.device) -> None:
    if device.type == 'cuda':
        torch.cuda.synchronize(device)


@dataclass
class Step:
    """One row of the benchmark: a callable that runs one iteration."""

    name: str
    run: Callable[[], None]
    images: int
    settings: dict = field(default_factory=dict)


def time_steps(steps: list[Step], warmup: int, iterations: int,
               device: torch.device) -> list[dict]:
    """Time steps in interleaved rounds and return one row per step.

    Each step first runs `warmup` times untimed. Then every round runs each
    step once, so load from other processes on a shared machine falls on
    all rows alike. A row reports the median wall time, the median CPU time
    of this process (all its threads) and the highest peak memory of its
    iterations.
    """
    for step in steps:
        for _ in range(warmup):
            step.run()
    wall = {step.name: [] for step in steps}
    cpu = {step.name: [] for step in steps}
    peaks = {step.name: PeakMemory(device) for step in steps}
    highest = {step.name: (0.0, 0.0) for step in steps}
    for _ in range(iterations):
        for step in steps:
            memory = peaks[step.name]
            with memory.measure():
                synchronize(device)
                wall_start, cpu_start = time.perf_counter(), time.process_time()
                step.run()
                synchronize(device)
                wall[step.name].append(time.perf_counter() - wall_start)
                cpu[step.name].append(time.process_time() - cpu_start)
            highest[step.name] = (max(highest[step.name][0], memory.peak_mib),
                                  max(highest[step.name][1], memory.rise_mib))

    rows = []
    for step in steps:
        seconds = statistics.median(wall[step.name])
        peak_mib, rise_mib = highest[step.name]
        rows.append(dict(name=step.name, settings=step.settings, seconds=seconds,
                         cpu_seconds=statistics.median(cpu[step.name]),
                         images_per_second=step.images / seconds, iterations=iterations,
                         all_seconds=wall[step.name], all_cpu_seconds=cpu[step.name],
                         peak_memory_mib=peak_mib, memory_rise_mib=rise_mib,
                         memory_kind=peaks[step.name].kind))
        print(f'{step.name:<62} {seconds * 1000:9.1f} ms wall {rows[-1]["cpu_seconds"] * 1000:9.1f} '
              f'ms CPU  peak {peak_mib:7.0f} MiB', flush=True)
    return rows


# ---------------------------------------------------------------- building
def build_models(cfg, device: torch.device) -> dict[str, torch.nn.Module]:
    """Build the model once per attention kernel, with one set of weights,
    plus a cache-enabled copy of each when the encoder is frozen."""
    models = {}
    state = None
    for attention in ATTENTION_KINDS:
        for cached in (False, True):
            model_cfg = copy.deepcopy(cfg.model)
            model_cfg.sam.attention = attention
            if not cached:
                model_cfg.sam_embedding_cache = None
            elif model_cfg.get('finetune_sam') or not model_cfg.get('sam_embedding_cache'):
                continue
            torch.manual_seed(0)
            model = MODELS.build(model_cfg).to(device)
            if state is None:
                state = model.state_dict()
            else:
                model.load_state_dict(state)
            models[f'{attention}, cache {"on" if cached else "off"}'] = model.train()
    return models


def first_batch(cfg) -> dict:
    loader = Runner.build_dataloader(copy.deepcopy(cfg.train_dataloader), seed=0)
    return next(iter(loader))


# -------------------------------------------------------------------- rows
def pipeline_step(cfg) -> Step:
    loader = Runner.build_dataloader(copy.deepcopy(cfg.train_dataloader), seed=0)
    batches = iter(loader)

    def step() -> None:
        nonlocal batches
        try:
            next(batches)
        except StopIteration:
            batches = iter(loader)
            next(batches)

    return Step('data pipeline', step, cfg.train_dataloader.batch_size,
                dict(num_workers=cfg.train_dataloader.num_workers))


def dino_step(model, batch, dtype: Optional[torch.dtype]) -> Step:
    data = model.data_preprocessor(batch, training=True)

    def step() -> None:
        model.zero_grad(set_to_none=True)
        # Without masks, `loss` computes Grounding DINO's losses only.
        return_masks, model.return_masks = model.return_masks, False
        try:
            with autocast(dtype):
                losses = model.loss(data['inputs'], data['data_samples'])
        finally:
            model.return_masks = return_masks
        sum(losses.values()).backward()

    return Step('Grounding DINO forward + backward', step, len(data['inputs']))


def encoder_steps(models, batch, dtype: Optional[torch.dtype]) -> list[Step]:
    steps = []
    for label, model in models.items():
        data = model.data_preprocessor(batch, training=True)
        samples = data['data_samples'] if 'cache on' in label else None

        def step(model=model, data=data, samples=samples) -> None:
            with torch.no_grad(), autocast(dtype):
                model.extract_feat(data['inputs'], samples)

        steps.append(Step(f'SAM encoder forward ({label})', step, len(data['inputs']),
                          dict(variant=label)))
    return steps


def decoder_step(model, batch, dtype: Optional[torch.dtype]) -> Step:
    data = model.data_preprocessor(batch, training=True)

    def step() -> None:
        model.zero_grad(set_to_none=True)
        with autocast(dtype):
            losses = model._mask_losses(data['inputs'], data['data_samples'])
        sum(losses.values()).backward()

    return Step('SAM decoder step (embeddings from warm cache)', step, len(data['inputs']))


def train_steps(cfg, models, batch) -> list[Step]:
    steps = []
    for label, model in models.items():
        optim_wrapper = build_optim_wrapper(model, copy.deepcopy(cfg.optim_wrapper))

        def step(model=model, optim_wrapper=optim_wrapper) -> None:
            model.train_step(batch, optim_wrapper)

        steps.append(Step(f'training step, MMEngine ({label})', step, len(batch['inputs']),
                          dict(variant=label)))
    return steps


class PlainLoop:
    """A training step written directly against the two packages, the way a
    user would write it without this plugin, over the model's own networks.

    Grounding DINO runs through its packaged `forward` with one caption per
    image, so BERT re-encodes the caption for every image. That `forward`
    returns the last decoder layer only, so the detection loss covers that
    layer alone; ours adds the other layers and the proposals. SAM's
    encoder, prompt encoder and mask decoder are called directly on jittered
    ground-truth boxes, with an inline BCE + Dice loss. Nothing is cached
    and no MMEngine code runs; the optimizer is `torch.optim.AdamW`, fused
    when the config's is. Under float16 autocast a `GradScaler` scales the
    loss, as PyTorch's AMP examples do. bfloat16 needs no scaling.
    """

    def __init__(self, cfg, model, batch: dict, device: torch.device,
                 dtype: Optional[torch.dtype] = None) -> None:
        preprocessor = cfg.model.data_preprocessor
        self.mean = torch.tensor(preprocessor.mean, device=device).view(1, 3, 1, 1)
        self.std = torch.tensor(preprocessor.std, device=device).view(1, 3, 1, 1)
        self.dino, self.sam = model.dino, model.sam
        self.encoder_trains = model.sam_encoder_trains
        self.detection_loss = model.detection_loss
        self.box_jitter = model.box_jitter
        self.images = [image.to(device).float() for image in batch['inputs']]
        self.samples = [sample.to(device) for sample in batch['data_samples']]
        # The pipeline pads each image; (height, width) of its content.
        self.content_shapes = [content_shape(sample.metainfo) for sample in self.samples]
        # The captions and positive maps are data preparation, done once.
        self.captions, self.targets = [], []
        for sample in self.samples:
            chunks = model.prompt_for(prompt_texts(sample))
            if len(chunks) != 1:
                raise SystemExit('the plain loop handles prompts that fit in one caption; '
                                 f'this one needs {len(chunks)}')
            instances = sample.gt_instances
            self.captions.append(chunks[0].caption.text)
            self.targets.append(InstanceData(
                bboxes=gt_box_tensor(instances).float(), labels=instances.labels,
                positive_maps=chunks[0].positive_map.to(device)[instances.labels]))
        optimizer = cfg.optim_wrapper.optimizer
        self.optimizer = torch.optim.AdamW(
            [p for p in model.parameters() if p.requires_grad], lr=optimizer.lr,
            weight_decay=optimizer.get('weight_decay', 0), fused=optimizer.get('fused'))
        self.dtype = dtype
        self.scaler = torch.amp.GradScaler('cuda') if dtype == torch.float16 else None

    def batch_tensors(self) -> tuple[torch.Tensor, torch.Tensor]:
        """Return the normalized images padded to one size (B, 3, H, W) and
        the padding mask (B, H, W), True outside each image's content."""
        height = max(image.shape[1] for image in self.images)
        width = max(image.shape[2] for image in self.images)
        images = self.images[0].new_zeros((len(self.images), 3, height, width))
        padding = torch.ones((len(self.images), height, width), dtype=torch.bool,
                             device=images.device)
        for index, (image, (content_height, content_width)) in enumerate(
                zip(self.images, self.content_shapes)):
            images[index, :, :image.shape[1], :image.shape[2]] = image
            padding[index, :content_height, :content_width] = False
        return (images - self.mean) / self.std, padding

    def detection_losses(self, images, padding) -> dict[str, torch.Tensor]:
        from groundingdino.util.misc import NestedTensor

        outputs = self.dino(NestedTensor(images, padding), captions=self.captions)
        token_mask = self.dino.tokenizer(self.captions, padding='longest',
                                         return_tensors='pt').attention_mask.bool()
        last_layer = GroundingDinoOutputs(
            layer_logits=outputs['pred_logits'][None], layer_boxes=outputs['pred_boxes'][None],
            encoder_logits=None, encoder_boxes=None,
            text_token_mask=token_mask[:, :self.dino.max_text_len].to(images.device))
        metas = [dict(img_shape=shape) for shape in self.content_shapes]
        return self.detection_loss(last_layer, self.targets, metas)

    def mask_losses(self, images) -> dict[str, torch.Tensor]:
        height, width = images.shape[-2:]
        side = max(height, width)
        size = self.sam.image_encoder.img_size
        square = F.interpolate(F.pad(images, (0, side - width, 0, side - height)),
                               size=(size, size), mode='bilinear', align_corners=False)
        with torch.set_grad_enabled(self.encoder_trains):
            embeddings = self.sam.image_encoder(square)

        mask_loss, iou_loss = images.new_zeros(()), images.new_zeros(())
        for index, (target, sample, (content_height, content_width)) in enumerate(
                zip(self.targets, self.samples, self.content_shapes)):
            if len(target) == 0:
                continue
            boxes = target.bboxes
            sides = (boxes[:, 2:] - boxes[:, :2]).repeat(1, 2)
            boxes = boxes + torch.randn_like(boxes) * sides * self.box_jitter
            sparse, dense = self.sam.prompt_encoder(points=None, boxes=boxes * size / side,
                                                    masks=None)
            logits, iou_predictions = self.sam.mask_decoder(
                image_embeddings=embeddings[index:index + 1],
                image_pe=self.sam.prompt_encoder.get_dense_pe(),
                sparse_prompt_embeddings=sparse, dense_prompt_embeddings=dense,
                multimask_output=False)
            logits = F.interpolate(logits, size=(side, side), mode='bilinear',
                                   align_corners=False)[:, 0, :content_height, :content_width]
            gt_masks = sample.gt_instances.masks.to_tensor(torch.float32, images.device)
            gt_masks = gt_masks[:, :content_height, :content_width]
            probabilities = logits.sigmoid().flatten(1)
            flat_masks = gt_masks.flatten(1)
            dice = 1 - (2 * (probabilities * flat_masks).sum(1) + 1) / (
                probabilities.sum(1) + flat_masks.sum(1) + 1)
            mask_loss = mask_loss + F.binary_cross_entropy_with_logits(logits, gt_masks) \
                + dice.mean()
            with torch.no_grad():
                predicted, truth = logits > 0, gt_masks > 0.5
                iou = (predicted & truth).flatten(1).sum(1) / \
                    (predicted | truth).flatten(1).sum(1).clamp(min=1)
            iou_loss = iou_loss + F.mse_loss(iou_predictions[:, 0], iou.float())
        return {'loss_mask': mask_loss, 'loss_mask_iou': iou_loss}

    def step(self) -> None:
        with autocast(self.dtype):
            images, padding = self.batch_tensors()
            losses = self.detection_losses(images, padding)
            losses.update(self.mask_losses(images))
        loss = sum(losses.values())
        if self.scaler is None:
            loss.backward()
            self.optimizer.step()
        else:
            self.scaler.scale(loss).backward()
            self.scaler.step(self.optimizer)
            self.scaler.update()
        self.optimizer.zero_grad(set_to_none=True)


def plain_loop_step(cfg, model, label, batch, device, dtype: Optional[torch.dtype]) -> Step:
    """Time `PlainLoop` on the model's networks."""
    loop = PlainLoop(cfg, model, batch, device, dtype)
    return Step(f'training step, plain PyTorch loop ({label})', loop.step, len(batch['inputs']),
                dict(variant=label))


def epoch_steps(cfg, models) -> list[Step]:
    """Return whole epochs over the training dataloader with MMEngine's
    step, for the cache off and on."""
    steps = []
    for label in (f'{ATTENTION_SDPA}, cache off', f'{ATTENTION_SDPA}, cache on'):
        if label not in models:
            continue
        model = models[label]
        loader = Runner.build_dataloader(copy.deepcopy(cfg.train_dataloader), seed=0)
        optim_wrapper = build_optim_wrapper(model, copy.deepcopy(cfg.optim_wrapper))

        def epoch(model=model, loader=loader, optim_wrapper=optim_wrapper) -> None:
            for batch in loader:
                model.train_step(batch, optim_wrapper)

        steps.append(Step(f'one epoch, {len(loader.dataset)} images ({label})', epoch,
                          len(loader.dataset), dict(variant=label)))
    return steps


# ------------------------------------------------------------------ report
def machine_description(device: torch.device) -> dict:
    description = dict(device=str(device), torch=torch.__version__, python=platform.python_version(),
                       cpu_count=os.cpu_count(), torch_threads=torch.get_num_threads(),
                       load_average=os.getloadavg(),
                       time_utc=time.strftime('%Y-%m-%d %H:%M:%S', time.gmtime()))
    if device.type == 'cuda':
        description['gpu'] = torch.cuda.get_device_name(device)
    return description


def print_table(rows: list[dict]) -> None:
    print('\n| row | wall ms per step | CPU ms per step | images/s | peak memory (MiB) '
          '| rise (MiB) |')
    print('| --- | ---: | ---: | ---: | ---: | ---: |')
    for row in rows:
        print(f'| {row["name"]} | {row["seconds"] * 1000:.1f} | {row["cpu_seconds"] * 1000:.1f} '
              f'| {row["images_per_second"]:.2f} | {row["peak_memory_mib"]:.0f} | '
              f'{row["memory_rise_mib"]:.0f} |')


def ratios(rows: list[dict]) -> dict:
    """Return the ratios the benchmark page reports, where both rows exist."""
    by_name = {row['name']: row['seconds'] for row in rows}
    result = {}
    pairs = {
        'MMEngine step / plain loop, both sdpa without cache': (
            'training step, MMEngine (sdpa, cache off)',
            'training step, plain PyTorch loop (sdpa, cache off)'),
        'MMEngine step (sdpa, cache on) / plain loop (original, no cache)': (
            'training step, MMEngine (sdpa, cache on)',
            'training step, plain PyTorch loop (original, cache off)'),
        'encoder forward sdpa / original': (
            'SAM encoder forward (sdpa, cache off)', 'SAM encoder forward (original, cache off)'),
    }
    for label, (ours, reference) in pairs.items():
        if ours in by_name and reference in by_name:
            result[label] = by_name[ours] / by_name[reference]
    epochs = [row for row in rows if row['name'].startswith('one epoch')]
    if len(epochs) == 2:
        result['epoch time without cache / with warm cache'] = (epochs[0]['seconds']
                                                                / epochs[1]['seconds'])
    return result


def main(argv=None) -> None:
    args = parse_args(argv)
    if args.work_dir is None:
        args.work_dir = str(Path('work_dirs') / Path(args.config).stem / 'benchmark')
    cfg = load_config(args)
    select_optim_wrapper(cfg, amp_requested=False)
    init_default_scope(cfg.get('default_scope', 'mmdet'))
    device = torch.device(args.device)
    if args.threads is not None:
        torch.set_num_threads(args.threads)

    models = build_models(cfg, device)
    batch = first_batch(cfg)
    reference = models[f'{ATTENTION_SDPA}, cache off']
    cached = models.get(f'{ATTENTION_SDPA}, cache on')
    dtype = autocast_dtype(cfg, device)

    rows = []
    if 'pipeline' in args.rows:
        rows += time_steps([pipeline_step(cfg)], args.warmup, args.iterations,
                           torch.device('cpu'))
    if 'parts' in args.rows:
        parts = [dino_step(reference, batch, dtype), *encoder_steps(models, batch, dtype)]
        if cached is not None:
            parts.append(decoder_step(cached, batch, dtype))
        rows += time_steps(parts, args.warmup, args.iterations, device)
    if 'steps' in args.rows:
        whole_steps = train_steps(cfg, models, batch)
        for label in (f'{ATTENTION_SDPA}, cache off', 'original, cache off'):
            whole_steps.append(plain_loop_step(cfg, models[label], label, batch, device,
                                               dtype))
        rows += time_steps(whole_steps, args.warmup, args.iterations, device)
    if 'epochs' in args.rows and args.epoch_iterations > 0:
        # One untimed epoch fills the cache before the timed ones.
        rows += time_steps(epoch_steps(cfg, models), 1, args.epoch_iterations, device)

    print_table(rows)
    summary = ratios(rows)
    for label, value in summary.items():
        print(f'{label}: {value:.2f}x')
    if args.out:
        report = dict(config=args.config, cfg_options=args.cfg_options,
                      batch_size=cfg.train_dataloader.batch_size,
                      autocast=str(dtype).removeprefix('torch.') if dtype else None,
                      optimizer=cfg.optim_wrapper.optimizer.to_dict(),
                      machine=machine_description(device), rows=rows, ratios=summary)
        Path(args.out).parent.mkdir(parents=True, exist_ok=True)
        Path(args.out).write_text(json.dumps(report, indent=2, default=str))
        print(f'Wrote {args.out}')


if __name__ == '__main__':
    main()
