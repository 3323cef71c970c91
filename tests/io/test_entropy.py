"""Entropy coding of stored code streams (constriction ANS) and the ``entropy_code`` step."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st
from safetensors.torch import load_file, save_file
from torch import nn

import torchslim as ts
from torchslim.core import ArtifactError, Context, Recipe, Step
from torchslim.core.errors import ManifestError
from torchslim.core.technique import TECHNIQUES
from torchslim.io.entropy import decode_symbols, encode_symbols, escape_gaps, unescape_gaps
from torchslim.quantization import EntropyCode, KMeansQuant, PowerOfTwoQuant, Quantize

MODEL_FILES = ("model.safetensors", "torchslim.json")


def _mlp() -> nn.Module:
    return nn.Sequential(nn.Linear(96, 200), nn.ReLU(), nn.Linear(200, 10))


def _pruned(seed: int = 0, keep: float = 0.06) -> nn.Module:
    torch.manual_seed(seed)
    model = _mlp().eval()
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for layer in (model[0], model[2]):
            layer.weight.mul_((torch.rand(layer.weight.shape, generator=g) < keep).float())
    return model


def _run(model, *configs):
    context = Context(seed=0, quiet=True)
    for config in configs:
        model = TECHNIQUES.handler_for(config)(model, config, targets=None, context=context).model
    return model


def _bytes(directory: Path) -> int:
    return sum((directory / name).stat().st_size for name in MODEL_FILES)


@settings(max_examples=30, deadline=None)
@given(
    data=st.data(),
    alphabet=st.sampled_from([2, 4, 8, 16, 256]),
    n=st.integers(0, 3000),
    background_share=st.floats(0.0, 1.0),
)
def test_encode_then_decode_is_exact(data, alphabet, n, background_share):
    seed = data.draw(st.integers(0, 2**31 - 1))
    rng = np.random.default_rng(seed)
    symbols = np.where(rng.random(n) < background_share, alphabet // 2, rng.integers(0, alphabet, n))
    blob, meta = encode_symbols(symbols, alphabet)
    assert blob.dtype == np.uint8
    assert json.loads(json.dumps(meta)) == meta
    assert np.array_equal(decode_symbols(blob, meta, n), symbols)


@given(gaps=st.lists(st.integers(0, 5000), max_size=50), alphabet=st.sampled_from([2, 16, 256]))
def test_gap_escapes_round_trip(gaps, alphabet):
    values = np.array(gaps, dtype=np.int64)
    escaped = escape_gaps(values, alphabet)
    assert escaped.max(initial=0) < alphabet
    assert np.array_equal(unescape_gaps(escaped, alphabet), values)


def test_coded_size_is_near_the_entropy_and_sparse_streams_use_gaps():
    rng = np.random.default_rng(0)
    probs = np.array([0.5, 0.25, 0.125, 0.0625, 0.0625])
    symbols = rng.choice(5, size=40_000, p=probs)
    blob, meta = encode_symbols(symbols, 8)
    entropy_bytes = -(probs * np.log2(probs)).sum() * symbols.size / 8
    assert meta["form"] == "dense"
    assert entropy_bytes * 0.98 <= blob.size <= entropy_bytes * 1.02 + 2 * 8 + 8
    # pruned input pixels: long all-zero runs (whole columns), then 10% non-zeros; the gaps code the runs
    sparse = np.where(rng.random(100_000) < 0.1, rng.integers(1, 16, 100_000), 0)
    sparse[:70_000] = 0
    blob, meta = encode_symbols(sparse, 16)
    assert meta["form"] == "sparse" and meta["background"] == 0 and meta["symbols"] == int((sparse != 0).sum())
    p0 = (sparse[70_000:] == 0).mean()
    tail_entropy = -(p0 * np.log2(p0) + (1 - p0) * np.log2((1 - p0) / 15)) * 30_000 / 8
    assert blob.size < tail_entropy * 1.05 + 2 * (16 + 256), "the zero run costs next to nothing"


@pytest.mark.parametrize(
    "quantizer", [KMeansQuant(bits=4), PowerOfTwoQuant(bits=4), Quantize(mode="ptq", activations=None)]
)
def test_entropy_code_shrinks_the_real_file_and_reloads_identically(quantizer, tmp_path):
    model = _pruned()
    packed = _run(model, quantizer)
    coded = _run(packed, EntropyCode())
    plain_dir = ts.save(packed, tmp_path / "packed")
    coded_dir = ts.save(coded, tmp_path / "coded")
    assert _bytes(coded_dir) < _bytes(plain_dir) * 0.75, (_bytes(coded_dir), _bytes(plain_dir))
    stored = load_file(str(coded_dir / "model.safetensors"))
    assert "0.weight_entropy" in stored and "0.weight_packed" not in stored
    meta = json.loads((coded_dir / "torchslim.json").read_text())["tensors"]["0"]["entropy"]
    assert meta["form"] in ("dense", "sparse") and meta["alphabet"] == 2 ** packed[0].weight_spec.bits
    x = torch.randn(5, 96)
    loaded = ts.load(coded_dir, model=_mlp())
    with torch.no_grad():
        assert torch.equal(loaded(x), coded(x)) and torch.equal(coded(x), packed(x))
    again = ts.save(loaded, tmp_path / "again")
    assert (again / "model.safetensors").read_bytes() == (coded_dir / "model.safetensors").read_bytes()


LOADER = """
import sys, torch
from torch import nn
from safetensors.torch import load_file, save_file
import torchslim
model = torchslim.load(sys.argv[1], model=nn.Sequential(nn.Linear(96, 200), nn.ReLU(), nn.Linear(200, 10)))
with torch.no_grad():
    save_file({"y": model(load_file(sys.argv[2])["x"]).contiguous()}, sys.argv[3])
"""


def test_entropy_coded_artifact_loads_in_a_fresh_process(tmp_path):
    coded = _run(_pruned(1), KMeansQuant(bits=3), EntropyCode())
    directory = ts.save(coded, tmp_path / "art")
    x = torch.randn(7, 96)
    save_file({"x": x}, str(tmp_path / "x.st"))
    done = subprocess.run(
        [sys.executable, "-c", LOADER, str(directory), str(tmp_path / "x.st"), str(tmp_path / "y.st")],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode == 0, done.stderr[-2000:]
    with torch.no_grad():
        assert torch.equal(load_file(str(tmp_path / "y.st"))["y"], coded(x))


def test_deep_compression_recipe_is_shipped_and_round_trips():
    from torchslim.recipes import shipped_recipe

    recipe = shipped_recipe("deep-compression")
    assert [s.config.name for s in recipe.steps] == ["magnitude_pruning", "kmeans_quant", "entropy_code"]
    assert recipe.steps[1].config.train.epochs > 0, "the recipe fine-tunes the centroids"
    assert Recipe.from_yaml(recipe.to_yaml()) == recipe


def test_a_corrupt_stream_or_meta_is_refused_with_a_typed_error(tmp_path):
    coded = _run(_pruned(2), KMeansQuant(bits=4), EntropyCode())
    directory = ts.save(coded, tmp_path / "art")
    manifest_path = directory / "torchslim.json"
    manifest = json.loads(manifest_path.read_text())
    manifest["tensors"]["0"]["entropy"]["symbols"] = 10**9
    manifest_path.write_text(json.dumps(manifest))
    with pytest.raises((ArtifactError, ManifestError), match="entropy|symbols"):
        ts.load(directory, model=_mlp())
    directory = ts.save(coded, tmp_path / "art2")
    stored = load_file(str(directory / "model.safetensors"))
    stored["0.weight_entropy"] = stored["0.weight_entropy"][:-3]
    save_file(stored, str(directory / "model.safetensors"))
    with pytest.raises((ArtifactError, ManifestError)):
        ts.load(directory, model=_mlp())


def test_entropy_code_without_quantized_layers_changes_nothing_and_says_so():
    model = _mlp()
    config = EntropyCode()
    out = TECHNIQUES.handler_for(config)(model, config, targets=None, context=Context(seed=0, quiet=True))
    assert out.info["layers"] == 0 and "nothing to entropy-code" in out.info["notes"][0]
    x = torch.randn(2, 96)
    with torch.no_grad():
        assert torch.equal(out.model(x), model(x))


@pytest.mark.slow
def test_compress_with_the_three_steps_reports_the_real_bytes(tmp_path):
    from torch.utils.data import DataLoader, TensorDataset

    from torchslim.core import DataSplits
    from torchslim.pruning import MagnitudePruning

    g = torch.Generator().manual_seed(0)
    loader = DataLoader(TensorDataset(torch.randn(64, 96, generator=g), torch.randint(0, 10, (64,), generator=g)))
    splits = DataSplits(train=loader, calibration=loader, validation=loader, test=loader, name="toy", num_classes=10)
    steps = [Step(MagnitudePruning(sparsity=0.9, scope="layer")), Step(KMeansQuant(bits=4)), Step(EntropyCode())]
    recipe = Recipe(steps)
    result = ts.compress(_mlp(), splits, recipe=recipe, repeats=1, quiet=True, runtime="pytorch")
    directory = result.save(tmp_path / "r", html=False)
    assert result.report.after["bytes"] == _bytes(directory)
    assert result.report.after["bytes"] < result.report.before["bytes"] / 5
