"""Atomic file writing: a reader never sees a half-written file.

Writers write to a temporary file in the target's folder (same file system) and
``os.replace`` it onto the target only once everything is written; on any failure,
interrupts included, the temporary file is removed and the target left untouched.
"""

from __future__ import annotations

import os
import secrets
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from ..errors import FileFormatError

__all__ = ["atomic_path"]


@contextmanager
def atomic_path(target: str | os.PathLike) -> Iterator[Path]:
    """Yield a fresh temporary path next to ``target``; move it onto ``target`` on success.

    The temporary file is created empty (permissions as for a new file under the current
    umask) and named ``.<target name>.<random>.tmp``; the caller opens and fills it.

    Raises
    ------
    FileFormatError
        If the target's folder is missing or not writable.

    Examples
    --------
    >>> import tempfile
    >>> target = Path(tempfile.mkdtemp()) / "out.txt"
    >>> with atomic_path(target) as tmp:
    ...     _ = tmp.write_text("done")
    >>> target.read_text()
    'done'
    """
    target = Path(target)
    tmp = target.with_name(f".{target.name}.{secrets.token_hex(4)}.tmp")
    try:
        os.close(os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o666))
    except OSError as err:
        raise FileFormatError(f"{target}: cannot write: {err.strerror}") from err
    done = False
    try:
        yield tmp
        os.replace(tmp, target)
        done = True
    finally:
        if not done:
            tmp.unlink(missing_ok=True)
