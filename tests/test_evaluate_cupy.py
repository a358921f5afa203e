"""The CUDA kernel (``ase_electra/evaluate/gaussians.cu``) against the torch reference.

Without a GPU the kernel source is still checked: nvcc compiles it to PTX for sm_90, and
g++ compiles the same source through ``tests/gpu_shim/shim.cpp`` into a host library that
runs every block and thread of a launch serially. With CuPy and a CUDA device,
``backend="cupy"`` is compared with ``backend="torch"`` directly.

Tolerances are relative to the largest grid value: points on the cut-off surface may fall
on either side of it in the two evaluators, which moves a value by at most
exp(-n_sigma^2 / 2) = 3.7e-6 of that Gaussian's peak.
"""

from __future__ import annotations

import ctypes
import importlib.util
import shutil
import subprocess
from pathlib import Path

import numpy as np
import pytest
import torch

from ase_electra.evaluate import evaluate, select_backend
from ase_electra.evaluate._boxes import grid_tensors, index_boxes
from ase_electra.gaussians import DEFAULT_N_SIGMA, GaussianMixture
from ase_electra.grid import Grid

ROOT = Path(__file__).resolve().parents[1]
KERNEL_DIR = ROOT / "ase_electra" / "evaluate"
SHIM = ROOT / "tests" / "gpu_shim" / "shim.cpp"

#: Threads per block compiled into the PTX and the shim; any value works for the tests.
TEST_BLOCK = 128

#: Largest error allowed, relative to the largest grid value, per dtype.
RTOL = {torch.float64: 1e-5, torch.float32: 5e-5}

CASES = ("molecule", "periodic", "mixed")


def _gpu_with_cupy() -> bool:
    if not torch.cuda.is_available() or importlib.util.find_spec("cupy") is None:
        return False
    import cupy

    return cupy.cuda.runtime.getDeviceCount() > 0


needs_gpu = pytest.mark.skipif(not _gpu_with_cupy(), reason="needs CuPy and a CUDA device")


# ---------------------------------------------------------------------------- fixtures


@pytest.fixture
def rng() -> np.random.Generator:
    return np.random.default_rng(0)


@pytest.fixture(scope="module")
def shim(tmp_path_factory: pytest.TempPathFactory) -> ctypes.CDLL:
    """gaussians.cu compiled for the host by g++ through the shim."""
    compiler = shutil.which("g++")
    if compiler is None:
        pytest.skip("g++ not found")
    library = tmp_path_factory.mktemp("shim") / "libgaussians_shim.so"
    command = [
        compiler, "-O2", "-std=c++17", "-shared", "-fPIC", "-Wall", "-Werror",
        f"-DBLOCK={TEST_BLOCK}", f"-I{KERNEL_DIR}", str(SHIM), "-o", str(library),
    ]  # fmt: skip
    result = subprocess.run(command, capture_output=True, text=True)
    assert result.returncode == 0, result.stderr
    lib = ctypes.CDLL(str(library))
    for name, real in (("evaluate_boxes_f32", ctypes.c_float), ("evaluate_boxes_f64", ctypes.c_double)):
        getattr(lib, name).argtypes = (
            [ctypes.c_uint, ctypes.c_uint]
            + [ctypes.c_void_p] * 6
            + [ctypes.c_longlong] * 3
            + [real, ctypes.c_longlong, ctypes.c_void_p]
        )
        getattr(lib, name).restype = None
    return lib


# ---------------------------------------------------------------------------- helpers


def _mixture(rng: np.random.Generator, centres: np.ndarray, sigma: tuple[float, float]) -> GaussianMixture:
    """Random anisotropic Gaussians at ``centres`` (K, 3) with axis widths log-uniform in ``sigma``, A."""
    k = len(centres)
    widths = np.exp(rng.uniform(np.log(sigma[0]), np.log(sigma[1]), (k, 3)))  # (K, 3)
    L = np.zeros((k, 3, 3))
    L[:, [0, 1, 2], [0, 1, 2]] = widths
    row, col = np.tril_indices(3, -1)
    L[:, row, col] = rng.normal(0.0, 0.3, (k, 3)) * np.sqrt(widths[:, row] * widths[:, col])
    weights = rng.uniform(0.1, 2.0, k)
    return GaussianMixture(
        torch.tensor(weights), torch.tensor(np.asarray(centres, dtype=np.float64)), torch.tensor(L)
    )


def _case(name: str, rng: np.random.Generator) -> tuple[GaussianMixture, Grid]:
    """A float64 mixture and its grid: molecular box, skewed periodic cell or mixed pbc."""
    if name == "molecule":
        atoms = rng.uniform(0.0, 3.0, (5, 3))
        grid = Grid.for_molecule(atoms, spacing=0.2, margin=1.5)
        near = atoms[rng.integers(0, len(atoms), 36)] + rng.normal(0.0, 0.8, (36, 3))
        # Partly outside the box (-1.5 to 4.5 A), and two far outside it.
        edges = np.array(
            [[-2.5, 1.0, 1.0], [5.5, 4.0, 2.0], [1.0, -2.0, 5.0], [30.0, 0.0, 0.0], [0.0, -30.0, 0.0]]
        )
        return _mixture(rng, np.concatenate([near, edges]), (0.05, 1.0)), grid
    if name == "periodic":
        cell = np.array([[4.0, 0.0, 0.0], [1.3, 3.6, 0.0], [-0.8, 0.9, 3.8]])
        grid = Grid(cell, (20, 18, 22), origin=np.array([0.3, -0.2, 0.1]), pbc=(True, True, True))
        small = _mixture(rng, rng.uniform(-1.0, 2.0, (36, 3)) @ cell, (0.05, 1.0))
        # Wider than the cell: their boxes hold several periodic images.
        wide = _mixture(rng, rng.uniform(0.0, 1.0, (3, 3)) @ cell, (1.2, 2.0))
        fields = ("weights", "centres", "scale_tril")
        return GaussianMixture(*(torch.cat([getattr(small, f), getattr(wide, f)]) for f in fields)), grid
    if name == "mixed":
        cell = np.array([[4.2, 0.0, 0.0], [0.5, 6.0, 0.0], [0.6, -0.7, 4.4]])
        grid = Grid(cell, (21, 30, 22), origin=np.array([-0.4, 0.2, 0.3]), pbc=(True, False, True))
        fractional = rng.uniform(-0.5, 1.5, (40, 3))
        fractional[:, 1] = rng.uniform(-0.2, 1.2, 40)
        return _mixture(rng, fractional @ cell, (0.05, 1.5)), grid
    raise ValueError(f"case: expected one of {CASES}, got {name!r}")


def _shim_evaluate(
    lib: ctypes.CDLL, mixture: GaussianMixture, grid: Grid, grid_dim: int, block_dim: int
) -> torch.Tensor:
    """Run the kernel through the shim on every Gaussian (empty boxes included)."""
    boxes = index_boxes(mixture, grid, DEFAULT_N_SIGMA)
    _, voxels, _ = grid_tensors(grid, mixture.weights)
    arrays = [
        np.ascontiguousarray(t.detach().cpu().numpy())
        for t in (boxes.lo, boxes.dims, boxes.offset, boxes.whitening, boxes.prefactor, voxels)
    ]
    real = {torch.float32: np.float32, torch.float64: np.float64}[mixture.dtype]
    entry = {torch.float32: lib.evaluate_boxes_f32, torch.float64: lib.evaluate_boxes_f64}[mixture.dtype]
    out = np.zeros(grid.n_points, dtype=real)
    entry(
        grid_dim, block_dim, *(a.ctypes.data for a in arrays), *grid.shape,
        DEFAULT_N_SIGMA**2, mixture.n_gaussians, out.ctypes.data,
    )  # fmt: skip
    return torch.from_numpy(out.reshape(grid.shape))


def _assert_close(actual: torch.Tensor, expected: torch.Tensor, rtol: float) -> None:
    assert actual.shape == expected.shape and actual.dtype == expected.dtype
    scale = expected.abs().max().item()
    error = (actual.cpu().double() - expected.cpu().double()).abs().max().item() / scale
    assert error <= rtol, f"max error {error:.2e} of the largest value {scale:.3g}, allowed {rtol:.0e}"


# ---------------------------------------------------------------------------- without a GPU


def test_nvcc_compiles_ptx_for_sm90(tmp_path: Path) -> None:
    nvcc = shutil.which("nvcc")
    if nvcc is None:
        pytest.skip("nvcc not found")
    ptx = tmp_path / "gaussians.ptx"
    command = [
        nvcc, "-arch=sm_90", "--ptx", f"-DBLOCK={TEST_BLOCK}", "-x", "cu",
        str(KERNEL_DIR / "gaussians.cu"), "-o", str(ptx),
    ]  # fmt: skip
    result = subprocess.run(command, capture_output=True, text=True)
    assert result.returncode == 0, result.stderr
    text = ptx.read_text()
    assert ".target sm_90" in text
    for type_code in ("f", "d"):  # float and double instantiations
        assert f".entry _Z14evaluate_boxesI{type_code}E" in text
    assert text.count(f".maxntid {TEST_BLOCK}, 1, 1") == 2
    assert "atom.global.add.f32" in text and "atom.global.add.f64" in text


@pytest.mark.parametrize("dtype", [torch.float64, torch.float32], ids=["float64", "float32"])
@pytest.mark.parametrize("case", CASES)
def test_shim_matches_torch(shim: ctypes.CDLL, rng: np.random.Generator, case: str, dtype: torch.dtype) -> None:
    mixture, grid = _case(case, rng)
    mixture = mixture.to(dtype=dtype)
    expected = evaluate(mixture, grid, backend="torch")
    assert expected.abs().max() > 0
    # One block per Gaussian, and few small blocks that stride over Gaussians and points.
    for grid_dim, block_dim in ((mixture.n_gaussians, TEST_BLOCK), (3, 7)):
        _assert_close(_shim_evaluate(shim, mixture, grid, grid_dim, block_dim), expected, RTOL[dtype])


def test_shim_integral_sums_periodic_images(shim: ctypes.CDLL, rng: np.random.Generator) -> None:
    """Independent of torch: on a periodic grid every image lands in the cell."""
    cell = np.array([[3.0, 0.0, 0.0], [0.9, 2.8, 0.0], [0.4, -0.6, 3.2]])
    grid = Grid(cell, (24, 24, 24), pbc=(True, True, True))
    mixture = _mixture(rng, rng.uniform(-2.0, 3.0, (12, 3)) @ cell, (0.4, 2.0))
    values = _shim_evaluate(shim, mixture, grid, mixture.n_gaussians, TEST_BLOCK)
    integral = values.sum().item() * grid.voxel_volume
    assert integral == pytest.approx(mixture.weights.sum().item(), rel=1e-4)


@pytest.mark.skipif(importlib.util.find_spec("cupy") is not None, reason="cupy is installed")
def test_missing_cupy_says_what_to_install() -> None:
    mixture = GaussianMixture(torch.ones(1), torch.zeros(1, 3), 0.5 * torch.eye(3)[None])
    grid = Grid(np.eye(3) * 2.0, (4, 4, 4))
    with pytest.raises(ImportError, match=r"pip install 'ase-electra\[gpu\]'"):
        evaluate(mixture, grid, backend="cupy")
    assert select_backend(mixture, "auto") == "torch"


# ---------------------------------------------------------------------------- on a GPU


@needs_gpu
@pytest.mark.parametrize("dtype", [torch.float64, torch.float32], ids=["float64", "float32"])
@pytest.mark.parametrize("case", CASES)
def test_cupy_matches_torch(rng: np.random.Generator, case: str, dtype: torch.dtype) -> None:
    mixture, grid = _case(case, rng)
    mixture = mixture.to(device="cuda", dtype=dtype)
    expected = evaluate(mixture, grid, backend="torch")
    actual = evaluate(mixture, grid, backend="cupy")
    assert actual.device == mixture.device
    _assert_close(actual, expected, RTOL[dtype])


@needs_gpu
def test_auto_picks_cupy_on_gpu(rng: np.random.Generator) -> None:
    mixture, grid = _case("periodic", rng)
    mixture = mixture.to(device="cuda")
    assert select_backend(mixture, "auto") == "cupy"
    _assert_close(evaluate(mixture, grid), evaluate(mixture, grid, backend="torch"), RTOL[torch.float64])
    needs_grad = GaussianMixture(mixture.weights.detach().requires_grad_(), mixture.centres, mixture.scale_tril)
    assert select_backend(needs_grad, "auto") == "torch"


@needs_gpu
def test_cupy_empty_and_cpu_mixtures() -> None:
    grid = Grid(np.eye(3) * 2.0, (8, 8, 8))
    far = GaussianMixture(torch.ones(1), torch.full((1, 3), 50.0), 0.3 * torch.eye(3)[None])
    values = evaluate(far, grid, backend="cupy")  # a CPU mixture runs on the current GPU
    assert values.is_cuda and values.shape == grid.shape and not values.any()


@needs_gpu
def test_cupy_rejects_half_precision() -> None:
    from ase_electra.errors import InvalidInputError

    mixture = GaussianMixture(torch.ones(1), torch.zeros(1, 3), 0.5 * torch.eye(3)[None])
    mixture = mixture.to("cuda", torch.float16)
    with pytest.raises(InvalidInputError, match="float16"):
        evaluate(mixture, Grid(np.eye(3) * 2.0, (4, 4, 4)), backend="cupy")
