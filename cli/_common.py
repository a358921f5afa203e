"""What every command shares: one-line errors, ``--device``, ``--version`` and ``--traceback``."""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterator
from typing import TypeVar

import click

from ase_electra.errors import ElectraError

F = TypeVar("F", bound=Callable)

traceback_option = click.option(
    "--traceback", is_flag=True, help="Show the full Python traceback on errors."
)


def version_option(command: F) -> F:
    """``--version``: print ``<command>, ase-electra <version>`` (the installed package's version).

    A fresh click option per command: click's version callback keeps the first program name it
    prints, so one shared option would name every command after the first one run.
    """
    return click.version_option(package_name="ase-electra", message="%(prog)s, ase-electra %(version)s")(command)


def _resolve_device(ctx: click.Context, param: click.Parameter, choice: str) -> str:
    """``auto`` -> ``cuda`` when torch sees a CUDA device, else ``cpu``; ``cuda`` without one is a
    one-line error here, before any file is read or model loaded."""
    if choice == "cpu" or ctx.resilient_parsing:
        return choice
    import torch

    cuda = torch.cuda.is_available()
    if choice == "cuda" and not cuda:
        raise click.ClickException(f"--device cuda: torch {torch.__version__} sees no CUDA device")
    return "cuda" if cuda else "cpu"


#: ``--device [auto|cpu|cuda]``: the command receives ``"cpu"`` or ``"cuda"``, checked once.
device_option = click.option(
    "--device", type=click.Choice(["auto", "cpu", "cuda"]), default="auto", callback=_resolve_device,
    help="Where the model runs; auto: CUDA when torch sees a device, else the CPU.",
)


@contextlib.contextmanager
def user_errors(traceback: bool) -> Iterator[None]:
    """Re-raise ase-electra errors (and OSError) as one-line ``click.ClickException``s."""
    try:
        yield
    except (ElectraError, OSError) as exc:
        if traceback:
            raise
        raise click.ClickException(str(exc).splitlines()[0] if str(exc) else exc.__class__.__name__) from exc
