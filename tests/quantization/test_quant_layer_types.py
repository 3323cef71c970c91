"""``activations.mode: auto`` decides by layer type, not by model class (issue 15)."""

from __future__ import annotations

import pytest
import torch
from quant_toys import SelfAttention
from torch import nn

from torchslim.core import Context, DataSplits
from torchslim.quantization import Quantize, quantize_handler
from torchslim.quantization.config import transformer_like


def _tiny_hf_resnet() -> nn.Module:
    transformers = pytest.importorskip("transformers")
    config = transformers.ResNetConfig(embedding_size=16, hidden_sizes=[16, 32], depths=[1, 1], layer_type="bottleneck")
    torch.manual_seed(0)
    model: nn.Module = transformers.ResNetForImageClassification(config)
    return model.eval()


def _context(example: torch.Tensor, *, calibration: bool = True) -> Context:
    data = DataSplits(calibration=[(example, torch.zeros(len(example)))], name="t") if calibration else None
    return Context(data=data, example_input=example)


def test_hf_cnn_gets_static_int8_and_integer_convolutions(tmp_path):
    from torchslim.deploy import export_onnx
    from torchslim.deploy.onnxruntime.session import optimized_op_counts

    model = _tiny_hf_resnet()
    assert not transformer_like(model)  # a PreTrainedModel, but a CNN
    x = torch.randn(2, 3, 32, 32, generator=torch.Generator().manual_seed(0))
    out = quantize_handler(model, Quantize(), targets=None, context=_context(x))
    assert out.info["activation_mode"] == "static"
    quantized = [m for m in out.model.modules() if isinstance(m, (nn.Conv2d, nn.Linear))]
    assert quantized and all(m.act_spec is not None and m.act_spec.static for m in quantized)
    path = tmp_path / "resnet.onnx"
    export_onnx(out.model, path, x)
    counts = optimized_op_counts(path)
    # measured: 4 of 8 convolutions are QLinearConv (the 4 feeding residual Adds stay float: torch.fx
    # cannot trace the HF model, so their outputs get no int8 point), the head is QGemm
    assert counts["QLinearConv"] >= 4
    assert counts["QGemm"] == 1


class _Hybrid(nn.Module):
    """A conv stem followed by an attention block: convs static, Linear layers dynamic."""

    def __init__(self) -> None:
        super().__init__()
        self.stem = nn.Conv2d(3, 16, 3, padding=1)
        self.attn = SelfAttention(16)
        self.head = nn.Linear(16, 4)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        tokens = torch.relu(self.stem(x)).flatten(2).transpose(1, 2)
        return self.head(self.attn(tokens).mean(1))


def _modes(model: nn.Module) -> dict[str, str]:
    return {n: m.act_spec.mode for n, m in model.named_modules() if getattr(m, "act_spec", None) is not None}


def test_hybrid_model_static_convs_dynamic_linears():
    torch.manual_seed(0)
    model = _Hybrid().eval()
    x = torch.randn(4, 3, 8, 8)
    assert transformer_like(model)
    out = quantize_handler(model, Quantize(), targets=None, context=_context(x))
    modes = _modes(out.model)
    assert modes["stem"] == "static"
    assert modes["head"] == "dynamic" and all(v == "dynamic" for k, v in modes.items() if k.startswith("attn."))
    assert out.info["activation_mode"] == "dynamic" and out.info["activation_modes"]["static"] == 1
    # without calibration data the convolution stays dynamic, and the step says why
    bare = quantize_handler(model, Quantize(), targets=None, context=_context(x, calibration=False))
    assert _modes(bare.model)["stem"] == "dynamic"
    assert any("needs calibration data" in note for note in bare.info["notes"])


def _tiny_gpt2() -> tuple[nn.Module, dict[str, torch.Tensor]]:
    transformers = pytest.importorskip("transformers")
    config = transformers.GPT2Config(vocab_size=128, n_embd=32, n_layer=2, n_head=4, use_cache=False)
    torch.manual_seed(0)
    model: nn.Module = transformers.GPT2LMHeadModel(config).eval()
    ids = torch.randint(3, 128, (2, 8), generator=torch.Generator().manual_seed(0))
    return model, {"input_ids": ids, "attention_mask": torch.ones_like(ids)}


def test_gpt2_conv1d_quantized_as_linear_and_tie_kept(tmp_path):
    from torchslim.deploy import export_onnx
    from torchslim.deploy.onnxruntime.session import optimized_op_counts
    from torchslim.io import load, save
    from torchslim.measure.params import count_parameters
    from torchslim.measure.size import state_dict_bytes

    model, x = _tiny_gpt2()
    out = quantize_handler(model, Quantize(), targets=None, context=_context(x))
    conv1d = [n for n, m in model.named_modules() if type(m).__name__ == "Conv1D"]
    assert len(conv1d) == 8 and out.info["conv1d_as_linear"] == conv1d
    modes = _modes(out.model)
    assert all(modes[n] == "dynamic" for n in conv1d)
    # the tied embedding / LM head: one float copy, reported, parameters not doubled
    assert "tied" in out.skipped["lm_head"] and "tied" in out.skipped["transformer.wte"]
    assert out.model.lm_head.weight is out.model.transformer.wte.weight
    assert count_parameters(out.model) == count_parameters(model)
    assert state_dict_bytes(out.model) < state_dict_bytes(model) / 2
    with torch.no_grad():
        a, b = model(**x).logits, out.model(**x).logits
    assert torch.nn.functional.cosine_similarity(a.flatten(), b.flatten(), 0) > 0.999
    path = tmp_path / "gpt2.onnx"
    export_onnx(out.model, path, x)
    assert optimized_op_counts(path)["DynamicQuantizeMatMul"] == 8  # measured: all 8 Conv1D as int8 MatMul
    save(out.model, tmp_path / "a")
    again = load(tmp_path / "a", model=_tiny_gpt2()[0])
    with torch.no_grad():
        assert torch.equal(again(**x).logits, b)


class ScaledEmbedding(nn.Embedding):
    """An embedding with its own forward (as Hugging Face's scaled word / learned-position ones)."""

    def forward(self, ids: torch.Tensor) -> torch.Tensor:
        return super().forward(ids) * 3.0


class TokenModel(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.embed = ScaledEmbedding(50, 16)
        self.head = nn.Linear(16, 4)

    def forward(self, ids: torch.Tensor) -> torch.Tensor:
        return self.head(self.embed(ids).mean(dim=1))


def test_an_embedding_with_its_own_forward_keeps_it_in_the_onnx_export(tmp_path):
    from torchslim.deploy import check_parity, export_onnx

    torch.manual_seed(0)
    model = TokenModel().eval()
    ids = torch.randint(0, 50, (4, 7))
    out = quantize_handler(model, Quantize(activations=None), targets=None, context=Context())
    quantized = out.model.eval()
    assert type(quantized.embed).__mro__[1:].count(ScaledEmbedding) == 1  # still a ScaledEmbedding
    export_onnx(quantized, tmp_path / "m.onnx", ids)
    parity = check_parity(quantized, tmp_path / "m.onnx", ids)
    assert parity.ok, parity.to_dict()  # a plain int8 gather would have dropped the x3
