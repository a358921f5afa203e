"""The CUDA kernels (``ase_electra/evaluate/gaussians.cu``) against the torch reference.

Without a GPU the kernel source is still checked: nvcc compiles both kernels to PTX for
sm_90, and g++ compiles the same source through ``tests/gpu_shim/shim.cpp`` into a host
library that runs every block and thread of a launch serially. The shim's forward is
compared with ``_torch.evaluate_grid`` and its backward with torch autograd through that
path; the launcher's ``torch.autograd.Function`` (``_cupy.py``) runs on the shim too, with
a stand-in ``cupy`` module. With CuPy and a CUDA device, the real kernels are compared
with torch directly and checked by ``gradcheck``.

Tolerances are relative to the largest grid value: points on a cut-off surface may fall
on either side of it in two evaluators, which moves a value by at most that Gaussian's
value there (exp(-n_sigma^2 / 2) = 3.7e-6 of its peak, or ``tolerance``).
"""

from __future__ import annotations

import contextlib
import ctypes
import ctypes.util
import importlib
import importlib.util
import math
import shutil
import subprocess
import sys
import types
from pathlib import Path

import numpy as np
import pytest
import torch

import ase_electra.evaluate
from ase_electra.evaluate import _torch, evaluate, select_backend
from ase_electra.evaluate._boxes import grid_tensors, index_boxes
from ase_electra.evaluate._voxel import voxel_spread
from ase_electra.gaussians import DEFAULT_N_SIGMA, GaussianMixture
from ase_electra.grid import Grid

ROOT = Path(__file__).resolve().parents[1]
KERNEL_DIR = ROOT / "ase_electra" / "evaluate"
SHIM = ROOT / "tests" / "gpu_shim" / "shim.cpp"

#: Threads per block compiled into the PTX and the shim; any value works for the tests.
TEST_BLOCK = 128

#: Box points per chunk of the torch reference.
WORK_POINTS = 1 << 18

#: Largest forward error allowed, relative to the largest grid value, per dtype.
RTOL = {torch.float64: 1e-12, torch.float32: 1e-5}

#: Largest gradient error allowed (float64), relative to the largest gradient entry.
GRAD_RTOL = 1e-10

#: Absolute cut-off tolerances tried, e/Angstrom^3 (0: n_sigma only).
TOLERANCES = (0.0, 1e-3)

CASES = ("molecule", "periodic", "mixed", "wrapping", "zero-weights")


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
    launch = [ctypes.c_uint, ctypes.c_uint]
    pointers = [ctypes.c_void_p] * 8  # line_start, lo, dims, offset, whitening, prefactor, cutoff_sq, voxels
    sizes = [ctypes.c_longlong] * 4  # nx, ny, nz, K
    for suffix in ("f32", "f64"):
        forward = getattr(lib, f"evaluate_lines_{suffix}")
        forward.argtypes = launch + pointers + sizes + [ctypes.c_void_p]
        backward = getattr(lib, f"gradient_lines_{suffix}")
        backward.argtypes = launch + pointers + sizes + [ctypes.c_void_p, ctypes.c_longlong, ctypes.c_void_p]
        forward.restype = backward.restype = None
    return lib


# ---------------------------------------------------------------------------- helpers


def _mixture(
    rng: np.random.Generator, centres: np.ndarray, sigma: tuple[float, float], weights: tuple[float, float] = (0.1, 2.0)
) -> GaussianMixture:
    """Random anisotropic Gaussians at ``centres`` (K, 3) with axis widths log-uniform in ``sigma``, A."""
    k = len(centres)
    widths = np.exp(rng.uniform(np.log(sigma[0]), np.log(sigma[1]), (k, 3)))  # (K, 3)
    L = np.zeros((k, 3, 3))
    L[:, [0, 1, 2], [0, 1, 2]] = widths
    row, col = np.tril_indices(3, -1)
    L[:, row, col] = rng.normal(0.0, 0.3, (k, 3)) * np.sqrt(widths[:, row] * widths[:, col])
    return GaussianMixture(
        torch.tensor(rng.uniform(*weights, k)), torch.tensor(np.asarray(centres, dtype=np.float64)), torch.tensor(L)
    )


def _concat(*mixtures: GaussianMixture) -> GaussianMixture:
    fields = ("weights", "centres", "scale_tril")
    return GaussianMixture(*(torch.cat([getattr(m, f) for m in mixtures]) for f in fields))


def _case(name: str, rng: np.random.Generator) -> tuple[GaussianMixture, Grid]:
    """A float64 mixture and its grid: molecular box, skewed periodic cells, mixed pbc."""
    if name in ("molecule", "zero-weights"):
        atoms = rng.uniform(0.0, 3.0, (5, 3))
        grid = Grid.for_molecule(atoms, spacing=0.2, margin=1.5)
        near = atoms[rng.integers(0, len(atoms), 36)] + rng.normal(0.0, 0.8, (36, 3))
        # Partly outside the box (-1.5 to 4.5 A), and two far outside it.
        edges = np.array(
            [[-2.5, 1.0, 1.0], [5.5, 4.0, 2.0], [1.0, -2.0, 5.0], [30.0, 0.0, 0.0], [0.0, -30.0, 0.0]]
        )
        mixture = _mixture(rng, np.concatenate([near, edges]), (0.05, 1.0))
        if name == "zero-weights":
            weights = mixture.weights.clone()
            weights[::3] = 0.0
            mixture = GaussianMixture(weights, mixture.centres, mixture.scale_tril)
        return mixture, grid
    if name == "periodic":
        cell = np.array([[4.0, 0.0, 0.0], [1.3, 3.6, 0.0], [-0.8, 0.9, 3.8]])
        grid = Grid(cell, (20, 18, 22), origin=np.array([0.3, -0.2, 0.1]), pbc=(True, True, True))
        small = _mixture(rng, rng.uniform(-1.0, 2.0, (36, 3)) @ cell, (0.05, 1.0))
        # Wider than the cell: their boxes hold several periodic images.
        wide = _mixture(rng, rng.uniform(0.0, 1.0, (3, 3)) @ cell, (1.2, 2.0))
        return _concat(small, wide), grid
    if name == "mixed":
        cell = np.array([[4.2, 0.0, 0.0], [0.5, 6.0, 0.0], [0.6, -0.7, 4.4]])
        grid = Grid(cell, (21, 30, 22), origin=np.array([-0.4, 0.2, 0.3]), pbc=(True, False, True))
        fractional = rng.uniform(-0.5, 1.5, (40, 3))
        fractional[:, 1] = rng.uniform(-0.2, 1.2, 40)
        return _mixture(rng, fractional @ cell, (0.05, 1.5)), grid
    if name == "wrapping":
        # A small skewed cell and Gaussians several cells wide: each box wraps many times
        # along every axis, so z-lines run over the cell more than once.
        cell = np.array([[2.6, 0.0, 0.0], [0.9, 2.4, 0.0], [-0.5, 0.7, 2.8]])
        grid = Grid(cell, (11, 10, 13), origin=np.array([0.1, 0.2, -0.3]), pbc=(True, True, True))
        wide = _mixture(rng, rng.uniform(-1.0, 2.0, (4, 3)) @ cell, (0.6, 1.3))
        small = _mixture(rng, rng.uniform(0.0, 1.0, (6, 3)) @ cell, (0.1, 0.4))
        return _concat(wide, small), grid
    raise ValueError(f"case: expected one of {CASES}, got {name!r}")


def _reference(
    mixture: GaussianMixture, grid: Grid, tolerance: float, n_sigma: float = DEFAULT_N_SIGMA
) -> torch.Tensor:
    """The torch path's values, shape ``grid.shape``."""
    return _torch.evaluate_grid(mixture, grid, n_sigma, tolerance, WORK_POINTS)


def _kernel_inputs(
    mixture: GaussianMixture, grid: Grid, tolerance: float, n_sigma: float = DEFAULT_N_SIGMA
) -> dict[str, torch.Tensor]:
    """The kernels' array arguments for every Gaussian (empty boxes included), CPU, contiguous."""
    boxes = index_boxes(mixture, grid, n_sigma, tolerance)
    _, voxels, _ = grid_tensors(grid, mixture.weights)
    lines = boxes.dims[:, 0] * boxes.dims[:, 1]
    arrays = {
        "line_start": torch.cat([lines.new_zeros(1), torch.cumsum(lines, 0)]),
        "lo": boxes.lo,
        "dims": boxes.dims,
        "offset": boxes.offset,
        "whitening": boxes.whitening,
        "prefactor": boxes.prefactor,
        "cutoff_sq": boxes.cutoff_sq.to(mixture.dtype),
        "voxels": voxels,
    }
    return {name: t.detach().cpu().contiguous() for name, t in arrays.items()}


_ORDER = ("line_start", "lo", "dims", "offset", "whitening", "prefactor", "cutoff_sq", "voxels")
_SUFFIX = {torch.float32: "f32", torch.float64: "f64"}


def _shim_forward(
    lib: ctypes.CDLL, inputs: dict[str, torch.Tensor], shape: tuple[int, int, int], grid_dim: int, block_dim: int
) -> torch.Tensor:
    """``evaluate_lines`` through the shim; flat (nx * ny * nz,)."""
    dtype = inputs["offset"].dtype
    out = torch.zeros(math.prod(shape), dtype=dtype)
    getattr(lib, f"evaluate_lines_{_SUFFIX[dtype]}")(
        grid_dim, block_dim, *(inputs[n].data_ptr() for n in _ORDER), *shape, inputs["lo"].shape[0], out.data_ptr()
    )
    return out


def _shim_backward(
    lib: ctypes.CDLL,
    inputs: dict[str, torch.Tensor],
    shape: tuple[int, int, int],
    grad_out: torch.Tensor,
    grid_dim: int,
    block_dim: int,
    lines_per_thread: int,
) -> torch.Tensor:
    """``gradient_lines`` through the shim; (K, 13) float64."""
    dtype = inputs["offset"].dtype
    grad_out = grad_out.to(dtype).contiguous()
    grad = torch.zeros(inputs["lo"].shape[0], 13, dtype=torch.float64)
    getattr(lib, f"gradient_lines_{_SUFFIX[dtype]}")(
        grid_dim, block_dim, *(inputs[n].data_ptr() for n in _ORDER), *shape, inputs["lo"].shape[0],
        grad_out.data_ptr(), lines_per_thread, grad.data_ptr(),
    )  # fmt: skip
    return grad


def _n_lines(inputs: dict[str, torch.Tensor]) -> int:
    return int(inputs["line_start"][-1])


def _assert_close(actual: torch.Tensor, expected: torch.Tensor, rtol: float, atol: float = 0.0) -> None:
    """Largest |actual - expected| <= rtol * max |expected| + atol."""
    assert actual.shape == expected.shape
    scale = expected.abs().max().item()
    assert scale > 0
    error = (actual.cpu().double() - expected.cpu().double()).abs().max().item()
    allowed = rtol * scale + atol
    assert error <= allowed, f"max error {error:.2e} with largest value {scale:.3g}, allowed {allowed:.1e}"


def _surface_atol(dtype: torch.dtype, tolerance: float) -> float:
    """In float32 a point on a cut-off surface set by ``tolerance`` may flip side (worth ``tolerance``)."""
    return 2.0 * tolerance if dtype == torch.float32 else 0.0


def _leaves(mixture: GaussianMixture) -> tuple[GaussianMixture, list[torch.Tensor]]:
    """A copy of ``mixture`` whose weights, centres and scale_tril are leaves requiring grad."""
    leaves = [t.detach().clone().requires_grad_() for t in (mixture.weights, mixture.centres, mixture.scale_tril)]
    return GaussianMixture(*leaves), leaves


def _torch_gradients(
    mixture: GaussianMixture, grid: Grid, tolerance: float, grad_out: torch.Tensor, n_sigma: float = DEFAULT_N_SIGMA
) -> list[torch.Tensor]:
    """d (sum grad_out * rho) / d (weights, centres, scale_tril) by autograd through the torch path."""
    leafy, leaves = _leaves(mixture)
    values = _reference(leafy, grid, tolerance, n_sigma)
    return list(torch.autograd.grad((values * grad_out.reshape(grid.shape)).sum(), leaves))


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
    for kernel in ("evaluate_lines", "gradient_lines"):
        for type_code in ("f", "d"):  # float and double instantiations
            assert f".entry _Z14{kernel}I{type_code}E" in text
    assert text.count(f".maxntid {TEST_BLOCK}, 1, 1") == 4
    assert "atom.global.add.f32" in text and "atom.global.add.f64" in text


def _libnvrtc() -> ctypes.CDLL | None:
    """NVRTC (what CuPy compiles with) from an installed nvidia-cuda-nvrtc wheel or the system, if any."""
    candidates = []
    spec = importlib.util.find_spec("nvidia")
    for root in spec.submodule_search_locations if spec and spec.submodule_search_locations else ():
        candidates += sorted(Path(root).glob("*/lib/libnvrtc.so*"))
    found = ctypes.util.find_library("nvrtc")
    candidates += [Path(found)] if found else []
    for path in candidates:
        try:
            # NVRTC opens its builtins library by name at compile time: load it first.
            for builtins in sorted(path.parent.glob("libnvrtc-builtins.so*")):
                ctypes.CDLL(str(builtins), mode=ctypes.RTLD_GLOBAL)
            return ctypes.CDLL(str(path))
        except OSError:
            continue
    return None


def test_nvrtc_compiles_as_cupy_does() -> None:
    """The source compiles as CuPy's RawModule compiles it: NVRTC, -DBLOCK, the four name expressions."""
    nvrtc = _libnvrtc()
    if nvrtc is None:
        pytest.skip("libnvrtc not found")
    program = ctypes.c_void_p()
    source = (KERNEL_DIR / "gaussians.cu").read_bytes()
    assert nvrtc.nvrtcCreateProgram(ctypes.byref(program), source, b"gaussians.cu", 0, None, None) == 0
    names = [f"{kernel}<{t}>".encode() for kernel in ("evaluate_lines", "gradient_lines") for t in ("float", "double")]
    for name in names:
        assert nvrtc.nvrtcAddNameExpression(program, name) == 0
    options = (ctypes.c_char_p * 2)(f"-DBLOCK={TEST_BLOCK}".encode(), b"--gpu-architecture=compute_90")
    status = nvrtc.nvrtcCompileProgram(program, 2, options)
    size = ctypes.c_size_t()
    nvrtc.nvrtcGetProgramLogSize(program, ctypes.byref(size))
    log = ctypes.create_string_buffer(size.value)
    nvrtc.nvrtcGetProgramLog(program, log)
    assert status == 0, log.value.decode()
    for name in names:
        lowered = ctypes.c_char_p()
        assert nvrtc.nvrtcGetLoweredName(program, name, ctypes.byref(lowered)) == 0
        assert lowered.value.startswith(b"_Z14")
    nvrtc.nvrtcDestroyProgram(ctypes.byref(program))


@pytest.mark.parametrize("tolerance", TOLERANCES, ids=["n_sigma", "tolerance"])
@pytest.mark.parametrize("dtype", [torch.float64, torch.float32], ids=["float64", "float32"])
@pytest.mark.parametrize("case", CASES)
def test_shim_forward_matches_torch(
    shim: ctypes.CDLL, rng: np.random.Generator, case: str, dtype: torch.dtype, tolerance: float
) -> None:
    mixture, grid = _case(case, rng)
    mixture = mixture.to(dtype=dtype)
    expected = _reference(mixture, grid, tolerance)
    inputs = _kernel_inputs(mixture, grid, tolerance)
    if tolerance > 0:  # some Gaussians end before n_sigma
        assert (inputs["cutoff_sq"] < DEFAULT_N_SIGMA**2).any()
    lines = _n_lines(inputs)
    # One thread per line, and few small blocks that grid-stride over the lines.
    for grid_dim, block_dim in ((math.ceil(lines / TEST_BLOCK), TEST_BLOCK), (3, 7)):
        actual = _shim_forward(shim, inputs, grid.shape, grid_dim, block_dim).reshape(grid.shape)
        _assert_close(actual, expected, RTOL[dtype], _surface_atol(dtype, tolerance))


def test_shim_forward_any_order_and_signed_prefactors(shim: ctypes.CDLL, rng: np.random.Generator) -> None:
    """Boxes in any order, and negative prefactors: linear in the prefactors, signs kept."""
    mixture, grid = _case("periodic", rng)
    tolerance = 1e-3
    negative = torch.zeros(mixture.n_gaussians, dtype=torch.bool)
    negative[1::2] = True
    positive_part, negative_part = (
        GaussianMixture(mixture.weights[part], mixture.centres[part], mixture.scale_tril[part])
        for part in (~negative, negative)
    )
    expected = _reference(positive_part, grid, tolerance) - _reference(negative_part, grid, tolerance)
    inputs = _kernel_inputs(mixture, grid, tolerance)
    inputs["prefactor"] = torch.where(negative, -inputs["prefactor"], inputs["prefactor"])
    order = torch.from_numpy(rng.permutation(mixture.n_gaussians))
    shuffled = {name: t[order].contiguous() for name, t in inputs.items() if name not in ("line_start", "voxels")}
    lines = shuffled["dims"][:, 0] * shuffled["dims"][:, 1]
    shuffled["line_start"] = torch.cat([lines.new_zeros(1), torch.cumsum(lines, 0)])
    shuffled["voxels"] = inputs["voxels"]
    for arrays in (inputs, shuffled):
        actual = _shim_forward(shim, arrays, grid.shape, 5, 32).reshape(grid.shape)
        _assert_close(actual, expected, RTOL[torch.float64])


def test_shim_gaussians_narrower_than_a_voxel(shim: ctypes.CDLL, rng: np.random.Generator) -> None:
    """Widths down to 1/200 of the spacing: one point per line, exp(-|s|^2) underflows."""
    grid = Grid(np.diag([2.0, 2.2, 2.4]), (10, 11, 12), origin=np.array([0.1, -0.1, 0.0]))
    points = grid.origin + rng.integers(1, 9, (20, 3)) * 0.2  # on grid points, or just beside them
    points[10:] += rng.normal(0.0, 0.003, (10, 3))
    mixture = _concat(_mixture(rng, points, (0.001, 0.01)), _mixture(rng, points[:4], (0.2, 0.5)))
    expected = _reference(mixture, grid, 0.0)
    actual = _shim_forward(shim, _kernel_inputs(mixture, grid, 0.0), grid.shape, 2, 64).reshape(grid.shape)
    _assert_close(actual, expected, RTOL[torch.float64])


@pytest.mark.parametrize("dtype", [torch.float64, torch.float32], ids=["float64", "float32"])
def test_shim_recurrence_on_a_400_point_line(shim: ctypes.CDLL, dtype: torch.dtype) -> None:
    """One skewed Gaussian whose box is a single z-line of ~400 points, against direct exp.

    A float recurrence would drift by about 6e-4 of the peak over such a line; the kernel
    keeps it in double, so only the final rounding to ``dtype`` remains.
    """
    cell = np.array([[0.1, 0.0, 0.0], [0.0, 0.1, 0.0], [0.03, -0.02, 40.0]])
    grid = Grid(cell, (1, 1, 420), origin=np.array([0.0, 0.0, -1.0]))
    L = torch.tensor([[[0.5, 0.0, 0.0], [0.1, 0.4, 0.0], [0.3, -0.2, 3.9]]], dtype=torch.float64)
    centre = torch.tensor([[0.0, 0.0, 19.0]], dtype=torch.float64)
    mixture = GaussianMixture(torch.ones(1, dtype=torch.float64), centre, L).to(dtype=dtype)
    inputs = _kernel_inputs(mixture, grid, 0.0)
    assert inputs["dims"].tolist() == [[1, 1, inputs["dims"][0, 2].item()]] and inputs["dims"][0, 2] >= 390
    actual = _shim_forward(shim, inputs, grid.shape, 1, 1).double()
    # Direct: exp(-|L^-1 d|^2 / 2) at every point, in float64 from the same (rounded) inputs.
    o = torch.arange(grid.shape[2], dtype=torch.float64) - inputs["lo"][0, 2].double()
    d = inputs["offset"][0].double() + o[:, None] * inputs["voxels"][2].double()  # (Z, 3)
    z = d @ inputs["whitening"][0].double().T
    q = (z * z).sum(-1)
    direct = inputs["prefactor"][0].double() * torch.exp(-0.5 * q)
    direct = torch.where((o >= 0) & (o < inputs["dims"][0, 2]) & (q <= DEFAULT_N_SIGMA**2), direct, 0.0)
    inside = int((direct > 0).sum())
    assert inside >= 390
    error = ((actual - direct).abs().max() / direct.max()).item()
    assert error <= {torch.float64: 1e-12, torch.float32: 1.2e-7}[dtype], error


@pytest.mark.parametrize("tolerance", TOLERANCES, ids=["n_sigma", "tolerance"])
@pytest.mark.parametrize("case", CASES)
def test_shim_backward_matches_torch_autograd(
    shim: ctypes.CDLL, rng: np.random.Generator, case: str, tolerance: float
) -> None:
    """The kernel's (prefactor, offset, L^-1) gradients, chained through index_boxes by torch."""
    mixture, grid = _case(case, rng)
    grad_out = torch.from_numpy(rng.normal(0.0, 1.0, grid.n_points))  # (nx * ny * nz,)
    expected = _torch_gradients(mixture, grid, tolerance, grad_out)
    leafy, leaves = _leaves(mixture)
    boxes = index_boxes(leafy, grid, DEFAULT_N_SIGMA, tolerance)
    inputs = _kernel_inputs(mixture, grid, tolerance)
    lines = _n_lines(inputs)
    launches = ((math.ceil(lines / TEST_BLOCK), TEST_BLOCK, 1), (3, 7, 8), (1, 2, 1000))
    for grid_dim, block_dim, lines_per_thread in launches:
        grad = _shim_backward(shim, inputs, grid.shape, grad_out, grid_dim, block_dim, lines_per_thread)
        actual = torch.autograd.grad(
            [boxes.prefactor, boxes.offset, boxes.whitening],
            leaves,
            [grad[:, 0], grad[:, 1:4], grad[:, 4:].reshape(-1, 3, 3)],
            retain_graph=True,
            allow_unused=True,
        )
        for name, a, e in zip(("weights", "centres", "scale_tril"), actual, expected):
            a = torch.zeros_like(e) if a is None else a
            scale = e.abs().max().item()
            error = (a - e).abs().max().item() / scale
            assert error <= GRAD_RTOL, f"{name}: max error {error:.2e} of {scale:.3g}"


def test_shim_backward_matches_finite_differences(shim: ctypes.CDLL, rng: np.random.Generator) -> None:
    """The 13 values per Gaussian against central differences of the shim's own forward.

    Independent of torch: checks the formulas for dL/dprefactor, dL/doffset = -pref L^-T
    sum G e z and dL/dL^-1 = -pref sum G e z d^T, including their index conventions. A
    10-sigma cut-off keeps L continuous (exp(-50) at the surface).
    """
    mixture, grid = _case("wrapping", rng)
    inputs = _kernel_inputs(mixture, grid, 0.0, n_sigma=10.0)
    grad_out = torch.from_numpy(rng.normal(0.0, 1.0, grid.n_points))
    grad = _shim_backward(shim, inputs, grid.shape, grad_out, 3, 32, 4)

    def loss(arrays: dict[str, torch.Tensor]) -> float:
        return float(_shim_forward(shim, arrays, grid.shape, 3, 32) @ grad_out)

    columns = {"prefactor": [0], "offset": [1, 2, 3], "whitening": list(range(4, 13))}
    for k in (0, 3, 7):
        for name, cols in columns.items():
            for i, col in enumerate(cols):
                eps = 1e-6 * max(1.0, inputs[name][k].abs().max().item())
                shifted = []
                for sign in (1.0, -1.0):
                    arrays = dict(inputs, **{name: inputs[name].clone()})
                    arrays[name][k].view(-1)[i] += sign * eps
                    shifted.append(loss(arrays))
                numeric = (shifted[0] - shifted[1]) / (2 * eps)
                assert grad[k, col].item() == pytest.approx(numeric, rel=1e-5, abs=1e-6 * grad[k].abs().max().item())


def test_shim_backward_signed_prefactors_and_float32(shim: ctypes.CDLL, rng: np.random.Generator) -> None:
    """dL/dprefactor does not depend on the prefactor's sign; the other gradients flip with it."""
    mixture, grid = _case("mixed", rng)
    grad_out = torch.from_numpy(rng.normal(0.0, 1.0, grid.n_points))
    inputs = _kernel_inputs(mixture, grid, 1e-3)
    unsigned = _shim_backward(shim, inputs, grid.shape, grad_out, 4, 16, 3)
    sign = torch.where(torch.arange(mixture.n_gaussians) % 2 == 0, 1.0, -1.0).double()
    signed = dict(inputs, prefactor=inputs["prefactor"] * sign)
    flipped = _shim_backward(shim, signed, grid.shape, grad_out, 4, 16, 3)
    torch.testing.assert_close(flipped[:, 0], unsigned[:, 0], rtol=1e-13, atol=0.0)
    torch.testing.assert_close(flipped[:, 1:], unsigned[:, 1:] * sign[:, None], rtol=1e-13, atol=0.0)
    # The float kernel reads float inputs but sums in double: agrees to float rounding.
    single = {n: t.float() if t.is_floating_point() else t for n, t in inputs.items()}
    as_float = _shim_backward(shim, single, grid.shape, grad_out.float(), 4, 16, 3)
    scale = unsigned.abs().amax(0)
    assert ((as_float - unsigned).abs() / scale).max() <= 1e-4


def test_shim_integral_sums_periodic_images(shim: ctypes.CDLL, rng: np.random.Generator) -> None:
    """Independent of torch: on a periodic grid every image lands in the cell."""
    cell = np.array([[3.0, 0.0, 0.0], [0.9, 2.8, 0.0], [0.4, -0.6, 3.2]])
    grid = Grid(cell, (24, 24, 24), pbc=(True, True, True))
    mixture = _mixture(rng, rng.uniform(-2.0, 3.0, (12, 3)) @ cell, (0.4, 2.0))
    inputs = _kernel_inputs(mixture, grid, 0.0)
    values = _shim_forward(shim, inputs, grid.shape, 8, TEST_BLOCK)
    integral = values.sum().item() * grid.voxel_volume
    assert integral == pytest.approx(mixture.weights.sum().item(), rel=1e-4)


# ------------------------------------------- the launcher's autograd Function, on the shim


@pytest.fixture
def shim_cupy(shim: ctypes.CDLL, monkeypatch: pytest.MonkeyPatch) -> types.ModuleType:
    """``ase_electra.evaluate._cupy`` imported against a stand-in ``cupy``, kernels run by the shim.

    All of the module is real down to the kernel call: boxes, launch order, line numbering,
    block counts, argument lists, the DLPack export of each tensor (which refuses tensors
    that require grad, as CuPy's does), the autograd Function and its gradient split.
    Only NVRTC, the device and the stream are stood in for.
    """

    def from_dlpack(tensor: torch.Tensor) -> ctypes.c_void_p:
        tensor.__dlpack__()  # raises for tensors that require grad
        assert tensor.is_contiguous()
        return ctypes.c_void_p(tensor.data_ptr())

    stub = types.ModuleType("cupy")
    stub.from_dlpack = from_dlpack
    stub.cuda = types.SimpleNamespace(
        Device=lambda index=None: contextlib.nullcontext(),
        ExternalStream=lambda pointer, device=None: contextlib.nullcontext(),
    )
    monkeypatch.setitem(sys.modules, "cupy", stub)
    # Placeholders first, so that undoing restores what was there before (or nothing).
    monkeypatch.setitem(sys.modules, "ase_electra.evaluate._cupy", None)
    monkeypatch.setattr(ase_electra.evaluate, "_cupy", None, raising=False)
    del sys.modules["ase_electra.evaluate._cupy"]
    module = importlib.import_module("ase_electra.evaluate._cupy")
    monkeypatch.setattr(torch.cuda, "current_stream", lambda device=None: types.SimpleNamespace(cuda_stream=0))

    def kernels(type_name: str, device_id: int | None) -> dict:
        suffix = {"float": "f32", "double": "f64"}[type_name]

        def kernel(entry):
            def call(grid: tuple[int], block: tuple[int], args: tuple) -> None:
                assert block == (module.BLOCK,) and 1 <= grid[0] <= module.MAX_BLOCKS
                entry(grid[0], block[0], *(int(a) if isinstance(a, np.integer) else a for a in args))

            return call

        return {name: kernel(getattr(shim, f"{name}_{suffix}")) for name in ("evaluate_lines", "gradient_lines")}

    monkeypatch.setattr(module, "_kernels", kernels)
    return module


@pytest.mark.parametrize("tolerance", TOLERANCES, ids=["n_sigma", "tolerance"])
@pytest.mark.parametrize("case", ["molecule", "wrapping", "zero-weights"])
def test_launcher_autograd_on_shim(
    shim_cupy: types.ModuleType, rng: np.random.Generator, case: str, tolerance: float
) -> None:
    mixture, grid = _case(case, rng)
    leafy, leaves = _leaves(mixture)
    values = shim_cupy._density(leafy, grid, DEFAULT_N_SIGMA, tolerance)
    assert values.shape == grid.shape and values.requires_grad
    _assert_close(values.detach(), _reference(mixture, grid, tolerance), RTOL[torch.float64])
    # A non-contiguous upstream gradient (a slice, an expand) is made contiguous for the kernel.
    weights = torch.from_numpy(rng.normal(0.0, 1.0, grid.shape[1:]))[None].expand(grid.shape)
    actual = torch.autograd.grad((values * weights).sum(), leaves)
    expected = _torch_gradients(mixture, grid, tolerance, weights.reshape(-1))
    for name, a, e in zip(("weights", "centres", "scale_tril"), actual, expected):
        error = (a - e).abs().max().item() / e.abs().max().item()
        assert error <= GRAD_RTOL, f"{name}: max error {error:.2e}"


def test_launcher_float32_and_empty_on_shim(shim_cupy: types.ModuleType, rng: np.random.Generator) -> None:
    mixture, grid = _case("mixed", rng)
    single = mixture.to(dtype=torch.float32)
    values = shim_cupy._density(single, grid, DEFAULT_N_SIGMA, 1e-3)
    assert values.dtype == torch.float32
    _assert_close(values, _reference(single, grid, 1e-3), RTOL[torch.float32], _surface_atol(torch.float32, 1e-3))
    # No box reaches the grid: zeros, and zero gradients rather than an error.
    far, leaves = _leaves(GaussianMixture(torch.ones(1), torch.full((1, 3), 50.0), 0.3 * torch.eye(3)[None]))
    empty = shim_cupy._density(far, Grid(np.eye(3) * 2.0, (8, 8, 8)), DEFAULT_N_SIGMA, 0.0)
    assert empty.shape == (8, 8, 8) and not empty.any()
    assert all(not g.any() for g in torch.autograd.grad(empty.sum(), leaves))


def _cores_on_a_skewed_cell(rng: np.random.Generator) -> tuple[GaussianMixture, Grid]:
    """Core-like Gaussians (0.02-0.06 A) beside wide ones on a skewed periodic cell of about 0.1 A voxels."""
    cell = np.array([[2.1, 0.0, 0.0], [0.6, 2.0, 0.0], [-0.4, 0.3, 2.2]])
    centres = rng.uniform(0.0, 1.0, (8, 3)) @ cell
    mixture = _concat(_mixture(rng, centres[:4], (0.02, 0.06)), _mixture(rng, centres[4:], (0.2, 0.5)))
    return mixture, Grid(cell, (21, 20, 22), pbc=(True, True, True))


def test_launcher_voxel_sampling_on_shim(shim_cupy: types.ModuleType, rng: np.random.Generator) -> None:
    """evaluate(sampling="voxel") widens the mixture before any back-end: the kernel agrees with torch."""
    mixture, grid = _cores_on_a_skewed_cell(rng)
    values = shim_cupy._density(voxel_spread(mixture, grid), grid, DEFAULT_N_SIGMA, 0.0)
    expected = evaluate(mixture, grid, backend="torch", sampling="voxel", tolerance=0.0)
    _assert_close(values, expected, RTOL[torch.float64])
    assert values.sum().item() * grid.voxel_volume == pytest.approx(mixture.weights.sum().item(), rel=1e-3)


@pytest.mark.skipif(importlib.util.find_spec("cupy") is not None, reason="cupy is installed")
def test_missing_cupy_says_what_to_install() -> None:
    mixture = GaussianMixture(torch.ones(1), torch.zeros(1, 3), 0.5 * torch.eye(3)[None])
    grid = Grid(np.eye(3) * 2.0, (4, 4, 4))
    with pytest.raises(ImportError, match=r"pip install 'ase-electra\[gpu\]'"):
        evaluate(mixture, grid, backend="cupy")
    assert select_backend(mixture, "auto") != "cupy"


# ---------------------------------------------------------------------------- on a GPU


@needs_gpu
@pytest.mark.parametrize("tolerance", TOLERANCES, ids=["n_sigma", "tolerance"])
@pytest.mark.parametrize("dtype", [torch.float64, torch.float32], ids=["float64", "float32"])
@pytest.mark.parametrize("case", CASES)
def test_cupy_matches_torch(rng: np.random.Generator, case: str, dtype: torch.dtype, tolerance: float) -> None:
    from ase_electra.evaluate import _cupy

    mixture, grid = _case(case, rng)
    mixture = mixture.to(device="cuda", dtype=dtype)
    expected = _reference(mixture, grid, tolerance)
    actual = _cupy.evaluate_grid(mixture, grid, DEFAULT_N_SIGMA, tolerance)
    assert actual.device == mixture.device and actual.dtype == dtype
    _assert_close(actual, expected, RTOL[dtype], _surface_atol(dtype, tolerance))


@needs_gpu
def test_cupy_voxel_sampling_matches_torch(rng: np.random.Generator) -> None:
    mixture, grid = _cores_on_a_skewed_cell(rng)
    actual = evaluate(mixture.to(device="cuda"), grid, backend="cupy", sampling="voxel")
    expected = evaluate(mixture, grid, backend="torch", sampling="voxel")
    _assert_close(actual, expected, RTOL[torch.float64])


@needs_gpu
@pytest.mark.parametrize("tolerance", TOLERANCES, ids=["n_sigma", "tolerance"])
@pytest.mark.parametrize("case", CASES)
def test_cupy_gradients_match_torch(rng: np.random.Generator, case: str, tolerance: float) -> None:
    from ase_electra.evaluate import _cupy

    mixture, grid = _case(case, rng)
    grad_out = torch.from_numpy(rng.normal(0.0, 1.0, grid.n_points))
    expected = _torch_gradients(mixture, grid, tolerance, grad_out)
    leafy, leaves = _leaves(mixture.to(device="cuda"))
    values = _cupy.evaluate_grid(leafy, grid, DEFAULT_N_SIGMA, tolerance)
    actual = torch.autograd.grad((values * grad_out.cuda().reshape(grid.shape)).sum(), leaves)
    for name, a, e in zip(("weights", "centres", "scale_tril"), actual, expected):
        error = (a.cpu() - e).abs().max().item() / e.abs().max().item()
        assert error <= GRAD_RTOL, f"{name}: max error {error:.2e}"


@needs_gpu
def test_cupy_gradcheck() -> None:
    """Finite differences of the kernel on a tiny periodic case; a wide cut-off keeps the
    values continuous in the parameters (exp(-n_sigma^2 / 2) = 2e-22 at the surface)."""
    from ase_electra.evaluate import _cupy

    grid = Grid(np.array([[2.0, 0.0, 0.0], [0.4, 1.8, 0.0], [0.2, -0.3, 2.1]]), (5, 6, 7), pbc=(True, True, True))
    weights = torch.tensor([0.7, 1.3], dtype=torch.float64, device="cuda", requires_grad=True)
    centres = torch.tensor([[0.3, 0.5, 0.2], [1.1, 0.9, 1.4]], dtype=torch.float64, device="cuda", requires_grad=True)
    tril = torch.tensor(
        [[[0.5, 0.0, 0.0], [0.1, 0.4, 0.0], [-0.1, 0.05, 0.6]], [[0.3, 0.0, 0.0], [0.0, 0.35, 0.0], [0.1, 0.1, 0.4]]],
        dtype=torch.float64, device="cuda", requires_grad=True,
    )  # fmt: skip

    def density(w: torch.Tensor, mu: torch.Tensor, L: torch.Tensor) -> torch.Tensor:
        return _cupy.evaluate_grid(GaussianMixture(w, mu, torch.tril(L)), grid, 10.0, 0.0)

    assert torch.autograd.gradcheck(density, (weights, centres, tril), eps=1e-6, atol=1e-8, rtol=1e-6)


@needs_gpu
def test_auto_picks_cupy_on_gpu(rng: np.random.Generator) -> None:
    mixture, grid = _case("periodic", rng)
    mixture = mixture.to(device="cuda")
    assert select_backend(mixture, "auto") == "cupy"
    _assert_close(evaluate(mixture, grid), _reference(mixture, grid, 0.0), RTOL[torch.float64])


@needs_gpu
def test_cupy_empty_and_cpu_mixtures() -> None:
    from ase_electra.evaluate import _cupy

    grid = Grid(np.eye(3) * 2.0, (8, 8, 8))
    far = GaussianMixture(torch.ones(1), torch.full((1, 3), 50.0), 0.3 * torch.eye(3)[None])
    values = _cupy.evaluate_grid(far, grid, DEFAULT_N_SIGMA, 0.0)  # a CPU mixture runs on the current GPU
    assert values.is_cuda and values.shape == grid.shape and not values.any()


@needs_gpu
def test_cupy_rejects_half_precision() -> None:
    from ase_electra.errors import InvalidInputError
    from ase_electra.evaluate import _cupy

    mixture = GaussianMixture(torch.ones(1), torch.zeros(1, 3), 0.5 * torch.eye(3)[None])
    mixture = mixture.to("cuda", torch.float16)
    with pytest.raises(InvalidInputError, match="float16"):
        _cupy.evaluate_grid(mixture, Grid(np.eye(3) * 2.0, (4, 4, 4)), DEFAULT_N_SIGMA, 0.0)
