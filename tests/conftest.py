"""Shared fixtures: a fixed seed for every test, random mixtures, and the shared reference data."""

from __future__ import annotations

import importlib.util
import os
import shutil
import sys
from pathlib import Path
from types import ModuleType
from typing import NoReturn

import numpy as np
import pytest
import torch

from ase_electra import GaussianMixture
from ase_electra.models import load_model

_BESIDE_CHECKOUT = Path(__file__).resolve().parents[2] / "shared" / "datasets"
#: The folder holding the reference data sets (qm9-pbe-def2svp/, ...): $ELECTRA_DATA, else
#: ../shared/datasets beside the checkout (as in CI).
DATA_ROOT = Path(os.environ.get("ELECTRA_DATA") or _BESIDE_CHECKOUT).expanduser()
SHARED_DATA = DATA_ROOT / "qm9-pbe-def2svp"


def skip_without_data(what: str) -> NoReturn:
    """Skip the test, saying which data is missing, where it was looked for, and how to point there."""
    pytest.skip(f"{what} not in {SHARED_DATA}: set ELECTRA_DATA to the folder holding qm9-pbe-def2svp/")


def shared_records() -> list[Path]:
    """The shared QM9 reference records, smallest file first; skips when there are none."""
    paths = sorted(SHARED_DATA.glob("qm9_*.npz"), key=lambda p: p.stat().st_size) if SHARED_DATA.is_dir() else []
    if not paths:
        skip_without_data("reference records qm9_*.npz")
    return paths


def load_benchmark(name: str) -> ModuleType:
    """``benchmarks/<name>.py`` imported as the module ``name`` (benchmarks/ is not a package)."""
    spec = importlib.util.spec_from_file_location(name, Path(__file__).resolve().parents[1] / "benchmarks" / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module  # dataclasses look their module up there
    spec.loader.exec_module(module)
    return module


def pytest_report_header() -> str:
    """One header line: where the reference data is looked for, and whether it is there."""
    found = "found" if SHARED_DATA.is_dir() else "missing: the tests that need it skip"
    return f"reference data (ELECTRA_DATA): {SHARED_DATA} ({found})"


@pytest.fixture(autouse=True)
def _seed() -> None:
    torch.manual_seed(0)
    np.random.seed(0)


def random_mixture(
    k: int,
    *,
    box: float = 4.0,
    width: tuple[float, float] = (0.15, 0.8),
    dtype: torch.dtype = torch.float64,
    generator: torch.Generator | None = None,
) -> GaussianMixture:
    """K Gaussians with random anisotropic covariances, centres in [0.5, box - 0.5]^3 Angstrom."""
    g = generator or torch.Generator().manual_seed(1)
    w = torch.rand(k, generator=g, dtype=dtype) + 0.1
    mu = torch.rand(k, 3, generator=g, dtype=dtype) * (box - 1.0) + 0.5
    q, _ = torch.linalg.qr(torch.randn(k, 3, 3, generator=g, dtype=dtype))
    s = torch.rand(k, 3, generator=g, dtype=dtype) * (width[1] - width[0]) + width[0]
    cov = q @ torch.diag_embed(s**2) @ q.transpose(-1, -2)
    return GaussianMixture.from_covariances(w, mu, 0.5 * (cov + cov.transpose(-1, -2)))


@pytest.fixture
def mixture() -> GaussianMixture:
    return random_mixture(12)


def copy_records(tmp_path_factory: pytest.TempPathFactory, names: tuple[str, ...]) -> Path:
    """A fresh folder holding copies of the named shared records; skips if they are absent."""
    if not all((SHARED_DATA / name).is_file() for name in names):
        skip_without_data(f"reference records {', '.join(names)}")
    folder = tmp_path_factory.mktemp("records")
    for name in names:
        shutil.copy(SHARED_DATA / name, folder / name)
    return folder


@pytest.fixture
def one_thread():
    """Tiny tensors: a second intra-op thread only adds contention on a shared 2-core machine."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


@pytest.fixture(scope="module")
def default_model():
    """The shipped default model (read once per test module)."""
    return load_model("default")


@pytest.fixture(scope="module")
def promolecule():
    """The promolecule model (free atoms, H to Kr)."""
    return load_model("promolecule")
