"""ElectraDensityModel.blended and electra-blend: weight-space interpolation of two models."""

from __future__ import annotations

import pytest
import torch
from ase.build import molecule
from click.testing import CliRunner

from ase_electra.cli.blend import main
from ase_electra.errors import InvalidInputError
from ase_electra.models import load_model
from ase_electra.models.electra import ElectraDensityModel, default_config

pytestmark = pytest.mark.usefixtures("one_thread")

SMALL = {"elements": (1, 6, 8), "channels": 8, "layers": 1, "n_bessel": 4, "radial_hidden": 8,
         "floating_heavy": 4, "floating_light": 2}


@pytest.fixture(scope="module")
def pair():
    """Two models of one configuration with different parameters, as a model and its fine-tune."""
    config = default_config(**SMALL)
    return ElectraDensityModel.new(config, seed=0), ElectraDensityModel.new(config, seed=1)


def _parameters(model: ElectraDensityModel) -> dict[str, torch.Tensor]:
    return {k: v.clone() for k, v in model.module.state_dict().items()}


def test_blend_interpolates_every_parameter(pair):
    first, second = pair
    a, b = _parameters(first), _parameters(second)
    assert any(not torch.equal(a[k], b[k]) for k in a)  # the two differ
    for weight, expected in ((0.0, a), (1.0, b)):
        got = _parameters(first.blended(second, weight))
        assert all(torch.equal(got[k], expected[k]) for k in a)
    mid = _parameters(first.blended(second, 0.25))
    for k, v in a.items():
        if v.is_floating_point():
            torch.testing.assert_close(mid[k], 0.75 * v + 0.25 * b[k])
    water = molecule("H2O")
    assert first.blended(second, 0.0).predict([water]).weights.sum() == pytest.approx(10.0, abs=1e-4)


def test_blend_refuses_other_configurations_and_weights(pair):
    first, _ = pair
    other = ElectraDensityModel.new(default_config(**{**SMALL, "channels": 16}), seed=0)
    with pytest.raises(InvalidInputError, match="configurations differ"):
        first.blended(other, 0.5)
    with pytest.raises(InvalidInputError, match=r"expected a number in \[0, 1\]"):
        first.blended(first, 1.5)


def test_cli_writes_a_loadable_blend(pair, tmp_path):
    first, second = pair
    first.save(tmp_path / "a")
    second.save(tmp_path / "b")
    result = CliRunner().invoke(main, [str(tmp_path / "a"), str(tmp_path / "b"), "--weight", "0.5",
                                       "-o", str(tmp_path / "ab")])
    assert result.exit_code == 0, result.output
    blend = load_model(tmp_path / "ab")
    expected = _parameters(first.blended(second, 0.5))
    assert all(torch.equal(v, expected[k]) for k, v in blend.module.state_dict().items())


def test_cli_refuses_a_model_that_is_not_one_electra_model(pair, tmp_path):
    pair[0].save(tmp_path / "a")
    result = CliRunner().invoke(main, [str(tmp_path / "a"), "promolecule", "--weight", "0.5",
                                       "-o", str(tmp_path / "out")])
    assert result.exit_code == 1
    assert result.output.startswith("Error: promolecule: not one trained ELECTRA model")
    assert len(result.output.strip().splitlines()) == 1 and not (tmp_path / "out").exists()
