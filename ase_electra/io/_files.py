"""Checks every reader shares: one-line messages that name the file and the problem."""

from __future__ import annotations

import os
from pathlib import Path

from ..errors import FileFormatError

__all__ = ["require_file", "first_line"]


def require_file(path: str | os.PathLike) -> Path:
    """``path`` as a Path; FileFormatError if it is missing or a folder."""
    path = Path(path)
    if not path.is_file():
        raise FileFormatError(f"{path}: {'is a folder, not a file' if path.is_dir() else 'no such file'}")
    return path


def first_line(err: Exception) -> str:
    """``Type: first line of the message`` of an exception, for one-line errors."""
    text = str(err).strip()
    return f"{type(err).__name__}: {text.splitlines()[0]}" if text else type(err).__name__
