"""What every command shares: turning library errors into one-line click errors."""

from __future__ import annotations

import contextlib
from collections.abc import Iterator

import click

from ase_electra.errors import ElectraError

traceback_option = click.option(
    "--traceback", is_flag=True, help="Show the full Python traceback on errors."
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
