"""Gaussian mixtures: the density representation every model produces.

rho(r) = max(0, sum_k w_k N(r | mu_k, L_k L_k^T)), with N the normalised 3-D Gaussian. A
mixture may hold several structures of a batch: ``sizes[s]`` consecutive Gaussians belong
to structure s.

Weights may be signed (a positive atomic part plus deformation Gaussians of either sign).
With non-negative weights the sum is never negative and the integral of rho over all
space is exactly ``sum_k w_k`` electrons (:meth:`GaussianMixture.integral`). With signed
weights the sum can dip below zero, and every evaluator clamps it there: the clamp adds
the integral of the negative part to the electrons, which models report (their model card
measures it).

Legend: K Gaussians, S structures, P points.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import torch

from .errors import InvalidInputError

__all__ = ["GaussianMixture", "DEFAULT_N_SIGMA", "DEFAULT_TOLERANCE"]

#: Each Gaussian is cut off where its Mahalanobis distance exceeds this many standard
#: deviations. The mass beyond 5 sigma is 1.7e-5 of the Gaussian's weight.
DEFAULT_N_SIGMA = 5.0

#: Each Gaussian is also cut off where its value falls below this, e/Angstrom^3 (whichever
#: radius is smaller); 0 cuts every Gaussian at ``DEFAULT_N_SIGMA``.
DEFAULT_TOLERANCE = 1e-9

_LOG_NORM = -1.5 * math.log(2.0 * math.pi)


@dataclass(frozen=True, eq=False)
class GaussianMixture:
    """Weighted normalised Gaussians, for one structure or a batch of them.

    Parameters
    ----------
    weights : Tensor, shape (K,), electrons
        Weight of each Gaussian (its integral); may be negative (see the module docstring).
    centres : Tensor, shape (K, 3), Angstrom
        Mean of each Gaussian.
    scale_tril : Tensor, shape (K, 3, 3), Angstrom
        Lower-triangular Cholesky factor L of each covariance L L^T, positive diagonal.
    sizes : tuple of int, optional
        Number of Gaussians of each structure, summing to K; default one structure.

    Examples
    --------
    >>> m = GaussianMixture(torch.tensor([2.0]), torch.zeros(1, 3), 0.5 * torch.eye(3)[None])
    >>> m.integral().tolist()
    [2.0]
    """

    weights: torch.Tensor
    centres: torch.Tensor
    scale_tril: torch.Tensor
    sizes: tuple[int, ...] = field(default=())

    def __post_init__(self) -> None:
        w, mu, L = self.weights, self.centres, self.scale_tril
        k = w.shape[0] if w.ndim == 1 else -1
        if w.ndim != 1:
            raise InvalidInputError(f"weights: expected shape (K,), got {tuple(w.shape)}")
        if mu.shape != (k, 3):
            raise InvalidInputError(f"centres: expected ({k}, 3), got {tuple(mu.shape)}")
        if L.shape != (k, 3, 3):
            raise InvalidInputError(f"scale_tril: expected ({k}, 3, 3), got {tuple(L.shape)}")
        if not (w.dtype == mu.dtype == L.dtype and w.dtype.is_floating_point):
            raise InvalidInputError(
                f"weights, centres, scale_tril: expected one floating dtype, got "
                f"{w.dtype}, {mu.dtype}, {L.dtype}"
            )
        if not (w.device == mu.device == L.device):
            raise InvalidInputError(
                f"weights, centres, scale_tril: expected one device, got {w.device}, {mu.device}, {L.device}"
            )
        sizes = tuple(int(s) for s in self.sizes) if self.sizes else (k,)
        if sum(sizes) != k or min(sizes) < 0:
            raise InvalidInputError(f"sizes: expected non-negative counts summing to {k}, got {sizes}")
        object.__setattr__(self, "sizes", sizes)
        if k == 0:
            return
        with torch.no_grad():
            if not (torch.isfinite(w).all() and torch.isfinite(mu).all() and torch.isfinite(L).all()):
                raise InvalidInputError("Gaussian mixture: non-finite weights, centres or scale_tril")
            if (torch.triu(L, diagonal=1) != 0).any():
                raise InvalidInputError("scale_tril: expected lower-triangular matrices")
            if (torch.diagonal(L, dim1=-2, dim2=-1) <= 0).any():
                raise InvalidInputError("scale_tril: covariances are not positive definite (diagonal <= 0)")

    # ------------------------------------------------------------------ constructors
    @classmethod
    def from_covariances(
        cls,
        weights: torch.Tensor,
        centres: torch.Tensor,
        covariances: torch.Tensor,
        sizes: tuple[int, ...] = (),
    ) -> GaussianMixture:
        """Build from full covariances, shape (K, 3, 3), Angstrom^2 (Cholesky-factored here)."""
        if covariances.ndim != 3 or covariances.shape[-2:] != (3, 3):
            raise InvalidInputError(f"covariances: expected (K, 3, 3), got {tuple(covariances.shape)}")
        if not torch.isfinite(covariances).all():
            raise InvalidInputError("covariances: non-finite values")
        if not torch.allclose(covariances, covariances.transpose(-1, -2), rtol=1e-5, atol=1e-8):
            raise InvalidInputError("covariances: expected symmetric matrices")
        L, info = torch.linalg.cholesky_ex(covariances)
        if (info != 0).any():
            bad = int(torch.nonzero(info)[0, 0])
            raise InvalidInputError(f"covariances: Gaussian {bad} is not positive definite")
        return cls(weights, centres, L, sizes)

    @classmethod
    def concat(cls, mixtures: list[GaussianMixture]) -> GaussianMixture:
        """Stack mixtures into one batch; structures keep their order."""
        if not mixtures:
            raise InvalidInputError("concat: expected at least one mixture")
        return cls(
            torch.cat([m.weights for m in mixtures]),
            torch.cat([m.centres for m in mixtures]),
            torch.cat([m.scale_tril for m in mixtures]),
            tuple(s for m in mixtures for s in m.sizes),
        )

    # ------------------------------------------------------------------ views
    @property
    def n_gaussians(self) -> int:
        return self.weights.shape[0]

    @property
    def n_structures(self) -> int:
        return len(self.sizes)

    @property
    def dtype(self) -> torch.dtype:
        return self.weights.dtype

    @property
    def device(self) -> torch.device:
        return self.weights.device

    @property
    def covariances(self) -> torch.Tensor:
        """Covariance matrices L L^T, shape (K, 3, 3), Angstrom^2."""
        return self.scale_tril @ self.scale_tril.transpose(-1, -2)

    def structure(self, index: int) -> GaussianMixture:
        """The mixture of structure ``index`` of the batch."""
        if not -self.n_structures <= index < self.n_structures:
            raise IndexError(f"structure {index} out of range for a batch of {self.n_structures}")
        index %= self.n_structures
        start = sum(self.sizes[:index])
        sl = slice(start, start + self.sizes[index])
        return GaussianMixture(self.weights[sl], self.centres[sl], self.scale_tril[sl])

    def split(self) -> list[GaussianMixture]:
        """One mixture per structure of the batch."""
        return [self.structure(i) for i in range(self.n_structures)]

    def to(self, device: torch.device | str | None = None, dtype: torch.dtype | None = None) -> GaussianMixture:
        """Copy to another device and/or floating dtype."""
        return GaussianMixture(
            self.weights.to(device=device, dtype=dtype),
            self.centres.to(device=device, dtype=dtype),
            self.scale_tril.to(device=device, dtype=dtype),
            self.sizes,
        )

    def detach(self) -> GaussianMixture:
        return GaussianMixture(self.weights.detach(), self.centres.detach(), self.scale_tril.detach(), self.sizes)

    def convolved(self, extra_covariances: torch.Tensor) -> GaussianMixture:
        """This mixture convolved Gaussian by Gaussian with centred normal kernels.

        Gaussian k becomes N(mu_k, Sigma_k + extra_covariances[k]): weights and centres are
        unchanged, so :meth:`integral` is too, and a Gaussian whose kernel is zero keeps its
        Cholesky factor bit for bit. Differentiable.

        Parameters
        ----------
        extra_covariances : Tensor, shape (K, 3, 3), Angstrom^2
            Symmetric positive semi-definite kernel covariance of each Gaussian.

        Examples
        --------
        >>> m = GaussianMixture(torch.tensor([1.0]), torch.zeros(1, 3), 0.3 * torch.eye(3)[None])
        >>> round(m.convolved(0.16 * torch.eye(3)[None]).scale_tril[0, 0, 0].item(), 6)
        0.5
        """
        if extra_covariances.shape != self.scale_tril.shape:
            raise InvalidInputError(
                f"extra_covariances: expected {tuple(self.scale_tril.shape)}, got {tuple(extra_covariances.shape)}"
            )
        covariances = self.covariances + extra_covariances
        scale_tril = torch.linalg.cholesky(0.5 * (covariances + covariances.transpose(-1, -2)))
        unchanged = (extra_covariances == 0).all(-1).all(-1)[:, None, None]  # (K, 1, 1)
        return GaussianMixture(self.weights, self.centres, torch.where(unchanged, self.scale_tril, scale_tril), self.sizes)

    # ------------------------------------------------------------------ analytic quantities
    def integral(self) -> torch.Tensor:
        """Analytic integral of each structure's sum of Gaussians, shape (S,), electrons.

        The integral of the density itself when the weights are non-negative; with signed
        weights the clamp at zero adds the (small) integral of the negative part.
        """
        index = torch.repeat_interleave(
            torch.arange(self.n_structures, device=self.device),
            torch.tensor(self.sizes, device=self.device),
        )
        out = torch.zeros(self.n_structures, dtype=self.dtype, device=self.device)
        return out.index_add(0, index, self.weights)

    def first_moments(self) -> torch.Tensor:
        """sum_k w_k mu_k of each structure, shape (S, 3), electrons * Angstrom (differentiable).

        The electrons' part of the dipole: a normalised Gaussian's first moment is its centre,
        so a structure's dipole is sum_i Z_i R_i minus this (exact for non-negative weights).
        """
        index = torch.repeat_interleave(
            torch.arange(self.n_structures, device=self.device), torch.tensor(self.sizes, device=self.device)
        )
        out = torch.zeros(self.n_structures, 3, dtype=self.dtype, device=self.device)
        return out.index_add(0, index, self.weights[:, None] * self.centres)

    def log_normalisation(self) -> torch.Tensor:
        """log of each Gaussian's peak value per unit weight, shape (K,), log(1/Angstrom^3)."""
        log_det = torch.log(torch.diagonal(self.scale_tril, dim1=-2, dim2=-1)).sum(-1)
        return _LOG_NORM - log_det

    def peak_values(self) -> torch.Tensor:
        """Each Gaussian's value at its centre, w_k N(mu_k | mu_k, Sigma_k), shape (K,), e/Angstrom^3."""
        return self.weights * torch.exp(self.log_normalisation())

    def whitening(self) -> torch.Tensor:
        """Inverse Cholesky factors L^-1, shape (K, 3, 3), 1/Angstrom: z = L^-1 (r - mu)."""
        eye = torch.eye(3, dtype=self.dtype, device=self.device).expand_as(self.scale_tril)
        return torch.linalg.solve_triangular(self.scale_tril, eye, upper=False)

    # ------------------------------------------------------------------ evaluation
    def at(self, points: torch.Tensor, **kwargs) -> torch.Tensor:
        """Density at arbitrary points, shape (P,), e/Angstrom^3; see :func:`evaluate_points`."""
        from .evaluate import evaluate_points

        return evaluate_points(self, points, **kwargs)

    def on_grid(self, grid, **kwargs) -> torch.Tensor:
        """Density on a :class:`~ase_electra.grid.Grid`, shape ``grid.shape``, e/Angstrom^3."""
        from .evaluate import evaluate

        return evaluate(self, grid, **kwargs)

    def __repr__(self) -> str:
        return (
            f"GaussianMixture(n_gaussians={self.n_gaussians}, sizes={self.sizes}, "
            f"dtype={self.dtype}, device={self.device})"
        )
