"""CuPy evaluator: the CUDA kernel in ``gaussians.cu``, launched through ``cupy.RawModule``.

Same contract as the torch reference (``_torch.py``), without gradients: each Gaussian is
evaluated inside its index box (``_boxes.py``, computed on the GPU), cut off at
``n_sigma`` standard deviations, and periodic images add up along periodic axes. One
thread block handles one Gaussian; boxes are launched largest first so the longest
blocks start early. Tensors pass between torch and CuPy by DLPack without copies, and
the kernel runs on torch's current stream, ordered with the surrounding torch work.

Legend: K Gaussians.
"""

from __future__ import annotations

import functools
from importlib import resources

import numpy as np
import torch

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

__all__ = ["evaluate_grid", "BLOCK", "MAX_BLOCKS"]

#: Threads per block; compiled into the kernel as ``-DBLOCK`` (its ``__launch_bounds__``).
BLOCK = 256

#: Most blocks in one launch; the blocks grid-stride over any further Gaussians.
MAX_BLOCKS = 1 << 16

_SOURCE = "gaussians.cu"

#: Kernel template argument and NumPy scalar type of each supported dtype.
_TYPES = {
    torch.float32: ("float", np.float32),
    torch.float64: ("double", np.float64),
}


@functools.cache
def _kernel(type_name: str, device_id: int) -> cupy.RawKernel:
    """``evaluate_boxes<type_name>`` compiled by NVRTC and loaded on CUDA device ``device_id``."""
    source = resources.files(__package__).joinpath(_SOURCE).read_text(encoding="utf-8")
    name = f"evaluate_boxes<{type_name}>"
    with cupy.cuda.Device(device_id):
        module = cupy.RawModule(code=source, options=(f"-DBLOCK={BLOCK}",), name_expressions=(name,))
        return module.get_function(name)


def evaluate_grid(mixture: GaussianMixture, grid: Grid, n_sigma: float) -> torch.Tensor:
    """Density of one structure on ``grid`` by the CUDA kernel.

    Parameters
    ----------
    mixture : GaussianMixture
        One structure, float32 or float64; a CPU mixture is copied to the current CUDA
        device. Gradients are not tracked.
    grid : Grid
        Points to evaluate at; periodic axes sum periodic images.
    n_sigma : float
        Cut-off of each Gaussian, in standard deviations (Mahalanobis distance).

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
    mixture = mixture.detach().to(device)
    type_name, scalar = _TYPES[mixture.dtype]
    out = torch.zeros(grid.n_points, dtype=mixture.dtype, device=device)  # flat (nx * ny * nz,)
    boxes = index_boxes(mixture, grid, n_sigma)
    volume = boxes.dims.prod(-1)  # (K,)
    n_boxes = int(torch.count_nonzero(volume))
    if n_boxes == 0:
        return out.reshape(grid.shape)
    order = torch.argsort(volume, descending=True)[:n_boxes]  # non-empty boxes, largest first
    _, voxels, _ = grid_tensors(grid, mixture.weights)
    tensors = [
        t[order].contiguous() for t in (boxes.lo, boxes.dims, boxes.offset, boxes.whitening, boxes.prefactor)
    ]
    tensors.append(voxels.contiguous())
    nx, ny, nz = grid.shape
    stream = cupy.cuda.ExternalStream(torch.cuda.current_stream(device).cuda_stream, device.index)
    with cupy.cuda.Device(device.index), stream:
        arrays = [cupy.from_dlpack(t) for t in tensors]
        kernel = _kernel(type_name, device.index)
        kernel(
            (min(n_boxes, MAX_BLOCKS),),
            (BLOCK,),
            (
                *arrays,
                np.int64(nx),
                np.int64(ny),
                np.int64(nz),
                scalar(n_sigma * n_sigma),
                np.int64(n_boxes),
                cupy.from_dlpack(out),
            ),
        )
    return out.reshape(grid.shape)
