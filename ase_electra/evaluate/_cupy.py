"""CuPy evaluator: the CUDA kernels in ``gaussians.cu``, launched through ``cupy.RawModule``.

Same contract as the torch reference (``_torch.py``): each Gaussian is evaluated inside
its index box (``_boxes.py``, computed on the GPU) up to its own cut-off radius, and
periodic images add up along periodic axes. ``evaluate_lines`` walks each z-line of each
box with a multiplicative recurrence and adds into the grid with ``atomicAdd``;
``gradient_lines`` is its backward. Both take whole lines per thread (the kernel source
explains why); boxes are launched largest first so the longest lines start early.

Gradients: :class:`_BoxDensity` is a ``torch.autograd.Function`` of the boxes' offsets,
whitening matrices and prefactors, which ``index_boxes`` computes from the mixture with
torch, so autograd carries the gradients on to the mixture's centres, Cholesky factors
and weights. Tensors pass between torch and CuPy by DLPack without copies, and the kernels
run on torch's current stream, ordered with the surrounding torch work.

Legend: K Gaussians.
"""

from __future__ import annotations

import functools
import math
from dataclasses import dataclass
from importlib import resources

import numpy as np
import torch
from torch.autograd.function import once_differentiable

try:
    import cupy
except ImportError as err:
    raise ImportError(
        "backend='cupy' needs CuPy built for CUDA 13: pip install 'ase-electra[gpu]' "
        "(which installs cupy-cuda13x)"
    ) from err

from ..errors import InvalidInputError
from ..gaussians import GaussianMixture
from ..grid import Grid
from ._boxes import grid_tensors, index_boxes

__all__ = ["evaluate_grid", "BLOCK", "MAX_BLOCKS", "GRADIENT_LINES_PER_THREAD"]

#: Threads per block; compiled into the kernels as ``-DBLOCK`` (their ``__launch_bounds__``).
BLOCK = 256

#: Most blocks in one launch; the blocks grid-stride over any further lines.
MAX_BLOCKS = 1 << 16

#: Consecutive z-lines one thread of ``gradient_lines`` sums before adding its 13 values per
#: Gaussian with ``atomicAdd``: fewer atomics on the same addresses, fewer threads.
GRADIENT_LINES_PER_THREAD = 8

#: Values per Gaussian in the gradient buffer: prefactor, offset (3), whitening (3 x 3).
_GRAD_VALUES = 13

_SOURCE = "gaussians.cu"

#: Kernel template argument of each supported dtype.
_TYPES = {torch.float32: "float", torch.float64: "double"}

_KERNELS = ("evaluate_lines", "gradient_lines")


@functools.cache
def _kernels(type_name: str, device_id: int) -> dict[str, cupy.RawKernel]:
    """Both kernels for ``type_name``, compiled by NVRTC and loaded on CUDA device ``device_id``."""
    source = resources.files(__package__).joinpath(_SOURCE).read_text(encoding="utf-8")
    names = {kernel: f"{kernel}<{type_name}>" for kernel in _KERNELS}
    with cupy.cuda.Device(device_id):
        module = cupy.RawModule(code=source, options=(f"-DBLOCK={BLOCK}",), name_expressions=tuple(names.values()))
        return {kernel: module.get_function(name) for kernel, name in names.items()}


@dataclass(frozen=True)
class _Layout:
    """The constant (non-differentiable) kernel inputs, boxes in launch order.

    line_start : (K + 1,) int64, first z-line of each box; ``line_start[K]`` lines in all
    lo, dims : (K, 3) int64, as in ``GridBoxes``
    cutoff_sq : (K,), mixture's dtype
    voxels : (3, 3), Angstrom, rows
    shape : (nx, ny, nz) of the grid
    """

    line_start: torch.Tensor
    lo: torch.Tensor
    dims: torch.Tensor
    cutoff_sq: torch.Tensor
    voxels: torch.Tensor
    shape: tuple[int, int, int]
    n_lines: int

    @property
    def n_gaussians(self) -> int:
        return self.lo.shape[0]


def evaluate_grid(mixture: GaussianMixture, grid: Grid, n_sigma: float, tolerance: float) -> torch.Tensor:
    """Density of one structure on ``grid`` by the CUDA kernel, differentiable.

    Parameters
    ----------
    mixture : GaussianMixture
        One structure, float32 or float64; a CPU mixture is copied to the current CUDA
        device (differentiably). Gradients reach its weights, centres and scale_tril.
    grid : Grid
        Points to evaluate at; periodic axes sum periodic images.
    n_sigma : float
        Largest cut-off of each Gaussian, in standard deviations (Mahalanobis distance).
    tolerance : float
        Each Gaussian also ends where its value falls below this, e/Angstrom^3 (0: never).

    Returns
    -------
    Tensor, shape ``grid.shape``, e/Angstrom^3, mixture's dtype, on the CUDA device.
    """
    if mixture.dtype not in _TYPES:
        raise InvalidInputError(
            f"mixture dtype: expected torch.float32 or torch.float64 for backend='cupy', got {mixture.dtype}"
        )
    if mixture.device.type == "cuda":
        device = mixture.device
    else:
        device = torch.device("cuda", torch.cuda.current_device())
    return _density(mixture.to(device), grid, n_sigma, tolerance)


def _density(mixture: GaussianMixture, grid: Grid, n_sigma: float, tolerance: float) -> torch.Tensor:
    """:func:`evaluate_grid` on the mixture's own device, through :class:`_BoxDensity`."""
    boxes = index_boxes(mixture, grid, n_sigma, tolerance)
    volume = boxes.dims.prod(-1)  # (K,)
    n_boxes = int(torch.count_nonzero(volume))
    order = torch.argsort(volume, descending=True)[:n_boxes]  # non-empty boxes, largest first
    dims = boxes.dims[order].contiguous()
    lines = dims[:, 0] * dims[:, 1]  # (K,)
    line_start = torch.cat([lines.new_zeros(1), torch.cumsum(lines, 0)])  # (K + 1,)
    _, voxels, _ = grid_tensors(grid, mixture.weights)
    layout = _Layout(
        line_start=line_start.contiguous(),
        lo=boxes.lo[order].contiguous(),
        dims=dims,
        cutoff_sq=boxes.cutoff_sq[order].to(mixture.dtype).contiguous(),
        voxels=voxels.contiguous(),
        shape=tuple(int(n) for n in grid.shape),
        n_lines=int(line_start[-1]),
    )
    offset, whitening, prefactor = (
        t[order].contiguous() for t in (boxes.offset, boxes.whitening, boxes.prefactor)
    )
    out = _BoxDensity.apply(offset, whitening, prefactor, layout)
    return out.reshape(grid.shape)


class _BoxDensity(torch.autograd.Function):
    """Flat grid values (nx * ny * nz,) of boxed Gaussians; differentiable in the first three inputs.

    Inputs: offset (K, 3), Angstrom; whitening (K, 3, 3), 1/Angstrom; prefactor (K,),
    e/Angstrom^3; all contiguous and in the order of ``layout``.
    """

    @staticmethod
    def forward(ctx, offset: torch.Tensor, whitening: torch.Tensor, prefactor: torch.Tensor, layout: _Layout):
        nx, ny, nz = layout.shape
        out = torch.zeros(nx * ny * nz, dtype=offset.dtype, device=offset.device)
        _launch_forward(layout, offset, whitening, prefactor, out)
        ctx.save_for_backward(offset, whitening, prefactor)
        ctx.layout = layout
        return out

    @staticmethod
    @once_differentiable
    def backward(ctx, grad_out: torch.Tensor):
        offset, whitening, prefactor = ctx.saved_tensors
        layout = ctx.layout
        grad = torch.zeros(layout.n_gaussians, _GRAD_VALUES, dtype=torch.float64, device=offset.device)
        _launch_backward(layout, offset, whitening, prefactor, grad_out.to(offset.dtype).contiguous(), grad)
        grad = grad.to(offset.dtype)
        return grad[:, 1:4], grad[:, 4:].reshape(-1, 3, 3), grad[:, 0], None


def _launch_forward(
    layout: _Layout, offset: torch.Tensor, whitening: torch.Tensor, prefactor: torch.Tensor, out: torch.Tensor
) -> None:
    """Run ``evaluate_lines``; out : Tensor, shape (nx * ny * nz,), accumulated in place."""
    if layout.n_lines == 0:
        return
    blocks = min(math.ceil(layout.n_lines / BLOCK), MAX_BLOCKS)
    _launch("evaluate_lines", blocks, layout, offset, whitening, prefactor, out)


def _launch_backward(
    layout: _Layout,
    offset: torch.Tensor,
    whitening: torch.Tensor,
    prefactor: torch.Tensor,
    grad_out: torch.Tensor,
    grad: torch.Tensor,
) -> None:
    """Run ``gradient_lines``; grad : Tensor, shape (K, 13), float64, accumulated in place."""
    if layout.n_lines == 0:
        return
    runs = math.ceil(layout.n_lines / GRADIENT_LINES_PER_THREAD)
    blocks = min(math.ceil(runs / BLOCK), MAX_BLOCKS)
    _launch(
        "gradient_lines", blocks, layout, offset, whitening, prefactor,
        grad_out, np.int64(GRADIENT_LINES_PER_THREAD), grad,
    )  # fmt: skip


def _launch(
    kernel: str,
    blocks: int,
    layout: _Layout,
    offset: torch.Tensor,
    whitening: torch.Tensor,
    prefactor: torch.Tensor,
    *tail: torch.Tensor | np.int64,
) -> None:
    """Launch ``kernel`` on ``blocks`` x ``BLOCK`` threads; ``tail``: its arguments after K."""
    device = offset.device
    tensors = (layout.line_start, layout.lo, layout.dims, offset, whitening, prefactor, layout.cutoff_sq, layout.voxels)
    sizes = [np.int64(n) for n in (*layout.shape, layout.n_gaussians)]
    stream = cupy.cuda.ExternalStream(torch.cuda.current_stream(device).cuda_stream, device.index)
    with cupy.cuda.Device(device.index), stream:
        # DLPack refuses tensors that require grad (inside Function.forward they still do);
        # detach() shares the memory.
        args = [cupy.from_dlpack(t.detach()) for t in tensors] + sizes
        args += [cupy.from_dlpack(a.detach()) if isinstance(a, torch.Tensor) else a for a in tail]
        _kernels(_TYPES[offset.dtype], device.index)[kernel]((blocks,), (BLOCK,), tuple(args))
