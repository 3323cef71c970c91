"""Registry-driven contract: every registered technique on a handful of toy models.

For each technique: its default config (and the quick one the suite runs) round-trips through
dict and YAML; on an MLP, a CNN, a residual net, a concat net and an attention net it either runs
(output shape unchanged, report numbers consistent) or refuses with a torchslim error naming the
problem; the input model is never modified. test_artifacts.py covers save / load in a fresh
process, ONNX export and the report's bytes.
"""

import copy

import pytest
import torch
import yaml
from contract_toys import TOYS, quick_config, registered_techniques, toy_data

import torchslim as ts
from torchslim.core import Recipe, Step, TorchSlimError
from torchslim.core.technique import TECHNIQUES

EXPECTED_REFUSALS: dict[tuple[str, str], str] = {}
"""(technique, toy) -> text of the error that technique must raise on that toy (none today)."""


@pytest.mark.parametrize("technique", registered_techniques())
def test_config_round_trip(technique):
    config_type = TECHNIQUES.config_type(technique)
    for config in (config_type.from_dict({}), quick_config(technique)):
        assert config_type.from_dict(config.to_dict()) == config
        recipe = Recipe([Step(config)])
        text = recipe.to_yaml()
        assert Recipe.from_yaml(text) == recipe
        # plain YAML (safe_load reads it), the step named by its registered technique name
        plain = yaml.safe_load(text)
        assert plain["steps"][0]["technique"] == technique
        assert config_type.from_dict(plain["steps"][0]["config"]) == config


@pytest.mark.parametrize("toy", sorted(TOYS))
@pytest.mark.parametrize("technique", registered_techniques())
def test_technique_on_toy_model(technique, toy):
    torch.manual_seed(0)
    model = TOYS[toy]().eval()
    original = copy.deepcopy(model.state_dict())
    data = toy_data()
    x = next(iter(data.test))[0][:4]
    config = quick_config(technique)
    try:
        result = ts.compress(model, data, recipe=Recipe([Step(config)]), repeats=1, quiet=True, runtime="pytorch")
    except TorchSlimError as exc:
        assert (technique, toy) in EXPECTED_REFUSALS, f"{technique} refused {toy}: {exc}"
        assert EXPECTED_REFUSALS[(technique, toy)] in str(exc)
        return
    finally:
        assert all(torch.equal(v, model.state_dict()[k]) for k, v in original.items()), "input model modified"
    with torch.no_grad():
        out = result.model(x)
    assert out.shape == (4, 4)
    before, after = result.report.before, result.report.after
    assert after["params"] <= before["params"]
    assert after["nonzero_params"] <= after["params"]
    # quantize's outlier channel splitting repeats at most 1/16 of a Linear's input channels (int8 MACs)
    assert after["macs"] <= before["macs"] * (1 + 1 / 16 if technique == "quantize" else 1.0)
    assert after["bytes"] > 0 and 0.0 <= after["accuracy"] <= 1.0
    assert result.report.steps[0]["technique"] == technique
