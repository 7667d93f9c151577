"""Per-epoch checkpoints written atomically, with keep-last-N, best-metric
copies and an option to store only the trainable parameters."""
import os
import os.path as osp
import re
from collections import deque
from pathlib import Path
from typing import Optional, Sequence, Union

from mmdet.registry import HOOKS as MMDET_HOOKS
from mmengine.dist import all_gather_object, get_world_size, is_main_process
from mmengine.fileio import LocalBackend, get_file_backend
from mmengine.hooks import CheckpointHook
from mmengine.model import is_model_wrapper
from mmengine.registry import HOOKS as MMENGINE_HOOKS
from torch import nn

from gsam_mm.errors import ConfigError
from gsam_mm.models.checkpoints import weights_fingerprint

# `meta` keys of a trainable-only checkpoint: the state_dict keys of the
# frozen parameters that were left out, a fingerprint of their values per
# model part (checked on loading), and the pretrained files they came from.
TRAINABLE_ONLY_META_KEY = 'gsam_mm_omitted_frozen_keys'
FROZEN_FINGERPRINTS_META_KEY = 'gsam_mm_frozen_fingerprints'
PRETRAINED_FILES_META_KEY = 'gsam_mm_pretrained_files'

# Name of the file MMEngine's auto-resume reads to find the newest checkpoint.
LAST_CHECKPOINT_POINTER = 'last_checkpoint'

# A file is first written as `.{name}.{pid}.partial` in its final folder and
# then renamed, so readers only ever see complete files.
PARTIAL_SUFFIX = '.partial'
PARTIAL_FILE_PATTERN = re.compile(r'^\..+\.\d+\.partial$')


def unwrap_model(model: nn.Module) -> nn.Module:
    """Return the model inside a DDP-style wrapper, or the model itself."""
    return model.module if is_model_wrapper(model) else model


def frozen_parameter_names(model: nn.Module) -> set[str]:
    """Return the names of all parameters with ``requires_grad=False``, tied ones included."""
    return {name for name, param in model.named_parameters(remove_duplicate=False)
            if not param.requires_grad}


def drop_frozen_parameters(state_dict: dict, model: nn.Module) -> list[str]:
    """Delete the frozen parameters of ``model`` from ``state_dict`` in place.

    Buffers stay, because a frozen module in train mode still updates them
    (BatchNorm running statistics) and they are small.

    Returns:
        The deleted keys.
    """
    frozen_names = frozen_parameter_names(model)
    omitted_keys = [key for key in state_dict if key in frozen_names]
    for key in omitted_keys:
        del state_dict[key]
    return omitted_keys


def frozen_fingerprints(state: dict, keys: Sequence[str]) -> dict[str, str]:
    """Return a fingerprint of the `keys` entries of `state` per model part,
    a part being the first two components of the key (`sam.image_encoder`)."""
    parts: dict[str, list[str]] = {}
    for key in sorted(keys):
        if key in state:
            parts.setdefault('.'.join(key.split('.')[:2]), []).append(key)
    return {part: weights_fingerprint((key, state[key]) for key in names)
            for part, names in parts.items()}


def check_frozen_parameters(meta: dict, model: nn.Module, checkpoint: str) -> None:
    """Check that the model's frozen parameters are those the trainable-only
    checkpoint was trained with.

    Raises:
        ConfigError: when a part differs, for example because the model was
            built without the pretrained file used in training, or with
            another one. Checkpoints written without fingerprints pass.
    """
    expected = meta.get(FROZEN_FINGERPRINTS_META_KEY)
    if not expected:
        return
    actual = frozen_fingerprints(model.state_dict(), meta[TRAINABLE_ONLY_META_KEY])
    differing = sorted(part for part, value in expected.items() if actual.get(part) != value)
    if not differing:
        return
    files = meta.get(PRETRAINED_FILES_META_KEY) or {}
    used = ', '.join(f'{key}={value!r}' for key, value in files.items()) or 'not recorded'
    raise ConfigError(
        f'checkpoint {checkpoint} stores trainable parameters only, and the frozen '
        f'parameters of {", ".join(differing)} differ from those it was trained with. '
        f'Build the model with the pretrained files used in training ({used}).')


def restore_frozen_parameters(state_dict: dict, omitted_keys: Sequence[str],
                              model: nn.Module) -> list[str]:
    """Fill the keys left out of a trainable-only checkpoint with the model's current values.

    Returns:
        The omitted keys that the model does not have, and so stay missing.
    """
    model_state = model.state_dict()
    unknown_keys = []
    for key in omitted_keys:
        if key in model_state:
            state_dict.setdefault(key, model_state[key])
        else:
            unknown_keys.append(key)
    return unknown_keys


def partial_path_for(final_path: str) -> str:
    """Return the temporary path in the same folder that ``final_path`` is written to first."""
    folder, name = osp.split(final_path)
    return osp.join(folder, f'.{name}.{os.getpid()}{PARTIAL_SUFFIX}')


def replace_atomically(partial_path: str, final_path: str) -> None:
    """Flush ``partial_path`` to disk and rename it to ``final_path``.

    ``os.replace`` within one folder is atomic on POSIX and Windows, so
    ``final_path`` is either the old file or the complete new one.
    """
    with open(partial_path, 'rb+') as file:
        os.fsync(file.fileno())
    os.replace(partial_path, final_path)
    if os.name == 'posix':
        # Persist the rename itself; Windows cannot open a folder for fsync.
        folder_descriptor = os.open(osp.dirname(final_path) or '.', os.O_RDONLY)
        try:
            os.fsync(folder_descriptor)
        finally:
            os.close(folder_descriptor)


def write_text_atomically(path: str, text: str) -> None:
    """Write ``text`` to ``path`` through a partial file and an atomic rename."""
    partial_path = partial_path_for(path)
    try:
        with open(partial_path, 'w', encoding='utf-8') as file:
            file.write(text)
        replace_atomically(partial_path, path)
    except BaseException:
        if osp.exists(partial_path):
            os.remove(partial_path)
        raise


def _is_int(value: object) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _validate_best_arguments(save_best: Union[str, list[str], None],
                             rule: Union[str, list[str], None]) -> None:
    if save_best is not None:
        names = [save_best] if isinstance(save_best, str) else save_best
        if (not isinstance(names, list) or not names
                or not all(isinstance(name, str) and name for name in names)
                or len(set(names)) != len(names)):
            raise ConfigError('EpochCheckpointHook: save_best must be None, a metric name '
                              'such as "coco/segm_mAP" or a list of distinct names, '
                              f'got {save_best!r}.')

    rules = rule if isinstance(rule, list) else [rule]
    if not all(item in (None, 'greater', 'less') for item in rules):
        raise ConfigError('EpochCheckpointHook: rule must be None, "greater", "less" or '
                          f'a list of them, got {rule!r}.')
    if isinstance(rule, list) and save_best is not None:
        best_count = 1 if isinstance(save_best, str) else len(save_best)
        if len(rule) not in (1, best_count):
            raise ConfigError(f'EpochCheckpointHook: rule lists {len(rule)} rules for '
                              f'{best_count} save_best metrics; give 1 rule or one per metric.')


def _validate_arguments(*, interval: int, max_keep_ckpts: int, filename_tmpl: str,
                        save_begin: int, save_trainable_only: bool, by_epoch: bool) -> None:
    if by_epoch is not True:
        raise ConfigError('EpochCheckpointHook saves once per epoch, so by_epoch must be '
                          f"True, got {by_epoch!r}; use MMEngine's CheckpointHook for "
                          'iteration-based checkpoints.')
    if not _is_int(interval) or not (interval == -1 or interval >= 1):
        raise ConfigError('EpochCheckpointHook: interval must be a positive number of '
                          'epochs, or -1 to save only the last epoch (with save_last=True), '
                          f'got {interval!r}.')
    if not _is_int(max_keep_ckpts) or not (max_keep_ckpts == -1 or max_keep_ckpts >= 1):
        raise ConfigError('EpochCheckpointHook: max_keep_ckpts must be a positive integer, '
                          f'or -1 to keep every checkpoint, got {max_keep_ckpts!r}.')
    if not isinstance(filename_tmpl, str) or filename_tmpl.count('{}') != 1:
        raise ConfigError('EpochCheckpointHook: filename_tmpl must be a string with exactly '
                          f'one "{{}}" for the epoch number, got {filename_tmpl!r}.')
    if not _is_int(save_begin) or save_begin < 0:
        raise ConfigError('EpochCheckpointHook: save_begin must be an integer >= 0, '
                          f'got {save_begin!r}.')
    if not isinstance(save_trainable_only, bool):
        raise ConfigError('EpochCheckpointHook: save_trainable_only must be True or False, '
                          f'got {save_trainable_only!r}.')


@MMDET_HOOKS.register_module()
class EpochCheckpointHook(CheckpointHook):
    """Save a checkpoint every ``interval`` epochs, never leaving a truncated file.

    Each checkpoint is the dict ``Runner.save_checkpoint`` builds: model
    weights, optimizer state (for ``AmpOptimWrapper`` including the loss
    scaler), parameter schedulers and the message hub with epoch, iteration and
    the best score, so ``--resume`` continues the run exactly.

    Differences from MMEngine's ``CheckpointHook``:

    * Every file, ``last_checkpoint`` included, is written to
      ``.{name}.{pid}.partial`` in the same folder, flushed with ``fsync`` and
      renamed with ``os.replace``. A crash or a failed write leaves the
      previous checkpoints and ``last_checkpoint`` as they were. A failed write
      removes its partial file; files left by a killed process are removed,
      and logged, when training starts again.
    * Old checkpoints (``max_keep_ckpts``) and the previous best checkpoint are
      removed only after the new file is complete. Every save and removal is
      logged through the runner's logger.
    * ``save_trainable_only=True`` stores only the parameters with
      ``requires_grad=True``, plus all buffers, and lists the left-out keys
      under ``meta['gsam_mm_omitted_frozen_keys']``, with a fingerprint of
      their values per model part. Loading takes the frozen parts from the
      pretrained files the model config names. ``GroundingSAM`` loads them
      in its constructor, and models with a ``Pretrained`` ``init_cfg`` in
      ``init_weights()``. When a Runner loads such a file (``load_from``,
      ``--resume``, ``tools/test.py``), this hook's ``after_load_checkpoint``
      runs before the weights are copied into the model. It calls
      ``init_weights()`` unless the Runner already has (``Runner.val`` and
      ``Runner.test`` skip it), then fills each left-out key with the model's
      current value, so MMEngine reports no missing keys. It raises
      ``ConfigError`` when the fingerprints show other frozen values than in
      training, as when the config names no pretrained file or another one.
    * With several processes only rank 0 writes, renames and removes files.
      Training stops with an error when the processes start at different
      epochs, as after a resume on machines that do not share the work dir.
    * Only local folders are supported, because the atomic rename needs a
      file system; ``published_keys``, ``backend_args`` and iteration-based
      saving are not available.

    NOTE: a trainable-only checkpoint loaded without this hook in the Runner
    (for example with mmdet's ``init_detector``) leaves the frozen parts at
    whatever the model's constructor set, and MMEngine warns about every
    missing key.

    Examples:
        >>> default_hooks = dict(checkpoint=dict(
        ...     type='EpochCheckpointHook', interval=1, max_keep_ckpts=3,
        ...     save_best='coco/segm_mAP', rule='greater',
        ...     save_trainable_only=True))

    Args:
        interval: Save every ``interval`` epochs, counting from ``save_begin``;
            -1 saves only the last epoch (with ``save_last``).
        max_keep_ckpts: Number of epoch checkpoints to keep; -1 keeps all.
            Best checkpoints are not counted.
        save_best: Validation metric (or list of metrics) whose best value
            gets its own checkpoint, ``best_{metric}_epoch_{N}.pth`` with ``/``
            replaced by ``_``, for example ``'coco/segm_mAP'``. ``'auto'``
            takes the first metric.
        rule: ``'greater'`` or ``'less'`` (or one per metric); None infers it
            from the metric name as MMEngine does (``mAP`` is greater).
        save_trainable_only: Store only trainable parameters and the buffers,
            as described above.
        save_last: Also save the last epoch when ``interval`` skips it.
        save_optimizer: Store the optimizer (and loss scaler) state in epoch
            checkpoints. Best checkpoints never contain it.
        save_param_scheduler: Store the parameter scheduler states in epoch
            checkpoints.
        out_dir: Root folder of the checkpoints; the last folder name of the
            work dir is appended. None saves into the work dir.
        filename_tmpl: Name of epoch checkpoints, with one ``{}`` for the
            1-based epoch number.
        greater_keys: Metric name parts that infer the 'greater' rule;
            None uses MMEngine's list.
        less_keys: Metric name parts that infer the 'less' rule; None uses
            MMEngine's list.
        save_begin: First epoch counted for ``interval``.
        by_epoch: Must be True; accepted so configs written for
            ``CheckpointHook`` keep working.

    Raises:
        ConfigError: when an argument has an invalid value, the ``out_dir``
            is not local, or ``save_best`` names a metric that validation does
            not produce.
    """

    def __init__(self,
                 *,
                 interval: int = 1,
                 max_keep_ckpts: int = -1,
                 save_best: Union[str, list[str], None] = None,
                 rule: Union[str, list[str], None] = None,
                 save_trainable_only: bool = False,
                 save_last: bool = True,
                 save_optimizer: bool = True,
                 save_param_scheduler: bool = True,
                 out_dir: Union[str, Path, None] = None,
                 filename_tmpl: str = 'epoch_{}.pth',
                 greater_keys: Optional[Sequence[str]] = None,
                 less_keys: Optional[Sequence[str]] = None,
                 save_begin: int = 0,
                 by_epoch: bool = True) -> None:
        _validate_arguments(interval=interval, max_keep_ckpts=max_keep_ckpts,
                            filename_tmpl=filename_tmpl, save_begin=save_begin,
                            save_trainable_only=save_trainable_only, by_epoch=by_epoch)
        _validate_best_arguments(save_best, rule)
        try:
            super().__init__(
                interval=interval, by_epoch=True, save_optimizer=save_optimizer,
                save_param_scheduler=save_param_scheduler, out_dir=out_dir,
                max_keep_ckpts=max_keep_ckpts, save_last=save_last, save_best=save_best,
                rule=rule, greater_keys=greater_keys, less_keys=less_keys,
                filename_tmpl=filename_tmpl, save_begin=save_begin)
        except ValueError as err:
            # MMEngine raises ValueError when it cannot infer a rule.
            raise ConfigError(f'EpochCheckpointHook: {err}') from err

        self.save_trainable_only = save_trainable_only
        self.keep_ckpt_ids: deque = deque()
        # Path of the current best checkpoint, keyed like the message hub.
        self._best_ckpt_paths: dict[str, Optional[str]] = {}
        self._checkpoint_dir_ready = False
        self._writing_own_checkpoint = False
        self._omitted_key_count = 0

    # Setup when training starts (also after a resume).

    def before_train(self, runner) -> None:
        """Resolve the checkpoint folder and restore the kept and best checkpoints
        recorded in the message hub (filled by a resume)."""
        self._check_ranks_start_together(runner)
        self._resolve_out_dir(runner)
        if is_main_process():
            self._remove_partial_files(runner)
        if self.save_best is not None:
            for key_indicator in self.key_indicators:
                path_info_key = self._best_info_keys(key_indicator)[1]
                self._best_ckpt_paths[path_info_key] = runner.message_hub.get_info(path_info_key)
        if self.max_keep_ckpts > 0:
            self._restore_kept_checkpoints(runner)
        self._checkpoint_dir_ready = True

    @staticmethod
    def _check_ranks_start_together(runner) -> None:
        """Raise unless every process starts at the same epoch and iteration.

        Only rank 0 writes checkpoints. A process on another machine that
        cannot read them starts from epoch 0 while rank 0 resumes, and then
        the ranks run different numbers of steps, whose collective calls
        no longer match.
        """
        if get_world_size() == 1:
            return
        positions = all_gather_object((runner.epoch, runner.iter))
        if len(set(positions)) > 1:
            by_rank = ', '.join(f'rank {rank}: epoch {epoch}, iteration {iteration}'
                                for rank, (epoch, iteration) in enumerate(positions))
            raise ConfigError(f'The processes start training at different points ({by_rank}). '
                              'Only rank 0 writes checkpoints, so every machine must read '
                              f'the work dir {runner.work_dir} from a shared file system '
                              'to resume.')

    def _resolve_out_dir(self, runner) -> None:
        if self.out_dir is None:
            self.out_dir = runner.work_dir
        elif str(self.out_dir) != runner.work_dir:
            # Same layout as CheckpointHook: out_dir/<last folder of work_dir>.
            work_dir_name = osp.basename(runner.work_dir.rstrip(osp.sep))
            self.out_dir = osp.join(str(self.out_dir), work_dir_name)

        self.file_backend = get_file_backend(self.out_dir)
        if not isinstance(self.file_backend, LocalBackend):
            raise ConfigError('EpochCheckpointHook writes checkpoints atomically and so '
                              f'needs a local out_dir, got {self.out_dir!r}.')
        os.makedirs(self.out_dir, exist_ok=True)
        runner.logger.info(f'Checkpoints will be saved to {self.out_dir}.')

    def _remove_partial_files(self, runner) -> None:
        """Remove partial files that a killed process left behind."""
        for folder in sorted({self.out_dir, runner.work_dir}):
            for name in sorted(os.listdir(folder)):
                if PARTIAL_FILE_PATTERN.match(name):
                    os.remove(osp.join(folder, name))
                    runner.logger.warning(f'Removed {osp.join(folder, name)}, an unfinished '
                                          'checkpoint file left by an interrupted save.')

    def _restore_kept_checkpoints(self, runner) -> None:
        kept_epochs = list(runner.message_hub.get_info('keep_ckpt_ids', []))
        while len(kept_epochs) > self.max_keep_ckpts:
            expired_epoch = kept_epochs.pop(0)
            if is_main_process():
                self._remove_checkpoint(runner, self._epoch_checkpoint_path(expired_epoch),
                                        f'max_keep_ckpts={self.max_keep_ckpts}')
        runner.message_hub.update_info('keep_ckpt_ids', kept_epochs)
        self.keep_ckpt_ids = deque(kept_epochs)

    # Epoch checkpoints.

    def _save_checkpoint_with_step(self, runner, step: int, meta: dict) -> None:
        """Write the checkpoint of epoch ``step``, point ``last_checkpoint`` at it,
        then remove checkpoints beyond ``max_keep_ckpts``."""
        path = self._epoch_checkpoint_path(step)
        kept_epochs, expired_epochs = self._kept_epochs_after_saving(step)
        # The message hub goes into the checkpoint, so update it first. A run
        # resumed from this file then reads from it which files to remove.
        if self.max_keep_ckpts > 0:
            runner.message_hub.update_info('keep_ckpt_ids', kept_epochs)
        runner.message_hub.update_info('last_ckpt', path)

        self._write_checkpoint(runner, osp.basename(path), meta,
                               save_optimizer=self.save_optimizer,
                               save_param_scheduler=self.save_param_scheduler)
        self.last_ckpt = path
        self.keep_ckpt_ids = deque(kept_epochs)
        if not is_main_process():
            return

        write_text_atomically(osp.join(runner.work_dir, LAST_CHECKPOINT_POINTER), path)
        for expired_epoch in expired_epochs:
            self._remove_checkpoint(runner, self._epoch_checkpoint_path(expired_epoch),
                                    f'max_keep_ckpts={self.max_keep_ckpts}')

    def _kept_epochs_after_saving(self, step: int) -> tuple[list[int], list[int]]:
        """Return the epochs kept once epoch ``step`` is saved, and those to remove."""
        kept_epochs = list(self.keep_ckpt_ids)
        if self.max_keep_ckpts <= 0 or (kept_epochs and kept_epochs[-1] == step):
            # Unlimited, or the same epoch saved again after a new best score.
            return kept_epochs, []
        kept_epochs.append(step)
        excess = max(len(kept_epochs) - self.max_keep_ckpts, 0)
        return kept_epochs[excess:], kept_epochs[:excess]

    def _epoch_checkpoint_path(self, epoch: int) -> str:
        return osp.join(self.out_dir, self.filename_tmpl.format(epoch))

    # Best checkpoints.

    def _save_best_checkpoint(self, runner, metrics: dict) -> None:
        """Save a best checkpoint for each ``save_best`` metric that improved."""
        if not self.save_best or not self._checkpoint_dir_ready:
            # No best checkpoints from Runner.val() or Runner.test() alone.
            return
        if 'auto' in self.key_indicators:
            self._init_rule(self.rules, [next(iter(metrics))])

        epoch_filename = self.filename_tmpl.format(runner.epoch)
        meta = dict(epoch=runner.epoch, iter=runner.iter)
        improved = False
        for key_indicator, rule in zip(self.key_indicators, self.rules):
            improved |= self._update_best(runner, key_indicator, rule, metrics,
                                          epoch_filename, meta)

        # The epoch checkpoint was written before validation. Write it again
        # so that its message hub contains the new best score and path, which
        # a resumed run needs to compare against and to remove the old file.
        if improved and self.last_ckpt == self._epoch_checkpoint_path(runner.epoch):
            self._save_checkpoint_with_step(runner, runner.epoch, meta)

    def _update_best(self, runner, key_indicator: str, rule: str, metrics: dict,
                     epoch_filename: str, meta: dict) -> bool:
        """Save a best checkpoint if ``key_indicator`` improved; return whether it did."""
        if key_indicator not in metrics:
            raise ConfigError(f'EpochCheckpointHook: save_best metric {key_indicator!r} '
                              f'is not among the validation metrics {sorted(metrics)}.')
        score = metrics[key_indicator]
        score_info_key, path_info_key = self._best_info_keys(key_indicator)
        best_score = runner.message_hub.get_info(score_info_key, self.init_value_map[rule])
        if score is None or not self.is_better_than[key_indicator](score, best_score):
            return False

        best_filename = f'best_{key_indicator}_{epoch_filename}'.replace('/', '_')
        path = self._write_checkpoint(runner, best_filename, meta,
                                      save_optimizer=False, save_param_scheduler=False)
        runner.logger.info(f'New best {key_indicator} {score:.4f} at epoch {runner.epoch} '
                           f'(previous best {best_score:.4f}).')
        previous_path = self._best_ckpt_paths.get(path_info_key)
        self._best_ckpt_paths[path_info_key] = path
        runner.message_hub.update_info(score_info_key, score)
        runner.message_hub.update_info(path_info_key, path)

        if previous_path and previous_path != path and is_main_process():
            self._remove_checkpoint(runner, previous_path, f'a better {key_indicator}')
        return True

    def _best_info_keys(self, key_indicator: str) -> tuple[str, str]:
        """Return the message hub keys of the best score and path, as CheckpointHook names them."""
        if len(self.key_indicators) == 1:
            return 'best_score', 'best_ckpt'
        return f'best_score_{key_indicator}', f'best_ckpt_{key_indicator}'

    # Writing and removing files.

    def _write_checkpoint(self, runner, filename: str, meta: dict, *,
                          save_optimizer: bool, save_param_scheduler: bool) -> str:
        """Write the runner's checkpoint to ``out_dir/filename`` atomically; return the path."""
        final_path = osp.join(self.out_dir, filename)
        partial_path = partial_path_for(final_path)
        self._writing_own_checkpoint = True
        try:
            # Runner.save_checkpoint writes on the main process only.
            runner.save_checkpoint(
                self.out_dir, osp.basename(partial_path), save_optimizer=save_optimizer,
                save_param_scheduler=save_param_scheduler, meta=dict(meta), by_epoch=True)
            if is_main_process():
                replace_atomically(partial_path, final_path)
        except BaseException as err:
            if is_main_process():
                self._log_failed_write(runner, final_path, partial_path, err)
            raise
        finally:
            self._writing_own_checkpoint = False

        if is_main_process():
            contents = ''
            if self.save_trainable_only:
                contents = (f' (trainable parameters only, {self._omitted_key_count} '
                            'frozen parameter tensors left out)')
            runner.logger.info(f'Saved checkpoint {final_path}{contents}.')
        return final_path

    @staticmethod
    def _log_failed_write(runner, final_path: str, partial_path: str,
                          err: BaseException) -> None:
        cleanup = ''
        if osp.exists(partial_path):
            os.remove(partial_path)
            cleanup = f' Removed the partial file {partial_path}.'
        runner.logger.error(f'Failed to write checkpoint {final_path}: {err!r}.{cleanup} '
                            'Existing checkpoints and last_checkpoint are unchanged.')

    @staticmethod
    def _remove_checkpoint(runner, path: str, reason: str) -> None:
        if osp.isfile(path):
            os.remove(path)
            runner.logger.info(f'Removed checkpoint {path} ({reason}).')
        else:
            runner.logger.warning(f'Checkpoint {path} was to be removed ({reason}) '
                                  'but does not exist.')

    # Trainable-only checkpoints.

    def before_save_checkpoint(self, runner, checkpoint: dict) -> None:
        """Leave the frozen parameters out of this hook's own trainable-only checkpoints."""
        if not (self.save_trainable_only and self._writing_own_checkpoint):
            return
        model = unwrap_model(runner.model)
        omitted_keys = drop_frozen_parameters(checkpoint['state_dict'], model)
        # The checkpoint's state dict is a copy of the model's, so the model
        # still has the values that were dropped.
        checkpoint['meta'][FROZEN_FINGERPRINTS_META_KEY] = frozen_fingerprints(
            model.state_dict(), omitted_keys)
        checkpoint['meta'][PRETRAINED_FILES_META_KEY] = getattr(model, 'pretrained_files', {})
        checkpoint['meta'][TRAINABLE_ONLY_META_KEY] = omitted_keys
        self._omitted_key_count = len(omitted_keys)

    def after_load_checkpoint(self, runner, checkpoint: dict) -> None:
        """Complete a trainable-only checkpoint with the model's pretrained frozen weights."""
        meta = checkpoint.get('meta') if isinstance(checkpoint, dict) else None
        if not isinstance(meta, dict) or TRAINABLE_ONLY_META_KEY not in meta:
            return
        omitted_keys = meta[TRAINABLE_ONLY_META_KEY]
        model = unwrap_model(runner.model)

        if hasattr(model, 'init_weights') and getattr(model, 'is_init', None) is False:
            # Runner.val and Runner.test skip init_weights, which is where
            # models with a `Pretrained` init_cfg load their weights.
            runner.logger.info('The checkpoint stores trainable parameters only; calling '
                               'init_weights() to load the pretrained frozen weights first.')
            model.init_weights()

        check_frozen_parameters(meta, model, 'loaded by the runner')
        unknown_keys = restore_frozen_parameters(checkpoint['state_dict'], omitted_keys, model)
        runner.logger.info(f'The checkpoint stores trainable parameters only: '
                           f'{len(omitted_keys) - len(unknown_keys)} frozen parameter '
                           'tensors keep the values of the pretrained model.')
        if unknown_keys:
            runner.logger.warning(f'{len(unknown_keys)} frozen parameters left out of the '
                                  'checkpoint do not exist in this model, for example '
                                  f'{unknown_keys[:5]}; the checkpoint was trained with '
                                  'a different model.')


MMENGINE_HOOKS.register_module(module=EpochCheckpointHook)
