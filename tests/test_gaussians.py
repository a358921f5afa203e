import math

import pytest
import torch

from ase_electra import GaussianMixture, InvalidInputError

from .conftest import random_mixture


def test_integral_is_sum_of_weights_per_structure():
    a, b = random_mixture(3), random_mixture(5)
    batch = GaussianMixture.concat([a, b])
    assert batch.n_structures == 2 and batch.sizes == (3, 5)
    torch.testing.assert_close(batch.integral(), torch.stack([a.weights.sum(), b.weights.sum()]))
    torch.testing.assert_close(batch.structure(1).centres, b.centres)
    assert [m.n_gaussians for m in batch.split()] == [3, 5]


def test_from_covariances_roundtrip(mixture):
    again = GaussianMixture.from_covariances(mixture.weights, mixture.centres, mixture.covariances)
    torch.testing.assert_close(again.scale_tril, mixture.scale_tril)


def test_normalisation_matches_closed_form():
    sigma = 0.7
    m = GaussianMixture(torch.ones(1, dtype=torch.float64), torch.zeros(1, 3, dtype=torch.float64),
                        sigma * torch.eye(3, dtype=torch.float64)[None])
    peak = m.at(torch.zeros(1, 3, dtype=torch.float64))
    assert peak.item() == pytest.approx((2 * math.pi * sigma**2) ** -1.5)


@pytest.mark.parametrize(
    "field, value, message",
    [
        ("weights", torch.tensor([float("nan"), 1.0]), "non-finite"),
        ("centres", torch.zeros(2, 2), r"centres: expected \(2, 3\), got \(2, 2\)"),
        ("scale_tril", torch.zeros(2, 3, 3), "not positive definite"),
        ("scale_tril", torch.ones(2, 3, 3), "lower-triangular"),
    ],
)
def test_invalid_mixtures_are_refused(field, value, message):
    args = dict(weights=torch.ones(2), centres=torch.zeros(2, 3), scale_tril=torch.eye(3).repeat(2, 1, 1))
    args[field] = value
    with pytest.raises(InvalidInputError, match=message):
        GaussianMixture(**args)


def test_non_positive_definite_covariance_named():
    cov = torch.eye(3).repeat(2, 1, 1)
    cov[1, 2, 2] = -1.0
    with pytest.raises(InvalidInputError, match="Gaussian 1 is not positive definite"):
        GaussianMixture.from_covariances(torch.ones(2), torch.zeros(2, 3), cov)


def test_mismatched_dtypes_refused():
    with pytest.raises(InvalidInputError, match="dtype"):
        GaussianMixture(torch.ones(1), torch.zeros(1, 3, dtype=torch.float64), torch.eye(3)[None])
