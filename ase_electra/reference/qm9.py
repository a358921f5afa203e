"""Record names of the shared QM9 data set and its splits, and the record files of a folder.

Records of QM9 molecules are named ``qm9_<index>`` (six digits, ``qm9_005128.npz``); the
split is the last digit of the index: 0-7 train, 8 validation, 9 test.
"""

from __future__ import annotations

import os
import re
from pathlib import Path

import numpy as np

from ..errors import FileFormatError, InvalidInputError

__all__ = ["SPLITS", "list_records", "qm9_index", "split_of"]

#: QM9 splits by the last digit of the index: 0-7 train, 8 validation, 9 test.
SPLITS = ("train", "validation", "test")

_QM9_NAME = re.compile(r"(?:qm9|gdb)_(\d+)")


def qm9_index(name_or_path: str | os.PathLike) -> int:
    """The QM9 index in a record name or path: ``qm9_005128`` or ``.../qm9_005128.npz`` -> 5128.

    ``gdb_5128`` (QM9's own naming) is accepted too. Raises InvalidInputError otherwise.

    >>> qm9_index("qm9_005128.npz")
    5128
    """
    stem = Path(name_or_path).name.removesuffix(".npz")
    match = _QM9_NAME.fullmatch(stem)
    if match is None:
        raise InvalidInputError(f"{name_or_path}: not a QM9 record name (expected qm9_<index>, e.g. qm9_005128)")
    return int(match.group(1))


def split_of(index: int) -> str:
    """``'train'`` (last digit 0-7), ``'validation'`` (8) or ``'test'`` (9) for a QM9 index.

    >>> split_of(5128), split_of(18), split_of(129)
    ('validation', 'validation', 'test')
    """
    if isinstance(index, bool) or not isinstance(index, (int, np.integer)) or index < 0:
        raise InvalidInputError(f"QM9 index: expected an integer >= 0, got {index!r}")
    digit = int(index) % 10
    return "test" if digit == 9 else "validation" if digit == 8 else "train"


def list_records(folder: str | os.PathLike, split: str | None = None) -> list[Path]:
    """Record files (``*.npz``) in ``folder``, sorted by name; whatever files are present.

    With ``split``, only QM9-named records (:func:`qm9_index`) of that split.
    """
    folder = Path(folder)
    if split is not None and split not in SPLITS:
        raise InvalidInputError(f"split: expected one of {SPLITS}, got {split!r}")
    if not folder.is_dir():
        raise FileFormatError(f"{folder}: no such folder")
    paths = sorted(p for p in folder.glob("*.npz") if p.is_file() and not p.name.startswith("."))
    if split is None:
        return paths
    return [p for p in paths if _QM9_NAME.fullmatch(p.stem) and split_of(qm9_index(p)) == split]
