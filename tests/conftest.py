"""Shared fixtures: a fixed seed for every test, and random mixtures."""

from __future__ import annotations

import shutil
from pathlib import Path

import numpy as np
import pytest
import torch

from ase_electra import GaussianMixture

#: The shared reference data, when the checkout sits beside ../shared (as in CI).
SHARED_DATA = Path(__file__).resolve().parents[1].parent / "shared" / "datasets" / "qm9-pbe-def2svp"


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
        pytest.skip(f"reference records {names} not in {SHARED_DATA}")
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
