"""What every command shares: --version and the --device check."""

import importlib.metadata
import warnings

import click
import pytest
import torch
from click.testing import CliRunner

from ase_electra.cli import blend, label, scf, score, train

COMMANDS = {"electra-train": train.main, "electra-label": label.main, "electra-scf": scf.main,
            "electra-score": score.main, "electra-blend": blend.main}


@pytest.mark.parametrize("name", sorted(COMMANDS))
def test_version_names_the_command_and_the_installed_package(name):
    result = CliRunner().invoke(COMMANDS[name], ["--version"])
    assert result.exit_code == 0, result.output
    assert result.output == f"{name}, ase-electra {importlib.metadata.version('ase-electra')}\n"


@pytest.mark.skipif(torch.cuda.is_available(), reason="needs a torch without a CUDA device")
def test_device_cuda_without_cuda_is_one_line_before_any_work(tmp_path):
    result = CliRunner().invoke(train.main, [str(tmp_path / "missing"), "-o", str(tmp_path / "run"),
                                             "--device", "cuda"])
    assert result.exit_code == 1
    assert result.output == f"Error: --device cuda: torch {torch.__version__} sees no CUDA device\n"
    assert not (tmp_path / "run").exists()


@pytest.mark.parametrize(("choice", "expected"), [("cpu", "cpu"), ("auto", "cuda" if torch.cuda.is_available()
                                                                              else "cpu")])
def test_device_is_resolved_before_the_command_runs(choice, expected):
    from ase_electra.cli._common import device_option

    @click.command()
    @device_option
    def show(device):
        click.echo(device)

    result = CliRunner().invoke(show, ["--device", choice])
    assert result.exit_code == 0, result.output
    assert result.output == f"{expected}\n"


@pytest.mark.parametrize("name", sorted(COMMANDS))
def test_every_option_has_help(name):
    options = [p for p in COMMANDS[name].params if isinstance(p, click.Option)]
    assert options
    assert [p.name for p in options if not p.help] == []


def _water(folder):
    from ase.build import molecule
    from ase.io import write

    path = folder / "water.xyz"
    write(path, molecule("H2O"))
    return path


@pytest.mark.parametrize(
    ("name", "args", "message"),
    [
        ("electra-scf", ["{water}", "--model", "promolecule", "--basis", "no-such-basis"], "no-such-basis"),
        ("electra-scf", ["{water}", "--model", "promolecule", "--spin", "1"], "cannot have spin 1"),
        ("electra-label", ["{water}", "-o", "{tmp}/out", "--charge", "1"], "9 electrons"),
        ("electra-score", ["{tmp}/missing.cube", "{water}"], "missing.cube"),
        ("electra-train", ["{tmp}", "-o", "{tmp}/run"], "no reference records"),
    ],
)
def test_errors_are_one_line(tmp_path, name, args, message):
    if name in ("electra-scf", "electra-label"):
        pytest.importorskip("pyscf")
    water = _water(tmp_path)
    with warnings.catch_warnings(record=True) as caught:  # a warning would print before the error
        warnings.simplefilter("always")
        result = CliRunner().invoke(COMMANDS[name], [a.format(water=water, tmp=tmp_path) for a in args])
    assert [str(w.message) for w in caught] == []
    assert result.exit_code == 1
    assert result.output.startswith("Error: ") and result.output.count("\n") == 1, result.output
    assert message in result.output
