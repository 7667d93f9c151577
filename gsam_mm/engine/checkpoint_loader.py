"""Weights-only loading of local MMEngine checkpoints on torch >= 2.6.

Since torch 2.6, ``torch.load`` defaults to ``weights_only=True``. MMEngine
0.10.7 calls ``torch.load`` without that argument. The checkpoints its own
Runner writes contain objects that the weights-only unpickler rejects by
default. The message hub stores :class:`~mmengine.logging.HistoryBuffer`
objects, which contain numpy arrays and refer to their statistics methods, and
metric values can be numpy scalars. ``--resume`` and ``load_from`` on such a
file therefore fail with ``UnpicklingError: Weights only load failed``.

Importing this module registers :func:`load_from_local` for local paths (the
``''`` scheme of :class:`~mmengine.runner.CheckpointLoader`), replacing
MMEngine's loader of the same name. It still loads with ``weights_only=True``
and allowlists exactly those types, and only for the duration of the call.
Other schemes (``http://``, ``s3://``, ...) keep MMEngine's loaders.
"""
import os.path as osp
import pickle
from typing import Any, Callable, Optional, Union

import numpy as np
import torch
from mmengine.logging import HistoryBuffer
from mmengine.runner import CheckpointLoader

SafeGlobal = Union[Callable, tuple[Callable, str]]

# Methods that HistoryBuffer registers itself and pickles by reference.
HISTORY_BUFFER_STATISTICS = ('min', 'max', 'current', 'mean')

# numpy array dtypes (bool, integers, floats, complex, bytes and str); object
# arrays are left out.
NUMPY_DTYPE_CODES = '?bBhHiIlLqQefdgFDGSU'


def _get_history_buffer_statistic(owner: Any, name: str) -> Callable:
    """Resolve ``getattr(HistoryBuffer, name)`` for a default statistics method.

    Pickle protocol 2, the protocol ``torch.save`` uses, stores a method such
    as ``HistoryBuffer.mean`` as the call ``getattr(HistoryBuffer, 'mean')``.
    This function replaces ``builtins.getattr`` during the load, because the
    real ``getattr`` would let a file read any attribute of any allowlisted
    object.

    Raises:
        pickle.UnpicklingError: for any other owner or attribute name.
    """
    if owner is not HistoryBuffer or name not in HISTORY_BUFFER_STATISTICS:
        raise pickle.UnpicklingError(
            f'Checkpoint calls getattr({owner!r}, {name!r}); the weights-only loader '
            f'of gsam_mm only allows getattr(HistoryBuffer, name) for name in '
            f'{HISTORY_BUFFER_STATISTICS}.')
    return getattr(HistoryBuffer, name)


def mmengine_checkpoint_safe_globals() -> list[SafeGlobal]:
    """Return the non-tensor globals that MMEngine training checkpoints contain.

    The list is in the form ``torch.serialization.safe_globals`` accepts: a
    callable, or a ``(callable, name)`` pair for a callable stored under a name
    other than its own.
    """
    # numpy 2 renamed numpy.core to numpy._core; files written under numpy 1
    # refer to the old module path.
    multiarray = np._core.multiarray if hasattr(np, '_core') else np.core.multiarray
    safe_globals: list[SafeGlobal] = [
        HistoryBuffer,
        (_get_history_buffer_statistic, 'builtins.getattr'),
        np.ndarray,
        np.dtype,
    ]
    # The weights-only unpickler also checks the type of each unpickled dtype,
    # which is a subclass per kind (numpy.dtypes.Float64DType, ...).
    safe_globals.extend({type(np.dtype(code)) for code in NUMPY_DTYPE_CODES})
    for module_path in ('numpy.core.multiarray', 'numpy._core.multiarray'):
        safe_globals.append((multiarray._reconstruct, f'{module_path}._reconstruct'))
        safe_globals.append((multiarray.scalar, f'{module_path}.scalar'))
    return safe_globals


def load_from_local(filename: str,
                    map_location: Optional[Union[str, Callable, torch.device]] = None) -> Any:
    """Load a local checkpoint with ``torch.load`` and the MMEngine allowlist.

    ``weights_only`` is left to torch's default, so on torch >= 2.6 the load is
    weights-only, and a user who trusts a file that needs more can still set
    torch's ``TORCH_FORCE_NO_WEIGHTS_ONLY_LOAD=1``.

    Args:
        filename: Path of the checkpoint; ``~`` is expanded.
        map_location: Passed to ``torch.load``.

    Returns:
        The unpickled checkpoint, usually a dict.

    Raises:
        FileNotFoundError: when the file does not exist.
        pickle.UnpicklingError: when the file contains a type outside the
            allowlist; the message names that type and the ways to load it.
    """
    path = osp.expanduser(filename)
    if not osp.isfile(path):
        raise FileNotFoundError(f'Checkpoint file {path} not found.')

    # safe_globals removes its entries on exit, so entries the user added
    # beforehand with add_safe_globals are not passed again.
    already_allowed = torch.serialization.get_safe_globals()
    extra_globals = [entry for entry in mmengine_checkpoint_safe_globals()
                     if entry not in already_allowed]
    try:
        with torch.serialization.safe_globals(extra_globals):
            return torch.load(path, map_location=map_location)
    except pickle.UnpicklingError as err:
        raise pickle.UnpicklingError(
            f'Failed to load checkpoint {path} with weights_only=True: it contains a type '
            'that MMEngine checkpoints do not normally hold. If you trust the file, '
            'allowlist the type named below with torch.serialization.add_safe_globals '
            'before loading, or set TORCH_FORCE_NO_WEIGHTS_ONLY_LOAD=1 to load it with '
            f'full pickle, which can run code stored in the file.\n{err}') from err


def install_checkpoint_loader() -> None:
    """Register :func:`load_from_local` as MMEngine's loader for local paths."""
    CheckpointLoader.register_scheme(prefixes='', loader=load_from_local, force=True)


install_checkpoint_loader()
