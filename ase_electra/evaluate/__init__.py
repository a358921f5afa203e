"""Evaluate Gaussian mixtures on grids and at points: one contract, three back-ends.

``backend="torch"`` runs on the mixture's device (CPU or CUDA): the reference path.
``backend="numba"`` runs compiled CPU kernels (``_numba.py``) on a CPU mixture, in
parallel over numba's threads. ``backend="cupy"`` runs the CUDA kernel in
``gaussians.cu`` through a CuPy ``RawKernel``. ``backend="auto"`` picks CuPy when cupy is
installed and a GPU is present, else numba for CPU mixtures when numba is installed, else
torch. Every back-end is differentiable with respect to the mixture. All cut each
Gaussian off at the smaller of ``n_sigma`` standard deviations and the radius where its
value falls below ``tolerance`` (``_boxes.py``), and sum periodic images along periodic
grid axes. A mixture with signed weights is clamped at zero (:mod:`ase_electra.gaussians`).
``evaluate(..., sampling="voxel")`` first widens the Gaussians narrower than the grid's
voxels (``_voxel.py``), so every back-end gives the same values for integrating.

On a grid periodic along all three axes, ``evaluate(..., space="auto")`` sums the
Gaussians more than two voxels wide in reciprocal space (``reciprocal.py``: analytic
plane-wave coefficients and one inverse FFT, every periodic image included, nothing cut
off) where a cost model measured on the CPU finds it faster (wide Gaussians in small
cells); narrower ones always stay in real space.

Memory is bounded: work buffers hold at most ``work_points`` box points at a time
(about 100 bytes each), and a grid whose values alone exceed ``max_bytes`` is refused.
"""

from __future__ import annotations

import importlib.util
from typing import Literal

import numpy as np
import torch

from ..errors import GridTooLargeError, InvalidInputError
from ..gaussians import DEFAULT_N_SIGMA, DEFAULT_TOLERANCE, GaussianMixture
from ..grid import Grid
from . import _torch
from ._voxel import voxel_spread
from .reciprocal import Space, coefficient_radius, evaluate_reciprocal, reciprocal_share

__all__ = [
    "evaluate", "evaluate_points", "density_and_gradient", "select_backend", "Backend", "Sampling", "Space",
    "DEFAULT_MAX_BYTES",
]

Backend = Literal["auto", "torch", "numba", "cupy"]
Sampling = Literal["point", "voxel"]

#: Bound on the memory one evaluation may use, bytes (output plus work buffers).
DEFAULT_MAX_BYTES = 2 * 1024**3

#: Box points processed at once by the torch path; about 100 bytes of buffers each.
_WORK_POINTS = 1 << 21
_BYTES_PER_WORK_POINT = 112


def select_backend(mixture: GaussianMixture, backend: Backend = "auto") -> Literal["torch", "numba", "cupy"]:
    """Resolve ``backend`` for a grid evaluation of ``mixture``.

    Raises ImportError if CuPy or numba is asked for but missing, and InvalidInputError
    for numba with a mixture that is not on the CPU.
    """
    if backend == "torch":
        return "torch"
    if backend == "cupy":
        from . import _cupy  # noqa: F401  (raises a helpful ImportError)

        return "cupy"
    if backend == "numba":
        _require_numba(mixture)
        return "numba"
    if backend != "auto":
        raise InvalidInputError(f"backend: expected 'auto', 'torch', 'numba' or 'cupy', got {backend!r}")
    if torch.cuda.is_available():
        try:
            from . import _cupy  # noqa: F401
        except ImportError:
            return "torch"
        return "cupy"
    return _cpu_backend(mixture)


def _cpu_backend(mixture: GaussianMixture) -> Literal["torch", "numba"]:
    """numba for CPU mixtures where it is installed, torch otherwise."""
    if mixture.device.type == "cpu" and importlib.util.find_spec("numba") is not None:
        return "numba"
    return "torch"


def _require_numba(mixture: GaussianMixture) -> None:
    if importlib.util.find_spec("numba") is None:
        raise ImportError("backend='numba' needs numba: pip install numba")
    if mixture.device.type != "cpu":
        raise InvalidInputError(f"backend='numba' runs on the CPU; the mixture is on {mixture.device}")


def evaluate(
    mixture: GaussianMixture,
    grid: Grid,
    *,
    backend: Backend = "auto",
    n_sigma: float = DEFAULT_N_SIGMA,
    tolerance: float = DEFAULT_TOLERANCE,
    max_bytes: int = DEFAULT_MAX_BYTES,
    sampling: Sampling = "point",
    space: Space = "real",
) -> torch.Tensor:
    """Density of a one-structure mixture on every point of ``grid``; differentiable.

    Parameters
    ----------
    mixture : GaussianMixture
        One structure (``mixture.n_structures == 1``); centres in Angstrom.
    grid : Grid
        Points to evaluate at; periodic axes sum periodic images.
    backend : {"auto", "torch", "numba", "cupy"}
        Evaluator; see the module docstring.
    n_sigma : float
        Largest cut-off radius of each Gaussian, in standard deviations (Mahalanobis distance).
    tolerance : float, e/Angstrom^3
        Each Gaussian also ends where its value falls below this (0: at ``n_sigma``).
    max_bytes : int
        Memory bound; a larger grid raises :class:`GridTooLargeError`.
    sampling : {"point", "voxel"}
        "point": the density at each grid point. "voxel": values for integrating (Bader
        analysis, charges, electron counts). Each Gaussian narrower than the voxels, such
        as an all-electron core, is first convolved with a Gaussian of the voxel's shape
        that raises its smallest variance in grid-index units to 0.5 voxel^2
        (``_voxel.py``); Gaussians already that wide are left as they are. The grid sum
        times ``grid.voxel_volume`` then equals the mixture's integral to within 3.2e-4
        of the weight of its Gaussians up to a voxel wide (far less for wider ones), on
        any grid, skewed or periodic (point values
        of a 0.02 Angstrom core on a 0.1 Angstrom grid sum to between 0 and 8 times its
        weight, depending on where its centre falls). Values are those of "point"
        wherever no widened Gaussian reaches (5 of its standard deviations: 3.5 voxels
        for a core much narrower than a voxel). Within that reach each value is a
        Gaussian-weighted average of the density around its point, wider than the
        voxel's own average (standard deviation 0.71 voxel against the box's 0.29), so
        a nucleus's own value is lower than its voxel's average while the sum is right.
        Both paths of ``space`` give these values (the widened Gaussians stay in real space).
    space : {"real", "auto", "reciprocal"}
        "real": every Gaussian summed in real space by ``backend``, cut off as above.
        The others apply to grids periodic along all three axes only (elsewhere "auto"
        means "real" and "reciprocal" is refused). "reciprocal": every Gaussian more than
        2.02 voxels wide along each grid axis summed from its plane-wave coefficients with
        one inverse FFT (:mod:`~ase_electra.evaluate.reciprocal`): its exact periodic sum to
        within 9e-9 of its peak (or exp(-n_sigma^2 / 2) if smaller), not cut off in real
        space; narrower ones, such as cores, in real space. "auto": "reciprocal" for the
        Gaussians where a cost model measured on one CPU thread finds it faster and the
        savings exceed the FFT, else "real"; always "real" on a GPU. The paths differ by
        the real path's cut-off: up to exp(-n_sigma^2 / 2) = 3.7e-6 of a Gaussian's peak
        value at a point, and 1.7e-5 of its weight in the grid sum, at the default
        ``n_sigma``. The default stays "real" so that code relying on that cut-off
        (the Ewald deposits in :mod:`ase_electra.properties.ewald`, grid values equal to
        :func:`evaluate_points` to 1e-10) keeps its numbers.

    Returns
    -------
    Tensor, shape ``grid.shape``, e/Angstrom^3, dtype of the mixture; on the mixture's
    device for torch and numba, on the GPU for cupy.
    """
    _check_single(mixture)
    _check_cutoff(n_sigma, tolerance)
    if sampling == "voxel":
        mixture = voxel_spread(mixture, grid)
    elif sampling != "point":
        raise InvalidInputError(f"sampling: expected 'point' or 'voxel', got {sampling!r}")
    itemsize = torch.finfo(mixture.dtype).bits // 8
    work_points = min(_WORK_POINTS, max(1, (max_bytes - grid.n_points * itemsize) // _BYTES_PER_WORK_POINT))
    if grid.n_points * itemsize + 1024 * _BYTES_PER_WORK_POINT > max_bytes:
        raise GridTooLargeError(
            f"grid ({grid.describe()}, {grid.n_points:,} points) needs more than the memory bound of "
            f"{max_bytes / 1e9:.1f} GB; use a coarser spacing"
            + ("" if any(grid.pbc) else " (or, for a box around molecules, a smaller margin)")
        )
    chosen = select_backend(mixture, backend)
    wide = reciprocal_share(mixture, grid, chosen, space, n_sigma, tolerance, max_bytes)
    if not wide.any():
        return _clamped(mixture, _real_space(mixture, grid, chosen, n_sigma, tolerance, int(work_points)))
    narrow = _subset(mixture, ~wide)
    values = evaluate_reciprocal(_subset(mixture, wide), grid, radius=coefficient_radius(n_sigma),
                                 compiled=None if chosen == "numba" else False)
    if narrow.n_gaussians:
        real = _real_space(narrow, grid, chosen, n_sigma, tolerance, int(work_points))
        values = real + values.to(real.device)
    return _clamped(mixture, values.to(mixture.dtype))


def _real_space(
    mixture: GaussianMixture, grid: Grid, chosen: str, n_sigma: float, tolerance: float, work_points: int
) -> torch.Tensor:
    """Grid values of ``mixture`` by the real-space evaluator ``chosen``, unclamped."""
    if chosen == "cupy":
        from . import _cupy

        return _cupy.evaluate_grid(mixture, grid, n_sigma, tolerance)
    if chosen == "numba":
        from . import _numba

        return _numba.evaluate_grid(mixture, grid, n_sigma, tolerance)
    return _torch.evaluate_grid(mixture, grid, n_sigma, tolerance, work_points)


def _subset(mixture: GaussianMixture, keep: torch.Tensor) -> GaussianMixture:
    """The Gaussians ``keep`` (K,) bool of a one-structure mixture; differentiable."""
    return GaussianMixture(mixture.weights[keep], mixture.centres[keep], mixture.scale_tril[keep])


def evaluate_points(
    mixture: GaussianMixture,
    points: torch.Tensor | np.ndarray,
    *,
    cell: torch.Tensor | np.ndarray | None = None,
    pbc: tuple[bool, bool, bool] = (False, False, False),
    backend: Literal["auto", "torch", "numba"] = "auto",
    n_sigma: float = DEFAULT_N_SIGMA,
    tolerance: float = DEFAULT_TOLERANCE,
) -> torch.Tensor:
    """Density of a one-structure mixture at arbitrary points; differentiable.

    Parameters
    ----------
    points : array, shape (P, 3), Angstrom
    cell : array, shape (3, 3), Angstrom, optional
        Lattice vectors as rows; with ``pbc``, periodic images are summed.
    pbc : tuple of 3 bool
    backend : {"auto", "torch", "numba"}
        "auto": numba for CPU mixtures where it is installed (a cell list culls the
        Gaussians each point sees), torch otherwise (dense in points x Gaussians).
    n_sigma, tolerance : float
        Cut-off of each Gaussian, as in :func:`evaluate`.

    Returns
    -------
    Tensor, shape (P,), e/Angstrom^3, on the mixture's device.
    """
    _check_single(mixture)
    _check_cutoff(n_sigma, tolerance)
    points = _checked_points(points, mixture.dtype, mixture.device)
    pbc = tuple(bool(p) for p in np.broadcast_to(pbc, 3))
    if any(pbc) and cell is None:
        raise InvalidInputError("cell: required when pbc is set")
    cell_t = None if cell is None else torch.as_tensor(cell, dtype=mixture.dtype, device=mixture.device)
    if backend == "numba":
        _require_numba(mixture)
    elif backend == "auto":
        backend = _cpu_backend(mixture)
    elif backend != "torch":
        raise InvalidInputError(f"backend: expected 'auto', 'torch' or 'numba', got {backend!r}")
    if backend == "numba":
        from . import _numba

        return _clamped(mixture, _numba.evaluate_points(mixture, points, cell_t, pbc, n_sigma, tolerance))
    return _clamped(mixture, _torch.evaluate_points(mixture, points, cell_t, pbc, n_sigma, tolerance, _WORK_POINTS))


def density_and_gradient(
    mixture: GaussianMixture,
    points: torch.Tensor | np.ndarray,
    *,
    n_sigma: float = DEFAULT_N_SIGMA,
    tolerance: float = DEFAULT_TOLERANCE,
) -> torch.Tensor:
    """Density and its gradient at arbitrary points of a molecule (torch, float64, no autograd).

    What a GGA functional needs on a DFT grid (see :mod:`ase_electra.scf`). Same cut-off as
    :func:`evaluate_points`; non-periodic.

    Parameters
    ----------
    points : array, shape (P, 3), Angstrom

    Returns
    -------
    Tensor, shape (4, P), float64, on the mixture's device: rho (e/Angstrom^3) and
    d rho / dx, dy, dz (e/Angstrom^4).
    """
    _check_single(mixture)
    _check_cutoff(n_sigma, tolerance)
    points = _checked_points(points, torch.float64, mixture.device)
    out = _torch.density_and_gradient(mixture, points, n_sigma, tolerance, _WORK_POINTS // 2)
    return out * (out[0] > 0) if _signed(mixture) else out  # the clamp zeroes rho and its gradient


def _signed(mixture: GaussianMixture) -> bool:
    return bool((mixture.weights < 0).any())


def _clamped(mixture: GaussianMixture, values: torch.Tensor) -> torch.Tensor:
    """``values`` clamped at zero if ``mixture`` has negative weights (else already >= 0)."""
    return values.clamp(min=0.0) if _signed(mixture) else values


def _check_cutoff(n_sigma: float, tolerance: float) -> None:
    if not n_sigma > 0:
        raise InvalidInputError(f"n_sigma: expected > 0, got {n_sigma}")
    if not tolerance >= 0:
        raise InvalidInputError(f"tolerance: expected >= 0 (e/Angstrom^3), got {tolerance}")


def _checked_points(points: torch.Tensor | np.ndarray, dtype: torch.dtype, device: torch.device) -> torch.Tensor:
    """``points`` as a (P, 3) tensor of finite coordinates, else a one-line InvalidInputError."""
    points = torch.as_tensor(points, dtype=dtype, device=device)
    if points.ndim != 2 or points.shape[1] != 3:
        raise InvalidInputError(f"points: expected shape (P, 3), got {tuple(points.shape)}")
    if not torch.isfinite(points).all():
        raise InvalidInputError("points: non-finite coordinates")
    return points


def _check_single(mixture: GaussianMixture) -> None:
    if mixture.n_structures != 1:
        raise InvalidInputError(
            f"mixture holds {mixture.n_structures} structures; evaluate one at a time (mixture.split())"
        )
