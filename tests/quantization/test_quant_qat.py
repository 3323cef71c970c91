"""Quantization-aware training with LSQ through the one training loop."""

from __future__ import annotations

import copy

import pytest
import torch
from torch import nn

from torchslim.core import Context, Targets
from torchslim.core.errors import DataError
from torchslim.data import load_splits
from torchslim.quantization import FakeQuantMixin, LSQQuantizer, Quantize, QuantizedMixin, WeightQuant, quantize_handler
from torchslim.quantization.qat import QATHook, convert_qat, prepare_qat
from torchslim.train import TrainConfig, train


@pytest.fixture(scope="module")
def digits_model():
    splits = load_splits("digits", batch_size=64, seed=0)
    torch.manual_seed(0)
    model = nn.Sequential(nn.Flatten(), nn.Linear(64, 64), nn.ReLU(), nn.Linear(64, 10))
    train(model, splits.train, config=TrainConfig(epochs=8, lr=3e-3), quiet=True)
    return model.eval(), splits


def accuracy(model, loader):
    correct = total = 0
    with torch.no_grad():
        for x, y in loader:
            correct += int((model(x).argmax(1) == y).sum())
            total += len(y)
    return correct / total


def test_qat_recovers_what_binary_ptq_loses(digits_model):
    model, splits = digits_model
    ctx = Context(data=splits, seed=0, quiet=True)
    float_acc = accuracy(model, splits.test)
    assert float_acc > 0.9
    ptq = quantize_handler(model, Quantize(weights=WeightQuant(bits=1)), targets=None, context=ctx)
    qat = quantize_handler(
        model,
        Quantize(weights=WeightQuant(bits=1), train=TrainConfig(epochs=4, lr=1e-3, schedule="cosine"), mode="qat"),
        targets=None,
        context=ctx,
    )
    assert isinstance(qat.model[1], QuantizedMixin) and not any(
        isinstance(m, FakeQuantMixin) for m in qat.model.modules()
    )
    assert all(r["method"].startswith("lsq-qat") for r in qat.layers)
    assert qat.info["qat"]["steps"] > 0
    ptq_acc, qat_acc = accuracy(ptq.model, splits.test), accuracy(qat.model, splits.test)
    assert qat_acc > ptq_acc + 0.03
    assert qat_acc > float_acc - 0.08
    assert set(qat.model[1].weight_q.unique().tolist()) <= {-1, 1}


def test_lsq_learns_step_sizes_and_keeps_them_positive(digits_model):
    model, splits = digits_model
    from torchslim.quantization.ptq import collect_stats, plan_layers
    from torchslim.quantization.technique import Quantize as Q

    work = copy.deepcopy(model)
    cfg = Q(weights=WeightQuant(bits=4), mode="qat")
    choices, _ = plan_layers(
        work, targets=None, weight_spec=cfg.weight_spec(), act_spec=cfg.activation_spec(work), method="mse"
    )
    batches = [b[0] for b in splits.calibration]
    stats, _ = collect_stats(work, choices, batches)
    prepare_qat(work, choices, stats)
    quantizers = [m for m in work.modules() if isinstance(m, LSQQuantizer)]
    assert len(quantizers) == 4  # weights and inputs of two layers
    start = [q.scale.detach().clone() for q in quantizers]
    trainable = {id(p) for p in work.parameters() if p.requires_grad}
    assert all(id(q.scale) in trainable for q in quantizers)
    train(work, splits.train, config=TrainConfig(epochs=1, lr=1e-2), hooks=[QATHook(work)], quiet=True)
    assert any(not torch.equal(s, q.scale.detach()) for s, q in zip(start, quantizers, strict=True))
    assert all((q.scale > 0).all() for q in quantizers)
    x = next(iter(splits.test))[0]
    with torch.no_grad():
        simulated = work(x)
    names = convert_qat(work)
    assert names == ["1", "3"]
    with torch.no_grad():
        torch.testing.assert_close(work(x), simulated, atol=1e-4, rtol=1e-4)


def test_mixed_precision_qat_with_layer_bits(digits_model):
    model, splits = digits_model
    ctx = Context(data=splits, seed=0, quiet=True)
    out = quantize_handler(
        model,
        Quantize(
            weights=WeightQuant(bits=8, layer_bits={"3": 4}),
            train=TrainConfig(epochs=1, lr=1e-4, schedule="cosine", max_steps=5),
            mode="qat",
        ),
        targets=None,
        context=ctx,
    )
    assert {r["layer"]: r["weight_bits"] for r in out.layers} == {"1": 8, "3": 4}
    only_first = quantize_handler(
        model,
        Quantize(
            weights=WeightQuant(bits=4),
            train=TrainConfig(epochs=1, lr=1e-4, schedule="cosine", max_steps=3),
            mode="qat",
        ),
        targets=Targets(names=["1"]),
        context=ctx,
    )
    assert isinstance(only_first.model[1], QuantizedMixin) and type(only_first.model[3]) is nn.Linear


def test_qat_needs_training_data(digits_model):
    model, splits = digits_model
    from torchslim.core import DataSplits

    ctx = Context(data=DataSplits(calibration=splits.calibration))
    with pytest.raises(DataError, match="needs train data"):
        quantize_handler(model, Quantize(mode="qat"), targets=None, context=ctx)


def test_qat_trains_through_train_in_context_on_the_contexts_device(digits_model, monkeypatch):
    import torchslim.quantization.qat as qat_module

    model, splits = digits_model
    calls = []
    real = qat_module.train_in_context

    def spy(work, **kwargs):
        calls.append(kwargs)
        return real(work, **kwargs)

    monkeypatch.setattr(qat_module, "train_in_context", spy)
    ctx = Context(data=splits, seed=0, quiet=True, device="cpu")
    cfg = Quantize(weights=WeightQuant(bits=4), mode="qat", train=TrainConfig(epochs=1, lr=1e-4, max_steps=2))
    out = quantize_handler(model, cfg, targets=None, context=ctx)
    assert len(calls) == 1
    assert calls[0]["context"] is ctx and calls[0]["context"].device == "cpu"
    assert calls[0]["config"] == cfg.train and calls[0]["technique"] == "quantize"
    assert isinstance(calls[0]["hooks"][0], QATHook) and calls[0]["loader"] is splits.train
    assert out.info["qat"]["steps"] == 2
    assert all(p.device.type == "cpu" for p in out.model.parameters())


def test_qat_of_a_pruned_layer_stores_no_mask_and_keeps_its_zeros(digits_model):
    """The pruning mask QAT trains under is in the codes once converted; storing it too cost a dense
    float tensor per layer (a pruned + QAT + entropy-coded fmnist-cnn: 274 KB instead of 25 KB)."""
    from torchslim.io import saved_bytes
    from torchslim.pruning import magnitude_prune

    model, splits = digits_model
    pruned = magnitude_prune(copy.deepcopy(model), sparsity=0.8).model
    context = Context(data=splits, seed=0, quiet=True)
    sizes = {}
    for mode in ("ptq", "qat"):
        config = Quantize(mode=mode, weights=WeightQuant(bits=4), train=TrainConfig(epochs=1, max_steps=5))
        out = quantize_handler(copy.deepcopy(pruned), config, targets=None, context=context).model
        layer = out[1]
        assert isinstance(layer, QuantizedMixin) and "weight_keep" not in dict(layer.named_buffers())
        assert float((layer.stored_weight() == 0).float().mean()) >= 0.8  # the pruned weights are still zero
        sizes[mode] = saved_bytes(out, config=None)
    assert sizes["qat"] <= 1.05 * sizes["ptq"]
