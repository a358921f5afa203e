"""The example scripts run as a user would run them, in a fresh folder, and write their outputs."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

EXAMPLES = Path(__file__).resolve().parents[1] / "examples"

pytestmark = pytest.mark.slow


def run_example(script: str, out: Path, *args: str) -> str:
    env = {**os.environ, "OMP_NUM_THREADS": "1", "MPLBACKEND": "Agg"}
    result = subprocess.run([sys.executable, str(EXAMPLES / script), str(out), *args], cwd=out.parent, env=env,
                            capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr[-3000:]
    return result.stdout


def test_predict_cube(tmp_path):
    out = run_example("predict_cube.py", tmp_path / "out", "--molecule", "H2O", "--spacing", "0.25")
    assert (tmp_path / "out" / "H2O.cube").stat().st_size > 0
    assert "10.000 electrons" in out


def test_crystal_chgcar(tmp_path):
    out = run_example("crystal_chgcar.py", tmp_path / "out", "--spacing", "0.25")
    assert (tmp_path / "out" / "Si.chgcar").stat().st_size > 0
    assert "model electra:default (crystals): 28.000 electrons (analytic), 28.000 on the grid" in out


def test_convert_trajectory(tmp_path):
    out = run_example("convert_trajectory.py", tmp_path / "out", "--frames", "2", "--png")
    names = sorted(p.name for p in (tmp_path / "out" / "densities").iterdir())
    assert names == ["ethanol_md_0.cube", "ethanol_md_0.png", "ethanol_md_1.cube", "ethanol_md_1.png"]
    assert (tmp_path / "out" / "ethanol_md.xyz").is_file()
    picture = (tmp_path / "out" / "densities" / "ethanol_md_0.png").read_bytes()
    assert picture.startswith(b"\x89PNG\r\n\x1a\n") and len(picture) < 400_000
    assert "2 frames: 2 written" in out


def test_train_tiny(tmp_path):
    pytest.importorskip("pyscf")
    out = run_example("train_tiny.py", tmp_path / "out", "--epochs", "2")
    for rel in ("run/best/config.json", "run/best/model.safetensors", "run/log.csv", "qm9_005128.cube"):
        assert (tmp_path / "out" / rel).is_file()
    assert "2 steps" in out


def test_score_reference(tmp_path):
    pytest.importorskip("pyscf")
    out = run_example("score_reference.py", tmp_path / "out", "--model", "promolecule", "--spacing", "0.3")
    assert (tmp_path / "out" / "qm9_005128.cube").is_file()
    assert "NMAE" in out


def test_scf_from_prediction(tmp_path):
    pytest.importorskip("pyscf")
    out = run_example("scf_from_prediction.py", tmp_path / "out", "--molecule", "H2O", "--basis", "sto-3g")
    assert (tmp_path / "out" / "H2O.chk").is_file()
    energies = [float(line.split("E = ")[1].split()[0]) for line in out.splitlines() if "E = " in line]
    assert len(energies) == 2 and abs(energies[0] - energies[1]) < 1e-6
