"""Export + parity of tiny Hugging Face models (random weights, no downloads): decoders with a
key/value cache and keyword-only extras, encoder-decoders, and a model returning a ``ModelOutput``."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import torch
from torch import nn

from torchslim.core.errors import ModelError
from torchslim.deploy import check_parity, export_onnx
from torchslim.deploy.onnxruntime.export import DECODER_INPUTS_NOTE, NO_CACHE_NOTE

transformers = pytest.importorskip("transformers")
pytest.importorskip("onnxruntime")


def _hf(cls_name: str, config_name: str, **kwargs: Any) -> Any:
    torch.manual_seed(0)
    config = getattr(transformers, config_name)(**kwargs)
    model = getattr(transformers, cls_name)(config)
    with torch.no_grad():  # Kaiming init: HF's N(0, 0.02) makes tiny random outputs almost constant
        for m in model.modules():
            if isinstance(m, nn.Linear):
                m.reset_parameters()
    return model.eval()


def _text(batch: int = 2, length: int = 8) -> dict[str, torch.Tensor]:
    ids = torch.randint(3, 128, (batch, length), generator=torch.Generator().manual_seed(0))
    return {"input_ids": ids, "attention_mask": torch.ones_like(ids)}


LM = dict(vocab_size=128, hidden_size=32, num_hidden_layers=1, num_attention_heads=4, intermediate_size=64)

DECODERS = {
    # forward(input_ids, cache / past_key_values, attention_mask, ...): keyword inputs with a gap
    "gpt2": ("GPT2LMHeadModel", "GPT2Config", dict(vocab_size=128, n_embd=32, n_layer=1, n_head=4)),
    # forward(..., logits_to_keep=0): a parameter the example does not give keeps its default
    "llama": ("LlamaForCausalLM", "LlamaConfig", dict(num_key_value_heads=2, **LM)),
}


@pytest.mark.parametrize("name", sorted(DECODERS))
def test_decoder_exports_by_name_without_cache(name: str, tmp_path: Path) -> None:
    cls_name, config_name, kw = DECODERS[name]
    model, example = _hf(cls_name, config_name, **kw), _text()
    assert model.config.use_cache is True  # the export turns it off, not the test
    export = export_onnx(model, tmp_path / "m.onnx", example)
    assert export.input_names == ["input_ids", "attention_mask"]
    assert NO_CACHE_NOTE in export.notes
    assert model.config.use_cache is True  # passed as an argument while tracing; the config is unchanged
    parity = check_parity(model, export.path, example)
    assert parity.ok, parity
    longer = _text(batch=1, length=5)  # dynamic batch and sequence, attention_mask a real input
    longer["attention_mask"][0, -1] = 0
    assert check_parity(model, export.path, longer).ok


def test_encoder_decoder_with_decoder_input_ids(tmp_path: Path) -> None:
    kw = dict(vocab_size=128, d_model=32, d_kv=8, d_ff=64, num_layers=1, num_heads=4)
    model = _hf("T5ForConditionalGeneration", "T5Config", **kw)
    example = _text()
    example["decoder_input_ids"] = example["input_ids"][:, :4]
    export = export_onnx(model, tmp_path / "t5.onnx", example)
    assert export.input_names == ["input_ids", "attention_mask", "decoder_input_ids"]
    parity = check_parity(model, export.path, example)
    assert parity.ok, parity


def test_model_output_without_logits_compares_first_tensor(tmp_path: Path) -> None:
    kw = dict(image_size=32, patch_size=8, hidden_size=32, num_hidden_layers=1, num_attention_heads=4)
    model = _hf("Dinov2Model", "Dinov2Config", intermediate_size=64, **kw)
    image = torch.randn(2, 3, 32, 32, generator=torch.Generator().manual_seed(0))
    export = export_onnx(model, tmp_path / "dino.onnx", image)
    parity = check_parity(model, export.path, image)
    assert parity.ok, parity
    with torch.no_grad():
        first = model(image).last_hidden_state
    assert parity.max_abs_diff < 1e-3 * float(first.abs().max())


class _NoTensor(nn.Module):
    def forward(self, x: torch.Tensor) -> dict[str, str]:
        return {"label": "none"}


def test_output_without_a_tensor_is_a_typed_refusal(tmp_path: Path) -> None:
    with pytest.raises(ModelError, match="_NoTensor"):
        check_parity(_NoTensor(), tmp_path / "absent.onnx", torch.zeros(1, 2))


def test_encoder_decoder_builds_decoder_input_ids(tmp_path: Path) -> None:
    kw = dict(vocab_size=128, d_model=32, encoder_layers=1, decoder_layers=1, encoder_ffn_dim=64, decoder_ffn_dim=64)
    model = _hf(
        "BartForConditionalGeneration", "BartConfig", encoder_attention_heads=4, decoder_attention_heads=4, **kw
    )
    example = _text()
    export = export_onnx(model, tmp_path / "bart.onnx", example)
    assert export.input_names == ["input_ids", "attention_mask", "decoder_input_ids"]
    assert DECODER_INPUTS_NOTE in export.notes
    assert "decoder_input_ids" not in example  # the caller's mapping is not changed
    parity = check_parity(model, export.path, example)
    assert parity.ok, parity
