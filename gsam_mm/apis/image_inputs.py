"""Expand the image arguments of `tools/infer.py`: files, folders and globs."""
import glob
import os.path as osp
from collections.abc import Sequence
from pathlib import Path

from ..errors import InputError

# File extensions read as images, compared in lower case.
IMAGE_EXTENSIONS = ('.jpg', '.jpeg', '.png', '.bmp', '.tif', '.tiff', '.webp')


def collect_image_paths(inputs: Sequence[str]) -> list[str]:
    """Return the image files that the inputs name, each once, in order.

    A folder contributes its image files, recursively and sorted. A pattern
    with `*`, `?` or `[` is expanded by `glob`, where `**` recurses. A file
    is taken as given, whatever its extension.

    Raises:
        InputError: when an input does not exist, or a folder or pattern
            yields no image file.
    """
    paths: list[str] = []
    for item in inputs:
        if osp.isfile(item):
            paths.append(item)
        elif osp.isdir(item):
            found = sorted(str(path) for path in Path(item).rglob('*')
                           if path.is_file() and path.suffix.lower() in IMAGE_EXTENSIONS)
            if not found:
                raise InputError(f'folder {item} contains no image file '
                                 f'({", ".join(IMAGE_EXTENSIONS)})')
            paths.extend(found)
        elif glob.has_magic(item):
            found = sorted(path for path in glob.glob(item, recursive=True)
                           if osp.isfile(path) and Path(path).suffix.lower() in IMAGE_EXTENSIONS)
            if not found:
                raise InputError(f'pattern {item!r} matches no image file')
            paths.extend(found)
        else:
            raise InputError(f'input {item} not found: give image files, folders or glob '
                             'patterns such as "photos/*.jpg"')
    return list(dict.fromkeys(paths))
