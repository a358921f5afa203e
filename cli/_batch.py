"""What electra-density and electra-properties share: a progress bar, refused frames, the summary."""

from __future__ import annotations

import sys
from collections.abc import Callable
from pathlib import Path

import click

from ._common import user_errors


def run_batch(run: Callable, out: Path, traceback: bool) -> None:
    """Call ``run(progress=..., report=...)``, print its summary, exit 1 if it refused frames.

    ``progress`` wraps the frames to do in a tqdm bar on stderr (a terminal only: none in
    logs and pipes); ``report`` writes each refused frame's line above the bar. The bar
    is closed before any final message, so errors never land on its line.
    """
    from tqdm import tqdm

    bars: list[tqdm] = []

    def progress(todo):
        bars.append(tqdm(todo, desc="frames", unit="frame", dynamic_ncols=True, file=sys.stderr, disable=None))
        return bars[-1]

    def report(line: str) -> None:
        with tqdm.external_write_mode(file=sys.stderr):  # clears the bar, writes, redraws it below
            click.echo(line, err=True)

    with user_errors(traceback):
        try:
            summary = run(progress=progress, report=report)
        finally:
            for bar in bars:
                bar.close()
    click.echo(summary.line(out))
    if summary.failure:
        raise click.ClickException(summary.failure)
