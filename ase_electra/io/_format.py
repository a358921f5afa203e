"""Fast fixed-width text for large arrays of floats: the writers' bottleneck.

Python's ``"%13.5e" % value`` costs about a microsecond per value, so a 3-million-point
cube file takes seconds to write. Here chunks of values become ASCII with numpy integer
arithmetic: the exponent comes from ``log10``, the mantissa is rounded to an integer of
``digits + 1`` digits, its digits are looked up three at a time in a table of "000" to
"999", and the bytes of each field are packed into 8-, 4-, 2- and 1-byte words written
through a structured view of the output buffer (few, wide copies instead of one per
character). The text is what C's ``%{width}.{digits}e`` prints, except that the last
digit can differ by one in rare rounding ties, so any float parser reads it back.
Chunks are formatted on worker threads (numpy releases the GIL) and written in order.

Legend: P values in a chunk, R rows, L values per row, W field width in bytes.
"""

from __future__ import annotations

import os
from collections import deque
from concurrent.futures import ThreadPoolExecutor
from typing import BinaryIO

import numpy as np

from ..errors import InvalidInputError

__all__ = ["write_rows"]

#: Values formatted per chunk; work memory is about 150 bytes per value per thread.
_CHUNK_VALUES = 1 << 16

#: Magnitudes below this are written as zero, so exponents always have two digits.
_SMALLEST = 1e-99

_U64 = np.uint64
_POW10_RANGE = 120  # powers of ten needed: |digits - exponent| <= 14 + 100
_POW10 = np.array([float(f"1e{k}") for k in range(-_POW10_RANGE, _POW10_RANGE + 1)])  # correctly rounded
_TRIPLETS = np.array([int.from_bytes(b"%03d" % i, "little") for i in range(1000)], dtype=_U64)
_PAIRS = np.array([int.from_bytes(b"%02d" % i, "little") for i in range(100)], dtype=_U64)


def _scaled(a: np.ndarray, power: np.ndarray) -> np.ndarray:
    """``rint(a * 10**power)`` for (P,) magnitudes and integer powers."""
    return np.rint(a * np.take(_POW10, power + _POW10_RANGE))


def _decompose(x: np.ndarray, digits: int) -> tuple[np.ndarray, np.ndarray]:
    """Exponent (P,) int64 and mantissa (P,) uint64 of ``digits + 1`` digits, of ``|x|``."""
    a = np.abs(x)  # (P,)
    if a.max(initial=0.0) >= 1e100:
        raise InvalidInputError(f"values: {a.max():.6e} needs a 3-digit exponent; at most 1e100")
    a[a < _SMALLEST] = 0.0
    nonzero = a > 0
    log = np.log10(a, where=nonzero, out=np.zeros_like(a))  # zero keeps exponent 0
    exponent = np.floor(log, out=log).astype(np.int64)
    mantissa = _scaled(a, digits - exponent)
    # log10 can miss by one next to powers of ten, and rounding can carry into a new digit.
    low, high = 10.0**digits, 10.0 ** (digits + 1)
    for bad, step in ((mantissa >= high, 1), (nonzero & (mantissa < low), -1)):
        if bad.any():
            exponent[bad] += step
            mantissa[bad] = _scaled(a[bad], digits - exponent[bad])
    if exponent.max(initial=0) > 99:
        raise InvalidInputError(f"values: {a.max():.6e} rounds to 1e100, beyond a 2-digit exponent")
    return exponent, mantissa.astype(_U64)


def _words(width: int) -> list[tuple[int, int]]:
    """Split ``width`` bytes into (offset, size) words of 8, 4, 2 and 1 bytes."""
    words, start = [], 0
    for size in (8, 4, 2, 1):
        while width - start >= size:
            words.append((start, size))
            start += size
    return words


def _fields(x: np.ndarray, width: int, digits: int, exp_char: str) -> np.ndarray:
    """Format ``x`` (P,) as right-aligned ``%{width}.{digits}e`` fields, uint8 (P, W)."""
    exponent, m = _decompose(x, digits)
    first = width - digits - 6  # column of the leading mantissa digit
    unit = _U64(10**digits)
    lead = m // unit
    rest = m - lead * unit  # the digits after the decimal point
    # (column, length, little-endian bytes) of everything that varies between values
    pieces = [
        (first - 1, 1, np.where(np.signbit(x), _U64(ord("-")), _U64(ord(" ")))),
        (first, 1, lead + _U64(ord("0"))),
        (width - 3, 1, np.where(exponent < 0, _U64(ord("-")), _U64(ord("+")))),
        (width - 2, 2, np.take(_PAIRS, np.abs(exponent))),
    ]
    stop = first + 2 + digits
    while stop > first + 2:  # decimals in triplets, last triplet first
        start = max(stop - 3, first + 2)
        q = rest // _U64(1000)
        triplet = np.take(_TRIPLETS, (rest - q * _U64(1000)).astype(np.intp))
        if stop - start < 3:  # a short leading group: drop its padding zeros
            triplet >>= _U64(8 * (3 - (stop - start)))
        pieces.append((start, stop - start, triplet))
        rest, stop = q, start
    template = bytearray(b" " * width)  # constant bytes; zero where a piece goes
    template[first + 1] = ord(".")
    template[width - 4] = ord(exp_char)
    for column, length, _ in pieces:
        template[column : column + length] = bytes(length)

    words = _words(width)
    out = np.empty(len(x) * width, dtype=np.uint8)
    view = out.view(
        np.dtype(
            {
                "names": [f"w{i}" for i in range(len(words))],
                "formats": [f"<u{size}" for _, size in words],
                "offsets": [offset for offset, _ in words],
                "itemsize": width,
            }
        )
    )
    for i, (offset, size) in enumerate(words):
        word = np.full(len(x), int.from_bytes(template[offset : offset + size], "little"), dtype=_U64)
        for column, length, value in pieces:
            if column < offset + size and column + length > offset:
                shift = 8 * (column - offset)
                word |= value << _U64(shift) if shift >= 0 else value >> _U64(-shift)
        view[f"w{i}"] = word  # bytes beyond the word's size are dropped
    return out.reshape(len(x), width)


def _lines(chunk: np.ndarray, per_line: int, width: int, digits: int, exp_char: str) -> np.ndarray:
    """Text of rows (R, L): each row as lines of ``per_line`` fields, newline-terminated."""
    r, length = chunk.shape
    full, rem = divmod(length, per_line)
    line_bytes = per_line * width + 1
    fields = _fields(chunk.ravel(), width, digits, exp_char).reshape(r, length * width)
    out = np.empty((r, full * line_bytes + (rem * width + 1 if rem else 0)), dtype=np.uint8)
    if full:
        lines = out[:, : full * line_bytes].reshape(r, full, line_bytes)
        lines[:, :, :-1] = fields[:, : full * per_line * width].reshape(r, full, per_line * width)
        lines[:, :, -1] = ord("\n")
    if rem:
        out[:, full * line_bytes : -1] = fields[:, full * per_line * width :]
        out[:, -1] = ord("\n")
    return out


def write_rows(
    fh: BinaryIO,
    rows: np.ndarray,
    per_line: int,
    width: int,
    digits: int,
    exp_char: str = "e",
    threads: int | None = None,
) -> None:
    """Write a 2-D array as text, each row broken into lines of ``per_line`` values.

    Every row ends with a line break, so a row of L values takes ``ceil(L / per_line)``
    lines and the last may be short (the cube layout: one row per (x, y) column). For
    one continuous stream, pass rows of shape ``(n, per_line)`` and the tail separately.

    Parameters
    ----------
    fh : binary file
        Destination, open for writing bytes.
    rows : ndarray, shape (R, L)
        Values, any real dtype; written row by row.
    per_line : int
        Values per line.
    width, digits : int
        Field width and digits after the decimal point, as in ``%{width}.{digits}e``;
        ``1 <= digits <= 14`` (mantissas stay exact in float64); ``width >= digits + 8``
        keeps a space before every field.
    exp_char : str
        ``"e"`` or ``"E"``.
    threads : int, optional
        Formatting threads; default: the CPU count, at most 4.

    Magnitudes below 1e-99 are written as (signed) zero; values that round to 1e100 or
    more raise :class:`InvalidInputError`.
    """
    if not 1 <= digits <= 14 or width < digits + 8:
        raise InvalidInputError(
            f"format: expected 1 <= digits <= 14 and width >= digits + 8, got {width}.{digits}"
        )
    if exp_char not in ("e", "E"):
        raise InvalidInputError(f"exp_char: expected 'e' or 'E', got {exp_char!r}")
    rows = np.asarray(rows, dtype=np.float64)
    if rows.ndim != 2:
        raise InvalidInputError(f"rows: expected a 2-D array, got shape {rows.shape}")
    if rows.size == 0:
        return
    step = max(1, _CHUNK_VALUES // rows.shape[1])
    chunks = (rows[i : i + step] for i in range(0, len(rows), step))
    args = (per_line, width, digits, exp_char)
    threads = threads or min(os.cpu_count() or 1, 4)
    if threads == 1 or len(rows) <= step:
        for chunk in chunks:
            fh.write(_lines(chunk, *args).data)
        return
    with ThreadPoolExecutor(threads) as pool:
        pending: deque = deque()  # at most two chunks per thread in flight, written in order
        for chunk in chunks:
            pending.append(pool.submit(_lines, chunk, *args))
            if len(pending) >= 2 * threads:
                fh.write(pending.popleft().result().data)
        while pending:
            fh.write(pending.popleft().result().data)
