"""Post-training quantization through the ``quantize`` technique: numeric floors, methods, reports,
mixed precision, and bad input that must fail before any work."""

from __future__ import annotations

import copy

import pytest
import torch
from quant_toys import context_for, image_batches, make_cnn
from torch import nn

from torchslim.core import Context, Recipe, Step, Targets
from torchslim.core.errors import ConfigError, DataError, ModelError, TargetError
from torchslim.core.layer import StorageBits
from torchslim.core.plans import model_plan
from torchslim.core.technique import TECHNIQUES
from torchslim.quantization import (
    ActivationQuant,
    Granularity,
    Quantize,
    QuantizedMixin,
    WeightQuant,
    WeightSpec,
    dequantize,
    dequantize_module,
    quantize,
    quantize_handler,
    weight_qparams,
)
from torchslim.quantization.gptq import HessianAccumulator, gptq_quantize, layer_error
from torchslim.quantization.ptq import bias_shift


def run(model, config, context, targets=None):
    return quantize_handler(model, config, targets=targets, context=context)


def state(model):
    return {k: v.clone() for k, v in model.state_dict().items()}


def same_state(a, b):
    return a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)


# ---- numeric floors ------------------------------------------------------------------------------


def test_int8_weights_and_activations_floor(cnn, cnn_context, images):
    before = state(cnn)
    out = run(
        cnn,
        Quantize(weights=WeightQuant(bits=8, granularity="per_channel"), quantize_single_channel_convs=True),
        cnn_context,
    )
    assert same_state(before, state(cnn)), "the user's model must not change"
    q = out.model
    assert all(
        isinstance(q.get_submodule(n), QuantizedMixin) for n in ("features.conv1", "features.conv2", "fc", "classifier")
    )
    rows = {r["layer"]: r for r in out.layers}
    assert set(rows) == {"features.conv1", "features.conv2", "fc", "classifier"}
    for r in rows.values():
        assert r["weight_bits"] == 8 and r["activation_bits"] == 8 and r["activations"] == "static"
        assert r["weight_sqnr_db"] >= 40.0
        assert r["output_sqnr_db"] >= 30.0
        if r["params"] >= 1000:  # per-channel scales dominate tiny layers
            assert r["weight_bytes"] < 0.27 * r["weight_bytes_float"]
    assert out.info["output_sqnr_db"] >= 30.0
    assert out.info["top1_agreement"] >= 0.95
    assert out.info["calibration_samples"] == 256
    # BatchNorm was folded first and is reported as such
    assert out.skipped == {"features.bn1": "BatchNorm folded into features.conv1"}
    assert [e["kind"] for e in model_plan(q)] == ["fold_batchnorm", "quantize"]
    # the energy model reads these, through the layer contract
    assert q.features.conv1.storage_bits() == StorageBits(weight=8, activation=8)


def test_int8_weight_only_floor(cnn, cnn_context):
    out = run(cnn, Quantize(weights=WeightQuant(bits=8), activations=None), cnn_context)
    for r in out.layers:
        assert r["weight_sqnr_db"] >= 40.0 and r["activations"] == "float"
    assert out.model.fc.storage_bits() == StorageBits(weight=8, activation=None)
    assert out.info["output_sqnr_db"] >= 35.0


def test_int4_per_group_weight_floor(cnn, cnn_context):
    out = run(
        cnn,
        Quantize(weights=WeightQuant(bits=4, granularity="per_group", group_size=16, range="minmax"), activations=None),
        cnn_context,
    )
    for r in out.layers:
        assert r["weight_bits"] == 4 and r["granularity"] == "per_group"
        assert r["weight_sqnr_db"] >= 18.0
    assert out.model.fc.weight_scale.shape == (32, 16)  # 256 inputs / 16 per group


def test_weight_only_needs_no_calibration_data(cnn):
    out = run(cnn, Quantize(weights=WeightQuant(bits=8), activations=None), Context())
    assert all(r["output_sqnr_db"] is None for r in out.layers)
    assert all(r["weight_sqnr_db"] >= 40 for r in out.layers)


# ---- methods -------------------------------------------------------------------------------------


def correlated_inputs(n=2048, d=64, seed=0):
    g = torch.Generator().manual_seed(seed)
    basis = torch.randn(8, d, generator=g)
    return torch.randn(n, 8, generator=g) @ basis + 0.05 * torch.randn(n, d, generator=g)


def test_gptq_lowers_the_layer_error_it_targets():
    torch.manual_seed(0)
    layer = nn.Linear(64, 32)
    x = correlated_inputs()
    acc = HessianAccumulator(layer)
    acc.add(x[:1000])
    acc.add(x[1000:])
    torch.testing.assert_close(acc.hessian, 2 * x.T @ x / len(x), rtol=1e-4, atol=1e-3)
    w = layer.weight.detach()
    for g in (Granularity.per_channel(0), Granularity.per_group(16, 0)):
        spec = WeightSpec(3, True, g)
        codes, scale, zp = gptq_quantize(w, acc.hessian, spec=spec)
        assert codes.abs().max() <= 4 and scale.shape == g.param_shape(w.shape)
        gptq_w = dequantize(codes, scale, zp, granularity=g)
        s, z = weight_qparams(w, bits=3, granularity=g)
        rtn_w = dequantize(quantize(w, s, z, bits=3, granularity=g), s, z, granularity=g)
        assert layer_error(w, gptq_w, acc.hessian) < 0.7 * layer_error(w, rtn_w, acc.hessian)


def test_gptq_through_the_technique_improves_outputs(cnn, cnn_context):
    rtn = run(cnn, Quantize(weights=WeightQuant(bits=3, range="minmax"), activations=None), cnn_context)
    gptq = run(cnn, Quantize(weights=WeightQuant(bits=3, range="gptq"), activations=None), cnn_context)
    assert {r["method"] for r in gptq.layers} == {"gptq"}
    assert gptq.info["output_sqnr_db"] > rtn.info["output_sqnr_db"]
    auto = run(cnn, Quantize(weights=WeightQuant(bits=4), activations=None), cnn_context)
    assert auto.info["method"] == "gptq"


def test_bias_correction_removes_the_mean_output_shift():
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(32, 16))
    x = torch.randn(512, 32) + 2.0  # inputs with a large mean make weight error shift the output
    ctx = context_for([(x, torch.zeros(512))])
    weights = WeightQuant(bits=3, range="minmax")
    plain = run(model, Quantize(weights=weights, activations=None, bias_correction=False), ctx)
    fixed = run(model, Quantize(weights=weights, activations=None, bias_correction=True), ctx)
    auto = run(model, Quantize(weights=weights, activations=None), ctx)  # default: on, calibration data given
    with torch.no_grad():
        ref = model(x).mean(0)
        shift_plain = (plain.model(x).mean(0) - ref).abs().mean()
        shift_fixed = (fixed.model(x).mean(0) - ref).abs().mean()
    assert shift_fixed < 0.05 * shift_plain
    assert (plain.info["bias_correction"], fixed.info["bias_correction"], auto.info["bias_correction"]) == (
        False,
        True,
        True,
    )
    assert torch.equal(auto.model[0].bias, fixed.model[0].bias)


def test_bias_correction_auto_is_off_without_data_and_for_gptq(cnn, cnn_context):
    no_data = run(cnn, Quantize(activations=None), Context(seed=0, quiet=True))
    gptq = run(cnn, Quantize(weights=WeightQuant(bits=4, range="gptq"), activations=None), cnn_context)
    assert (no_data.info["bias_correction"], gptq.info["bias_correction"]) == (False, False)
    with pytest.raises(DataError, match="bias correction"):
        run(cnn, Quantize(activations=None, bias_correction=True), Context(seed=0, quiet=True))


def test_bias_shift_of_a_depthwise_convolution():
    conv = nn.Conv2d(4, 8, 3, groups=4)
    dw = torch.randn(8, 1, 3, 3)
    mean = torch.tensor([1.0, 2.0, 3.0, 4.0])
    expected = dw.sum(dim=(1, 2, 3)) * mean.repeat_interleave(2)
    torch.testing.assert_close(bias_shift(conv, dw, mean), expected)


@pytest.mark.parametrize("observer", ["minmax", "moving_average", "percentile", "mse"])
def test_every_activation_observer_works(cnn, cnn_context, observer):
    out = run(cnn, Quantize(activations=ActivationQuant(observer=observer)), cnn_context)
    assert out.info["output_sqnr_db"] >= 25.0


def test_dynamic_activations_for_a_transformer(transformer, tokens):
    ctx = context_for(tokens)
    out = run(transformer, Quantize(), ctx)
    assert out.info["activation_mode"] == "dynamic"
    layers = {r["layer"]: r for r in out.layers}
    assert set(layers) == {"embed", "attn.query", "attn.key", "attn.value", "attn.out", "up", "down"}
    assert layers["embed"]["activations"] == "float" and layers["embed"]["weight_sqnr_db"] >= 40
    assert all(r["activations"] == "dynamic" for n, r in layers.items() if n != "embed")
    assert out.skipped == {"norm": "LayerNorm has no integer kernel in torchslim; it stays float"}
    assert out.info["output_cosine"] >= 0.99
    assert "top1_agreement" in out.info  # mean-pooled features, not unit-norm: argmax agreement is reported
    per_tensor = run(transformer, Quantize(activations=ActivationQuant(dynamic_granularity="per_tensor")), ctx)
    assert per_tensor.info["output_cosine"] >= 0.98


def test_quantized_layer_behaves_like_its_dequantized_float_layer(cnn, cnn_context, images):
    q = run(cnn, Quantize(activations=None), cnn_context).model
    layer = q.fc
    assert layer.weight is layer.weight, "the dequantized weight is cached"
    before = layer.weight
    with torch.no_grad():
        layer.weight_q[0, 0] += 1
    assert layer.weight is not before, "changing the codes invalidates the cache"
    plain = dequantize_module(layer)
    assert type(plain) is nn.Linear
    x = torch.randn(3, 256)
    torch.testing.assert_close(plain(x), layer(x))


# ---- mixed precision --------------------------------------------------------------------------------


def test_per_layer_bits_in_one_step(cnn, cnn_context):
    out = run(
        cnn,
        Quantize(
            weights=WeightQuant(bits=8, layer_bits={"re:features\\..*": 4, "classifier": 2}, range="minmax"),
            quantize_single_channel_convs=True,
        ),
        cnn_context,
    )
    bits = {r["layer"]: r["weight_bits"] for r in out.layers}
    assert bits == {"features.conv1": 4, "features.conv2": 4, "fc": 8, "classifier": 2}
    with pytest.raises(ConfigError, match="layer_bits pattern 'clasifier' matches none.*classifier"):
        run(cnn, Quantize(weights=WeightQuant(layer_bits={"clasifier": 4})), cnn_context)


def test_mixed_precision_through_targets_in_a_recipe(cnn, cnn_context):
    from torchslim.api import run_recipe

    recipe = Recipe(
        [
            Step(Quantize(weights=WeightQuant(bits=4, range="mse")), targets=Targets(names=["fc"])),
            Step(Quantize(weights=WeightQuant(bits=8), quantize_single_channel_convs=True)),
        ]
    )
    model, steps = run_recipe(copy.deepcopy(cnn), recipe, context=cnn_context)
    assert model.fc.storage_bits().weight == 4 and model.features.conv1.storage_bits().weight == 8
    assert steps[1]["skipped"]["fc"] == "already quantized by an earlier step"
    again = Recipe.from_yaml(recipe.to_yaml())
    assert again.to_dict() == recipe.to_dict()
    assert again.steps[0].config == recipe.steps[0].config


def test_technique_is_registered_with_yaml_config():
    assert TECHNIQUES.config_type("quantize") is Quantize
    with pytest.warns(FutureWarning, match="is now"):  # the flat form of the earlier recipes
        recipe = Recipe.from_yaml(
            "steps:\n- technique: quantize\n  targets: {exclude: [classifier]}\n"
            "  config: {bits: 4, granularity: per_group, group_size: 32, activations: false, mode: ptq, method: gptq}\n"
        )
    cfg = recipe.steps[0].config
    w = cfg.weights
    assert (w.bits, w.granularity, w.group_size, w.range, cfg.activations) == (4, "per_group", 32, "gptq", None)
    from torchslim.quantization import Uniform

    assert Uniform is Quantize


# ---- bad input: a clear error before any work, no partial output, model unchanged -------------------


@pytest.mark.parametrize("bits", [0, 9, -3])
def test_bits_outside_1_to_8(bits):
    with pytest.raises(ConfigError, match=r"WeightQuant.bits=.* out of range \[1, 8\]"):
        Quantize(weights=WeightQuant(bits=bits))
    with pytest.raises(ConfigError, match=r"ActivationQuant.bits=.* out of range \[1, 8\]"):
        Quantize(activations=ActivationQuant(bits=bits))


def test_config_errors():
    with pytest.raises(ConfigError, match="Unknown key 'bit'.*Did you mean 'bits'"):
        Quantize.from_dict({"bit": 4})
    with pytest.raises(ConfigError, match="granularity='per_row' is not one of"):
        Quantize(weights=WeightQuant(granularity="per_row"))
    with pytest.raises(ConfigError, match="dynamic"):
        Quantize(activations=ActivationQuant(mode="dynamic", bits=4))
    with pytest.raises(ConfigError, match="layer_bits"):
        Quantize(weights=WeightQuant(layer_bits={"fc": 12}))


def test_axis_that_does_not_exist_names_the_layer(cnn, cnn_context):
    before = state(cnn)
    with pytest.raises(ConfigError, match="axis=2 does not exist for layer 'fc' weight of shape \\[32, 256\\]"):
        run(cnn, Quantize(weights=WeightQuant(granularity="per_channel", axis=2)), cnn_context)
    assert same_state(before, state(cnn))


def test_calibration_with_nan(cnn, images):
    bad = [(images[0][0].clone(), images[0][1]), (images[1][0].clone(), images[1][1])]
    bad[1][0][3, 0, 2, 2] = float("nan")
    before = state(cnn)
    with pytest.raises(DataError, match="calibration batch 1: inputs contains 1 NaN or inf"):
        run(cnn, Quantize(), context_for(bad))
    assert same_state(before, state(cnn))


def test_calibration_of_the_wrong_shape(cnn, images):
    wrong = [(torch.rand(8, 1, 28, 28), torch.zeros(8))]
    with pytest.raises(DataError, match="per-sample shape \\[1, 28, 28\\].*expects \\[1, 16, 16\\]"):
        run(cnn, Quantize(), context_for(wrong, example=images[0][0][:1]))
    with pytest.raises(DataError, match="does not fit ToyCNN"):
        run(cnn, Quantize(), context_for(wrong))
    mixed = [images[0], (torch.rand(8, 1, 12, 12), torch.zeros(8))]
    with pytest.raises(DataError, match="batch 1 has per-sample shape"):
        run(cnn, Quantize(), context_for(mixed))


def test_empty_or_missing_calibration(cnn):
    with pytest.raises(DataError, match="calibration set is empty"):
        run(cnn, Quantize(), context_for([]))
    with pytest.raises(DataError, match="needs calibration data for static activation quantization"):
        run(cnn, Quantize(), Context())
    with pytest.raises(DataError, match="GPTQ"):
        run(cnn, Quantize(weights=WeightQuant(range="gptq"), activations=None), Context())


def test_nan_weights_and_nothing_to_quantize(cnn, cnn_context):
    broken = copy.deepcopy(cnn)
    with torch.no_grad():
        broken.fc.weight[0, 0] = float("nan")
    with pytest.raises(ModelError, match="layer 'fc': the weight contains NaN"):
        run(broken, Quantize(), cnn_context)
    with pytest.raises(TargetError, match="none of the selected modules can be quantized"):
        run(cnn, Quantize(), cnn_context, targets=Targets(types=["ReLU"]))
    with pytest.raises(TargetError, match="matches no module"):
        run(cnn, Quantize(), cnn_context, targets=Targets(names=["fc9"]))


def test_unseen_axis_on_a_model_with_many_layers_fails_before_folding():
    model = make_cnn()
    plan_before = model_plan(model)
    with pytest.raises(ConfigError):
        run(model, Quantize(weights=WeightQuant(granularity="per_group", axis=3)), context_for(image_batches()))
    assert model_plan(model) == plan_before
    assert isinstance(model.features.bn1, nn.BatchNorm2d)


def test_a_model_of_only_single_channel_convs_says_how_to_quantize_them(cnn_context):
    only = nn.Sequential(nn.Conv2d(1, 4, 3, padding=1), nn.ReLU(), nn.Flatten())
    with pytest.raises(TargetError, match="quantize_single_channel_convs"):
        run(only, Quantize(weights=WeightQuant(bits=8)), cnn_context)
    out = run(only, Quantize(weights=WeightQuant(bits=8), quantize_single_channel_convs=True), cnn_context)
    assert [r["layer"] for r in out.layers] == ["0"]
    weight_only = run(
        only, Quantize(weights=WeightQuant(bits=8), activations=None), cnn_context
    )  # float inputs: no reason to skip
    assert [r["layer"] for r in weight_only.layers] == ["0"]


def test_residual_output_analysis_leaves_plain_chains_alone_and_notes_untraceable_models(cnn, cnn_context):
    out = run(cnn, Quantize(weights=WeightQuant(bits=8), quantize_single_channel_convs=True), cnn_context)
    assert "int8_outputs" not in out.info  # conv -> relu -> pool -> next quantized layer: nothing to add

    class Branchy(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.conv = nn.Conv2d(1, 4, 3, padding=1)
            self.conv2 = nn.Conv2d(4, 4, 3, padding=1)

        def forward(self, x):
            h = self.conv(x)
            if float(h.sum()) > 0:  # data-dependent: torch.fx cannot trace it
                h = h * 2
            return self.conv2(h) + h

    # torch.fx cannot trace it: the same walk runs over the autograd graph of a calibration batch
    untraceable = run(Branchy(), Quantize(weights=WeightQuant(bits=8), quantize_single_channel_convs=True), cnn_context)
    assert untraceable.info["int8_outputs"] == ["conv", "conv2"]  # both reach the Add
