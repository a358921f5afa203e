"""The wheel: its file list, and package data found from a non-editable install.

The wheel is built offline (``pip wheel --no-build-isolation --no-index``) from a copy of
the source tree, so the checkout gets no ``build/`` folder, then installed with
``pip install --target`` and imported by a fresh interpreter in another folder. That
interpreter runs with ``-S`` (no site-packages, so no editable-install hook) and the
venv's site-packages on ``PYTHONPATH`` for the dependencies.
"""

from __future__ import annotations

import fnmatch
import importlib.metadata
import os
import shutil
import subprocess
import sys
import sysconfig
import zipfile
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
#: Must match [tool.setuptools.package-data] "ase_electra.weights" in pyproject.toml.
WEIGHT_PATTERNS = ("__init__.py", "default/*.json", "default/*.safetensors", "*.md")

pytestmark = pytest.mark.slow


def _pip(*args: str, cwd: Path) -> None:
    result = subprocess.run([sys.executable, "-m", "pip", *args], cwd=cwd, capture_output=True, text=True)
    assert result.returncode == 0, result.stdout[-2000:] + result.stderr[-2000:]


@pytest.fixture(scope="module")
def wheel(tmp_path_factory) -> Path:
    """A wheel built from a copy of the checkout."""
    root = tmp_path_factory.mktemp("wheel")
    source = root / "src"
    source.mkdir()
    ignore = shutil.ignore_patterns("__pycache__", "*.pyc", ".*")
    for name in ("ase_electra", "cli", "weights"):
        shutil.copytree(REPO / name, source / name, ignore=ignore)
    for name in ("pyproject.toml", "README.md", "LICENSE"):
        if (REPO / name).is_file():
            shutil.copy(REPO / name, source / name)
    _pip("wheel", "--no-deps", "--no-build-isolation", "--no-index", "-q", "-w", str(root / "dist"), str(source),
         cwd=root)
    (built,) = (root / "dist").glob("ase_electra-*.whl")
    return built


@pytest.fixture(scope="module")
def installed(wheel, tmp_path_factory) -> Path:
    """The wheel installed into a bare folder."""
    target = tmp_path_factory.mktemp("site")
    _pip("install", "--no-deps", "--no-index", "-q", "--target", str(target), str(wheel), cwd=target)
    return target


def run_installed(target: Path, code: str, cwd: Path) -> str:
    """Run ``code`` in a fresh interpreter that sees only ``target`` and the venv's dependencies."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("PYTHON")}
    paths = sysconfig.get_paths()
    env["PYTHONPATH"] = os.pathsep.join([str(target), paths["purelib"], paths["platlib"]])
    env["OMP_NUM_THREADS"] = "1"
    result = subprocess.run([sys.executable, "-S", "-c", code], cwd=cwd, env=env, capture_output=True, text=True)
    assert result.returncode == 0, result.stderr[-3000:]
    return result.stdout


def test_wheel_contents(wheel):
    names = set(zipfile.ZipFile(wheel).namelist())
    for required in (
        "ase_electra/__init__.py",
        "ase_electra/calculator.py",
        "ase_electra/render.py",
        "ase_electra/cli/density.py",
        "ase_electra/evaluate/gaussians.cu",
        "ase_electra/models/promolecule.json",
        "ase_electra/reference/records.py",
        "ase_electra/weights/__init__.py",
    ):
        assert required in names
    weights = [p.relative_to(REPO / "weights").as_posix() for p in (REPO / "weights").rglob("*") if p.is_file()]
    for rel in weights:
        if any(fnmatch.fnmatch(rel, pattern) and rel.count("/") == pattern.count("/") for pattern in WEIGHT_PATTERNS):
            assert f"ase_electra/weights/{rel}" in names
    top = {name.split("/")[0] for name in names}
    assert {t for t in top if not t.endswith(".dist-info")} == {"ase_electra"}  # no bare cli/ or weights/
    (entry_points,) = [n for n in names if n.endswith(".dist-info/entry_points.txt")]
    assert "electra-density = ase_electra.cli.density:main" in zipfile.ZipFile(wheel).read(entry_points).decode()


def test_installed_wheel_finds_package_data(installed, tmp_path):
    code = f"""
import sys
from importlib import resources
from pathlib import Path
import ase_electra
assert Path(ase_electra.__file__).is_relative_to({str(installed)!r}), ase_electra.__file__
assert 'torch' not in sys.modules
from ase.build import molecule
from ase_electra.models import load_model
mixture = load_model('promolecule').predict([molecule('H2O')])
print('electrons', float(mixture.integral()[0]))
print('kernel', resources.files('ase_electra.evaluate').joinpath('gaussians.cu').is_file())
"""
    out = run_installed(installed, code, cwd=tmp_path)
    assert "electrons 10.0" in out and "kernel True" in out


def test_installed_scripts_name_themselves_and_the_version(installed, tmp_path):
    env = {k: v for k, v in os.environ.items() if not k.startswith("PYTHON")}
    env["PYTHONPATH"] = str(installed)
    version = importlib.metadata.version("ase-electra")
    for name in ("electra-train", "electra-score"):
        result = subprocess.run([str(installed / "bin" / name), "--version"], cwd=tmp_path, env=env,
                                capture_output=True, text=True)
        assert result.returncode == 0, result.stderr[-3000:]
        assert result.stdout == f"{name}, ase-electra {version}\n"


def test_installed_wheel_loads_the_shipped_default_model(installed, tmp_path):
    """The wheel ships weights/default (config.json, model.safetensors) and loads it from elsewhere."""
    code = """
from ase.build import molecule
from ase_electra.models import load_model
model = load_model('default')
print('loaded:', model.name, round(float(model.predict([molecule('H2O')]).integral()[0]), 3))
"""
    out = run_installed(installed, code, cwd=tmp_path)
    assert out.startswith("loaded: electra:default 10.0"), out


def test_editable_install_maps_the_weights_folder():
    """The development install resolves ase_electra.weights to weights/ (rerun `pip install -e .` if not)."""
    import ase_electra.weights

    assert Path(ase_electra.weights.__file__).parent == REPO / "weights"
