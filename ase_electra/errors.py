"""Exceptions raised by ase-electra.

Every error a user can cause derives from :class:`ElectraError`, and also from the
builtin it refines (``ValueError`` for bad values, ``OSError`` for bad files), so
callers can catch either. Messages are one line and name the quantity or file and
the problem.
"""

from __future__ import annotations

__all__ = [
    "ElectraError",
    "InvalidInputError",
    "FileFormatError",
    "GridTooLargeError",
    "UnknownElementError",
    "SCFNotConvergedError",
    "MissingDependencyError",
]


class ElectraError(Exception):
    """Base class of all ase-electra errors."""


class InvalidInputError(ElectraError, ValueError):
    """A value is malformed: wrong shape, non-finite, empty, not positive definite."""


class FileFormatError(ElectraError, OSError):
    """A file is missing, unreadable or corrupt."""


class GridTooLargeError(ElectraError, MemoryError):
    """A requested grid would exceed the memory bound."""


class UnknownElementError(InvalidInputError):
    """A structure holds an element the model does not know."""


class SCFNotConvergedError(ElectraError, RuntimeError):
    """A reference calculation's Kohn-Sham iterations did not converge."""


class MissingDependencyError(ElectraError, ImportError):
    """An optional package that the requested work needs is not installed; says how to install it."""
