"""The nested ``Quantize`` config: sections, defaults, the earlier flat YAML, round trips."""

from __future__ import annotations

import warnings

import pytest
import yaml

from torchslim.core import Recipe
from torchslim.core.errors import ConfigError
from torchslim.quantization import ActivationQuant, Quantize, Uniform, WeightQuant
from torchslim.train import TrainConfig

INT4_FLAT = {
    "bits": 4,
    "granularity": "per_group",
    "group_size": 32,
    "activations": False,
    "mode": "ptq",
    "method": "gptq",
}
INT8_FLAT = {"bits": 8, "granularity": "per_channel", "activations": True, "mode": "ptq", "calibration_samples": 512}


def flat(data):
    with pytest.warns(FutureWarning) as record:
        config = Quantize.from_dict(data)
    return config, [str(w.message) for w in record]


def test_defaults_are_the_measured_ones():
    q = Quantize()
    assert q.weights == WeightQuant(
        bits=8,
        granularity="per_channel",
        axis=0,
        group_size=128,
        symmetric=True,
        range="auto",
        percentile=99.99,
        gptq_block_size=128,
        gptq_damp=0.01,
    )
    assert q.activations == ActivationQuant(
        mode="auto", bits=8, symmetric=False, dynamic_granularity="per_tensor", observer="minmax", percentile=99.99
    )
    assert q.train == TrainConfig(epochs=1, lr=1e-4, schedule="cosine")
    assert (
        q.mode,
        q.calibration_samples,
        q.bias_correction,
        q.fold_batchnorm,
        q.outlier_channels,
        q.quantize_single_channel_convs,
        q.quantize_residual_outputs,
        q.learn_scales,
    ) == ("ptq", 512, "auto", True, 8, False, True, True)
    assert Uniform is Quantize


def test_int4_weights_recipe_in_the_flat_form_equals_the_nested_form():
    old, messages = flat(INT4_FLAT)
    new = Quantize.from_dict(
        {
            "weights": {"bits": 4, "granularity": "per_group", "group_size": 32, "range": "gptq"},
            "activations": None,
            "mode": "ptq",
        }
    )
    assert (
        old
        == new
        == Quantize(weights=WeightQuant(bits=4, granularity="per_group", group_size=32, range="gptq"), activations=None)
    )
    assert any("'method' is now 'weights.range'" in m for m in messages)
    assert any("'activations: false' is now 'activations: null'" in m for m in messages)


def test_int8_recipe_in_the_flat_form_equals_the_nested_form():
    old, messages = flat(INT8_FLAT)
    assert (
        old
        == Quantize.from_dict(
            {
                "weights": {"bits": 8, "granularity": "per_channel"},
                "activations": {},
                "mode": "ptq",
                "calibration_samples": 512,
            }
        )
        == Quantize()
    )
    assert any("'activations: true' is now" in m for m in messages)


def test_flat_activation_and_training_keys_move_to_their_sections():
    old, _ = flat(
        {
            "activation_mode": "dynamic",
            "dynamic_granularity": "per_token",
            "observer": "percentile",
            "percentile": 99.9,
            "mode": "qat",
            "epochs": 3,
            "lr": 1e-3,
        }
    )
    assert old.activations == ActivationQuant(
        mode="dynamic", dynamic_granularity="per_token", observer="percentile", percentile=99.9
    )
    assert old.weights.percentile == 99.9  # the one flat percentile served both
    # a partial train section keeps QAT's own defaults for the rest (cosine schedule)
    assert old.train == TrainConfig(epochs=3, lr=1e-3, schedule="cosine")
    # settings of inputs that stay float are dropped with the section
    weight_only, _ = flat({"activations": False, "activation_bits": 4, "observer": "mse"})
    assert weight_only.activations is None


def test_partial_nested_train_keeps_qat_defaults():
    q = Quantize.from_dict({"mode": "qat", "train": {"epochs": 2}})
    assert q.train == TrainConfig(epochs=2, lr=1e-4, schedule="cosine")


def test_to_dict_is_nested_and_round_trips_through_yaml():
    q = Quantize(
        weights=WeightQuant(bits=4, granularity="per_group", group_size=32, range="gptq", layer_bits={"fc": 8}),
        activations=None,
        calibration_samples=128,
    )
    d = q.to_dict()
    assert d["weights"]["bits"] == 4 and d["activations"] is None and d["train"]["lr"] == 1e-4
    assert "bits" not in d and "lr" not in d
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # the nested form raises no FutureWarning
        again = Quantize.from_dict(yaml.safe_load(yaml.safe_dump(d)))
    assert again == q
    recipe = Recipe.from_yaml(
        "steps:\n- technique: quantize\n  config:\n    weights: {bits: 4, granularity: per_group, group_size: 32, "
        "range: gptq}\n    activations: null\n"
    )
    assert recipe.steps[0].config == Quantize(
        weights=WeightQuant(bits=4, granularity="per_group", group_size=32, range="gptq"), activations=None
    )
    assert Recipe.from_yaml(recipe.to_yaml()).to_dict() == recipe.to_dict()


def test_errors_name_the_section_and_the_new_key():
    with pytest.raises(ConfigError, match=r"Unknown key 'bit'.*Did you mean 'bits' \(now 'weights.bits'\)"):
        Quantize.from_dict({"bit": 4})
    with pytest.raises(ConfigError, match=r"Unknown key 'mod' for technique 'ActivationQuant'.*'mode'"):
        Quantize.from_dict({"activations": {"mod": "static"}})
    with pytest.raises(ConfigError, match=r"WeightQuant.range='gptx' is not one of"):
        Quantize.from_dict({"weights": {"range": "gptx"}})
    with pytest.raises(ConfigError, match=r"WeightQuant.levels='unifrom'.*Did you mean 'uniform'"):
        WeightQuant(levels="unifrom")
    with pytest.raises(ConfigError, match="needs bits >= 2"):
        Quantize(weights=WeightQuant(bits=1, range="gptq"))
