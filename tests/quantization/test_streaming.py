"""Memory-bounded int8 PTQ of sharded safetensors decoders (quantization/streaming.py), on tiny Llama models."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from torchslim.core.errors import ArtifactError, ConfigError, ModelError
from torchslim.quantization import streaming
from torchslim.quantization.functional import as_granularity, quantize_tensor, sqnr_db
from torchslim.quantization.streaming import (
    INDEX,
    LazyCheckpoint,
    dequantized_state_dict,
    quantize_checkpoint,
)

transformers = pytest.importorskip("transformers")


def _tiny(tmp: Path, *, tie: bool = False, layers: int = 3, hidden: int = 64, wide: int = 2, shard: str = "60KB"):
    config = transformers.LlamaConfig(
        hidden_size=hidden,
        intermediate_size=wide * hidden,
        num_hidden_layers=layers,
        num_attention_heads=4,
        num_key_value_heads=2,
        vocab_size=256,
        max_position_embeddings=128,
        tie_word_embeddings=tie,
    )
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(0)
        model = transformers.LlamaForCausalLM(config).eval()
    source = tmp / "source"
    model.save_pretrained(source, max_shard_size=shard)
    return model, source


def _ids() -> torch.Tensor:
    return torch.randint(0, 256, (4, 16), generator=torch.Generator().manual_seed(1))


@pytest.mark.parametrize("tie", [False, True])
def test_streamed_int8_equals_the_whole_model_quantized_at_once(tmp_path, tie):
    model, source = _tiny(tmp_path, tie=tie)
    assert len(LazyCheckpoint(source).files) > 3  # really sharded
    result = quantize_checkpoint(source, tmp_path / "out", calibration=_ids(), max_shard_bytes=40_000)
    out = LazyCheckpoint(tmp_path / "out")
    assert len(out.files) > 1 and result.largest_output_shard_bytes <= 40_000 + 2_000  # + header
    stored = out.read(list(out.weight_map))
    g = as_granularity("per_channel", axis=0)
    for name, module in model.named_modules():
        if isinstance(module, torch.nn.Linear) and not (tie and name == "lm_head"):
            codes, scale, _ = quantize_tensor(module.weight.detach(), bits=8, symmetric=True, granularity=g)
            assert torch.equal(stored[f"{name}.weight_q"], codes), name
            assert torch.equal(stored[f"{name}.weight_scale"], scale.reshape(-1)), name
            assert float(stored[f"{name}.input_scale"]) > 0
    assert ("lm_head.weight_q" in stored) is not tie
    # the dequantized output, run whole, gives exactly the logits the block-by-block chain reported
    rebuilt = transformers.LlamaForCausalLM(model.config).eval()
    rebuilt.load_state_dict(dequantized_state_dict(tmp_path / "out"), strict=False)
    with torch.no_grad():
        reference, quantized = model(_ids()).logits, rebuilt(_ids()).logits
    assert sqnr_db(reference, quantized) == pytest.approx(result.logits_sqnr_db, abs=0.05)
    assert result.logits_sqnr_db > 25 and result.top1_agreement > 0.9
    assert len(result.blocks) == 3 and all(b.layers == 7 and b.sqnr_db > 30 for b in result.blocks)
    assert result.parameters == sum(p.numel() for p in model.parameters())
    index = json.loads((tmp_path / "out" / INDEX).read_text())
    assert index["metadata"]["format"] == "torchslim.streaming_int8"
    assert (tmp_path / "out" / "config.json").is_file()


def test_rows_quantized_in_chunks_equal_the_whole_matrix(monkeypatch):
    weight = torch.randn(37, 11, generator=torch.Generator().manual_seed(3))
    g = as_granularity("per_channel", axis=0)
    codes, scale, _ = quantize_tensor(weight, bits=8, symmetric=True, granularity=g)
    monkeypatch.setattr(streaming, "CHUNK_ELEMENTS", 50)  # 4 rows per chunk
    chunked = weight.clone()
    chunk_codes, chunk_scale = streaming.quantize_rows_(chunked, 8)
    assert torch.equal(chunk_codes, codes) and torch.equal(chunk_scale, scale.reshape(-1))
    assert torch.equal(chunked, codes.float() * scale.reshape(-1, 1))  # dequantized in place


def test_each_block_reads_only_its_own_tensors(tmp_path, monkeypatch):
    _, source = _tiny(tmp_path, layers=4)
    reads: list[list[str]] = []
    original = LazyCheckpoint.read_into

    def recording(self, targets):
        reads.append(list(targets))
        return original(self, targets)

    monkeypatch.setattr(LazyCheckpoint, "read_into", recording)
    seen = []
    quantize_checkpoint(source, tmp_path / "out", calibration=_ids(), on_block=lambda b: seen.append(b.name))
    assert seen == [f"model.layers.{i}" for i in range(4)]
    groups = [
        {".".join(n.split(".")[:3]) if n.startswith("model.layers.") else n.split(".")[1] for n in r} for r in reads
    ]
    assert all(len(g) == 1 for g in groups), groups  # one stage's tensors per read
    block_reads = [g.pop() for g in groups if any(x.startswith("model.layers.") for x in g)]
    assert block_reads == seen


def test_static_activations_cost_some_sqnr(tmp_path):
    _, source = _tiny(tmp_path)
    weights_only = quantize_checkpoint(source, tmp_path / "w8", calibration=_ids())
    w8a8 = quantize_checkpoint(source, tmp_path / "w8a8", calibration=_ids(), static_activations=True)
    assert w8a8.logits_sqnr_db < weights_only.logits_sqnr_db
    assert w8a8.logits_sqnr_db > 15


def test_bad_inputs_are_named(tmp_path):
    _, source = _tiny(tmp_path)
    with pytest.raises(ConfigError, match="calibration"):
        quantize_checkpoint(source, tmp_path / "out", calibration=torch.zeros(4, 16))
    with pytest.raises(ConfigError, match="bits"):
        quantize_checkpoint(source, tmp_path / "out", calibration=_ids(), bits=9)
    with pytest.raises(ArtifactError, match="neither"):
        LazyCheckpoint(tmp_path)
    broken = tmp_path / "broken"
    shutil.copytree(source, broken)
    first = sorted(broken.glob("model-0*.safetensors"))[0]
    first.unlink()
    with pytest.raises(ArtifactError, match=first.name):
        LazyCheckpoint(broken)
    bert = tmp_path / "bert"
    transformers.BertConfig(
        hidden_size=32, num_hidden_layers=1, num_attention_heads=2, intermediate_size=64
    ).save_pretrained(bert)
    shutil.copy(source / INDEX, bert / INDEX)
    for shard in source.glob("model-*.safetensors"):
        shutil.copy(shard, bert / shard.name)
    with pytest.raises((ModelError, ValueError)):
        quantize_checkpoint(bert, tmp_path / "out2", calibration=_ids())


PEAK_SCRIPT = """
import json, sys, torch
from pathlib import Path
from torchslim.quantization.streaming import quantize_checkpoint
torch.set_num_threads(1)
ids = torch.randint(0, 256, (2, 16), generator=torch.Generator().manual_seed(1))
def rss(field):
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith(field):
            return int(line.split()[1]) * 1024
quantize_checkpoint(sys.argv[1], sys.argv[3], calibration=ids[:, :4], max_shard_bytes=8 << 20)  # warm imports
Path("/proc/self/clear_refs").write_text("5")
base = rss("VmRSS:")
quantize_checkpoint(sys.argv[1], sys.argv[2], calibration=ids, max_shard_bytes=8 << 20)
print(json.dumps({"base": base, "peak": rss("VmHWM:")}))
"""


@pytest.mark.slow
@pytest.mark.skipif(not Path("/proc/self/clear_refs").exists(), reason="needs Linux /proc peak-RSS reset")
def test_peak_memory_stays_near_one_block(tmp_path):
    """8 blocks of ~3.9 M parameters (15.7 MB each in float32, 127 MB for all): the extra peak RSS of a
    run (measured ~24 MB) stays below three blocks' worth plus one output shard, under half the model."""
    model, source = _tiny(tmp_path, layers=8, hidden=512, wide=4, shard="20MB")
    block_fp32 = 4 * sum(p.numel() for p in model.model.layers[0].parameters())
    whole_fp32 = 4 * sum(p.numel() for p in model.parameters())
    del model
    done = subprocess.run(
        [sys.executable, "-c", PEAK_SCRIPT, str(source), str(tmp_path / "out"), str(tmp_path / "warm")],
        env={**os.environ, "OMP_NUM_THREADS": "1"},
        capture_output=True,
        text=True,
        timeout=600,
        check=False,
    )
    assert done.returncode == 0, done.stderr[-3000:]
    numbers = json.loads(done.stdout.strip().splitlines()[-1])
    extra = numbers["peak"] - numbers["base"]
    assert extra < 3 * block_fp32 + (8 << 20), (extra, block_fp32)
    assert extra < whole_fp32 / 2
