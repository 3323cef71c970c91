"""k-means weight sharing: the codebook level type, the ``kmeans_quant`` technique and its fine-tuning."""

from __future__ import annotations

import subprocess
import sys

import numpy as np
import onnxruntime as ort
import pytest
import torch
from safetensors.torch import load_file, save_file
from torch import nn
from torch.utils.data import DataLoader, TensorDataset

import torchslim as ts
from torchslim.core import Context, DataSplits
from torchslim.core.technique import TECHNIQUES
from torchslim.quantization import Granularity, KMeansLevels, KMeansQuant, QuantizedMixin, WeightQuantizer, sqnr_db
from torchslim.quantization.kmeans import fit_codebook
from torchslim.quantization.levels import UniformLevels
from torchslim.quantization.nonuniform import CentroidFineTuneHook
from torchslim.quantization.packing import packed_nbytes


def _blob_splits() -> DataSplits:
    """Ten overlapping Gaussian classes in 64 dimensions (a task the MLP learns in a few epochs)."""
    g = torch.Generator().manual_seed(0)
    centers = torch.randn(10, 64, generator=g)
    y = torch.randint(0, 10, (1800,), generator=g)
    x = centers[y] + 2.0 * torch.randn(1800, 64, generator=g)
    train = DataLoader(TensorDataset(x[:1400], y[:1400]), batch_size=64, shuffle=False)
    test = DataLoader(TensorDataset(x[1400:], y[1400:]), batch_size=128)
    return DataSplits(train=train, calibration=test, validation=test, test=test, name="blobs", num_classes=10)


@pytest.fixture(scope="module")
def trained():
    """A 64-128-10 MLP trained for 4 epochs (real, trained weights)."""
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(64, 128), nn.ReLU(), nn.Linear(128, 10))
    splits = _blob_splits()
    opt = torch.optim.Adam(model.parameters(), lr=1e-2)
    for _ in range(4):
        for x, y in splits.train:
            opt.zero_grad()
            nn.functional.cross_entropy(model(x), y).backward()
            opt.step()
    assert _accuracy(model.eval(), splits.test) > 0.6, "the fixture model learned its task"
    return model.eval(), splits


def _accuracy(model: nn.Module, loader) -> float:
    with torch.no_grad():
        hits = [(model(x).argmax(1) == y).float() for x, y in loader]
    return float(torch.cat(hits).mean())


def _run(model, config, splits=None, seed=0):
    context = Context(data=splits, seed=seed, quiet=True)
    return TECHNIQUES.handler_for(config)(model, config, targets=None, context=context)


def test_3bit_kmeans_has_higher_weight_sqnr_than_3bit_uniform_on_trained_weights(trained):
    model, _ = trained
    for layer in (model[0], model[2]):
        w = layer.weight.detach()
        uniform = WeightQuantizer(UniformLevels(bits=3), Granularity.per_tensor())
        kmeans = WeightQuantizer(KMeansLevels(bits=3), Granularity.per_tensor())
        u_hat = uniform.dequantize(*uniform.quantize(w))
        k_hat = kmeans.dequantize(*kmeans.quantize(w))
        assert torch.unique(k_hat).numel() <= 8
        assert sqnr_db(w, k_hat) > sqnr_db(w, u_hat) + 1.0, (sqnr_db(w, k_hat), sqnr_db(w, u_hat))


@pytest.mark.parametrize("init", ["linear", "density", "kmeans++"])
def test_every_init_gives_a_codebook_that_lloyd_improves(init):
    g = torch.Generator().manual_seed(1)
    rows = torch.randn(3, 500, generator=g) * torch.tensor([[0.1], [1.0], [3.0]])
    one_step, _ = fit_codebook(rows, 8, init=init, iterations=1)
    fitted, pinned = fit_codebook(rows, 8, init=init, iterations=30)
    assert fitted.shape == (3, 8) and not pinned.any()
    assert torch.all(fitted[:, 1:] >= fitted[:, :-1]), "codebooks are sorted"
    assert torch.all(fitted.amin(1) >= rows.amin(1) - 1e-6) and torch.all(fitted.amax(1) <= rows.amax(1) + 1e-6)

    def error(cb):
        return ((rows[:, :, None] - cb[:, None, :]) ** 2).amin(dim=2).sum()

    assert error(fitted) <= error(one_step) + 1e-6


def test_pruned_zeros_stay_exact_zeros_on_a_pinned_centroid():
    g = torch.Generator().manual_seed(2)
    w = torch.randn(16, 40, generator=g)
    w[torch.rand(16, 40, generator=g) < 0.7] = 0.0
    for granularity in (Granularity.per_tensor(), Granularity.per_channel(0)):
        quantizer = WeightQuantizer(KMeansLevels(bits=2), granularity)
        codes, codebook, zp = quantizer.quantize(w)
        w_hat = quantizer.dequantize(codes, codebook, zp)
        assert torch.equal(w_hat == 0, w == 0), "the sparsity pattern is kept exactly"
        assert torch.all(codebook[..., 0] == 0)


def test_kmeans_quant_stores_packed_indices_next_to_the_codebook_and_reloads(trained, tmp_path):
    model, splits = trained
    out = _run(model, KMeansQuant(bits=3, granularity="per_channel"))
    layer = out.model[0]
    assert isinstance(layer, QuantizedMixin) and layer.weight_spec.levels == "kmeans"
    assert tuple(layer.weight_scale.shape) == (128, 8)
    tensors, meta = layer.stored_state("fc.")
    assert tensors["fc.weight_packed"].numel() == packed_nbytes(128 * 64, 3)
    assert tensors["fc.weight_packed"].dtype == torch.uint8
    assert "fc.weight_zero_point" not in tensors and meta["bits"] == 3
    directory = ts.save(out.model, tmp_path / "art")
    loaded = ts.load(directory, model=nn.Sequential(nn.Linear(64, 128), nn.ReLU(), nn.Linear(128, 10)))
    x = next(iter(splits.test))[0]
    with torch.no_grad():
        assert torch.equal(loaded(x), out.model(x))
    assert [row["weight_bits"] for row in out.layers] == [3, 3]


def test_centroid_gradient_is_the_sum_of_its_cluster_weight_gradients(trained):
    model, splits = trained
    layer = _run(model, KMeansQuant(bits=2)).model[0]
    layer.train()
    codebook = nn.Parameter(layer.weight_scale.detach().clone())
    layer._buffers.pop("weight_scale")
    layer.register_parameter("weight_scale", codebook)
    x = next(iter(splits.train))[0]
    layer(x).square().sum().backward()
    # the same loss through a free float weight, its gradient summed per cluster index
    free = layer.effective_weight().detach().clone().requires_grad_(True)
    nn.functional.linear(x, free, layer.bias.detach()).square().sum().backward()
    index = (layer.weight_q.long() + 2).reshape(-1)
    expected = torch.zeros(4).scatter_add_(0, index, free.grad.reshape(-1))
    assert torch.allclose(codebook.grad, expected, rtol=1e-4, atol=1e-5)


def test_fine_tuning_moves_centroids_keeps_indices_and_the_pinned_zero(trained):
    model, splits = trained
    pruned = nn.Sequential(nn.Linear(64, 128), nn.ReLU(), nn.Linear(128, 10))
    pruned.load_state_dict(model.state_dict())
    with torch.no_grad():
        w = pruned[0].weight
        w[w.abs() < w.abs().quantile(0.6)] = 0.0
    before = _run(pruned, KMeansQuant(bits=3))
    after = _run(pruned, KMeansQuant(bits=3, train={"epochs": 2, "lr": 1e-3}), splits)
    a, b = before.model[0], after.model[0]
    assert torch.equal(a.weight_q, b.weight_q), "fine-tuning keeps the indices"
    assert not torch.equal(a.weight_scale, b.weight_scale), "the centroids moved"
    assert b.weight_scale[0] == 0 and torch.equal(b.effective_weight() == 0, pruned[0].weight == 0)
    assert not b.weight_scale.requires_grad and "weight_scale" in b._buffers, "codebooks are buffers again"
    assert after.info["fine_tune"]["epochs"] == 2
    assert _accuracy(after.model, splits.test) >= _accuracy(before.model, splits.test) - 0.02


def test_the_hook_zeroes_the_pinned_centroid_gradient():
    layer = nn.Linear(4, 2)
    layer.register_buffer("weight_scale", torch.tensor([0.0, 0.5, -0.5, 1.0]))
    fake = type("Q", (), {})()
    fake.weight_scale = nn.Parameter(torch.tensor([0.0, 0.5, -0.5, 1.0]))
    hook = CentroidFineTuneHook([fake])
    fake.weight_scale.grad = torch.ones(4)
    hook.on_before_optimizer_step(None)
    assert fake.weight_scale.grad.tolist() == [0.0, 1.0, 1.0, 1.0]
    with torch.no_grad():
        fake.weight_scale.add_(0.25)
    hook.on_step_end(None)
    assert fake.weight_scale.tolist() == [0.0, 0.75, -0.25, 1.25]


def test_kmeans_model_exports_to_onnx_with_parity(trained, tmp_path):
    model, splits = trained
    out = _run(model, KMeansQuant(bits=4))
    x = next(iter(splits.test))[0][:16]
    facts = ts.deploy.export_onnx(out.model, tmp_path / "m.onnx", x[:1])
    assert facts.float_weight_layers == ["0", "2"] and facts.integer_layers == []
    session = ort.InferenceSession(str(tmp_path / "m.onnx"), providers=["CPUExecutionProvider"])
    (got,) = session.run(None, {session.get_inputs()[0].name: x.numpy()})
    with torch.no_grad():
        ref = out.model(x).numpy()
    assert np.allclose(got, ref, rtol=1e-3, atol=1e-5)


LOADER = """
import sys, torch
from torch import nn
from safetensors.torch import load_file, save_file
import torchslim
model = torchslim.load(sys.argv[1], model=nn.Sequential(nn.Linear(64, 128), nn.ReLU(), nn.Linear(128, 10)))
with torch.no_grad():
    save_file({"y": model(load_file(sys.argv[2])["x"]).contiguous()}, sys.argv[3])
"""


@pytest.mark.slow
def test_kmeans_artifact_loads_in_a_fresh_process_with_identical_outputs(trained, tmp_path):
    model, splits = trained
    out = _run(model, KMeansQuant(bits=5, granularity="per_channel", init="density"))
    directory = ts.save(out.model, tmp_path / "art")
    x = next(iter(splits.test))[0]
    save_file({"x": x.contiguous()}, str(tmp_path / "x.safetensors"))
    done = subprocess.run(
        [sys.executable, "-c", LOADER, str(directory), str(tmp_path / "x.safetensors"), str(tmp_path / "y.st")],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode == 0, done.stderr[-2000:]
    with torch.no_grad():
        assert torch.equal(load_file(str(tmp_path / "y.st"))["y"], out.model(x))


def test_bad_configs_are_refused_naming_the_field():
    with pytest.raises(ts.core.ConfigError, match="bits"):
        KMeansQuant(bits=1)
    with pytest.raises(ts.core.ConfigError, match="init"):
        KMeansQuant.from_dict({"init": "random"})
    with pytest.raises(ts.core.ConfigError, match="kmeans_quant"):
        ts.quantization.Quantize.from_dict({"weights": {"levels": "kmeans"}})


def test_optimal_init_is_the_exact_1d_kmeans():
    """Brute force over contiguous partitions of the sorted values (1-D optimal clusters are contiguous)."""
    import itertools

    from torchslim.quantization.kmeans import fit_codebook

    values = torch.tensor([[-1.3, -0.2, -0.1, 0.05, 0.3, 0.35, 0.9, 2.4, 2.5]], dtype=torch.float64)
    k = 3

    def sse(groups):
        return sum(float(((g - g.mean()) ** 2).sum()) for g in groups)

    ordered = values[0].sort().values
    best = min(
        sse([ordered[a:b] for a, b in zip((0, *cuts), (*cuts, len(ordered)), strict=True)])
        for cuts in itertools.combinations(range(1, len(ordered)), k - 1)
    )
    codebook, _ = fit_codebook(values, k, init="optimal", keep_zero=False)
    fitted = ((values[0][:, None] - codebook[0][None, :].double()) ** 2).min(dim=1).values.sum()
    assert float(fitted) == pytest.approx(best, rel=1e-5)


def test_optimal_init_fits_heavy_tailed_weights_at_least_as_well_as_lloyd():
    from torchslim.quantization.kmeans import fit_codebook

    weights = torch.distributions.StudentT(3.0).sample((1, 4000)).double() * 0.05
    errors = {}
    for init in ("linear", "optimal"):
        codebook, _ = fit_codebook(weights, 8, init=init, keep_zero=False)
        errors[init] = float(((weights[0][:, None] - codebook[0][None, :].double()) ** 2).min(dim=1).values.sum())
    assert errors["optimal"] <= errors["linear"] * (1 + 1e-9)
