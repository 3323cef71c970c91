"""Architectures from Hugging Face `transformers` configs: small sizes, random weights, no downloads."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import torch
from torch import nn

TEXT = dict(vocab_size=128, hidden_size=32, num_hidden_layers=2, num_attention_heads=4, intermediate_size=64)
LM = dict(vocab_size=128, hidden_size=32, num_hidden_layers=2, num_attention_heads=4, intermediate_size=64)
VIT = dict(
    image_size=32, patch_size=8, hidden_size=32, num_hidden_layers=2, num_attention_heads=4, intermediate_size=64
)


def _text_input(batch: int = 2, length: int = 8, vocab: int = 128) -> dict[str, torch.Tensor]:
    g = torch.Generator().manual_seed(0)
    ids = torch.randint(3, vocab, (batch, length), generator=g)
    return {"input_ids": ids, "attention_mask": torch.ones_like(ids)}


def _image(channels: int = 3, size: int = 32, batch: int = 2) -> torch.Tensor:
    g = torch.Generator().manual_seed(0)
    return torch.randn(batch, channels, size, size, generator=g)


def _hf(cls_name: str, config_name: str, **kwargs: Any) -> nn.Module:
    import transformers

    config = getattr(transformers, config_name)(**kwargs)
    if hasattr(config, "use_cache"):
        config.use_cache = False
    model: nn.Module = getattr(transformers, cls_name)(config)
    return reinit(model).eval()


def reinit(model: nn.Module) -> nn.Module:
    """PyTorch's default (Kaiming-uniform) initialisation for every conv and linear layer: Hugging
    Face's N(0, 0.02) makes some small random models' outputs almost constant across inputs."""
    with torch.no_grad():
        for m in model.modules():
            if isinstance(m, (nn.Linear, nn.modules.conv._ConvNd)):
                m.reset_parameters()
    return model


def _text(cls_name: str, config_name: str, **kw: Any) -> Callable[[], tuple[nn.Module, Any]]:
    return lambda: (_hf(cls_name, config_name, **kw), _text_input())


def _vision(cls_name: str, config_name: str, size: int = 32, **kw: Any) -> Callable[[], tuple[nn.Module, Any]]:
    return lambda: (_hf(cls_name, config_name, **kw), _image(size=size))


def _seq2seq(cls_name: str, config_name: str, **kw: Any) -> Callable[[], tuple[nn.Module, Any]]:
    def build() -> tuple[nn.Module, Any]:
        inputs = _text_input()
        inputs["decoder_input_ids"] = inputs["input_ids"][:, :4]
        return _hf(cls_name, config_name, **kw), inputs

    return build


CNN_STAGES = dict(num_channels=3)

HF_ARCHS: dict[str, tuple[str, Callable[[], tuple[nn.Module, Any]]]] = {
    # encoders
    "bert": ("encoder", _text("BertForSequenceClassification", "BertConfig", **TEXT)),
    "distilbert": (
        "encoder",
        _text(
            "DistilBertForSequenceClassification",
            "DistilBertConfig",
            vocab_size=128,
            dim=32,
            n_layers=2,
            n_heads=4,
            hidden_dim=64,
        ),
    ),
    "roberta": ("encoder", _text("RobertaForSequenceClassification", "RobertaConfig", **TEXT)),
    "albert": (
        "encoder",
        _text("AlbertForSequenceClassification", "AlbertConfig", embedding_size=16, **TEXT),
    ),
    "electra": ("encoder", _text("ElectraForSequenceClassification", "ElectraConfig", embedding_size=16, **TEXT)),
    "deberta-v2": ("encoder", _text("DebertaV2ForSequenceClassification", "DebertaV2Config", **TEXT)),
    # decoders
    "gpt2": ("decoder", _text("GPT2LMHeadModel", "GPT2Config", vocab_size=128, n_embd=32, n_layer=2, n_head=4)),
    "gpt-neo": (
        "decoder",
        _text(
            "GPTNeoForCausalLM",
            "GPTNeoConfig",
            vocab_size=128,
            hidden_size=32,
            num_layers=2,
            num_heads=4,
            attention_types=[[["global", "local"], 1]],
            window_size=8,
        ),
    ),
    "opt": (
        "decoder",
        _text(
            "OPTForCausalLM",
            "OPTConfig",
            vocab_size=128,
            hidden_size=32,
            num_hidden_layers=2,
            num_attention_heads=4,
            ffn_dim=64,
            word_embed_proj_dim=32,
        ),
    ),
    "llama": ("decoder", _text("LlamaForCausalLM", "LlamaConfig", num_key_value_heads=2, **LM)),
    "mistral": ("decoder", _text("MistralForCausalLM", "MistralConfig", num_key_value_heads=2, **LM)),
    "qwen2": ("decoder", _text("Qwen2ForCausalLM", "Qwen2Config", num_key_value_heads=2, **LM)),
    "phi": ("decoder", _text("PhiForCausalLM", "PhiConfig", **LM)),
    # encoder-decoders
    "t5": (
        "encoder-decoder",
        _seq2seq(
            "T5ForConditionalGeneration",
            "T5Config",
            vocab_size=128,
            d_model=32,
            d_kv=8,
            d_ff=64,
            num_layers=2,
            num_heads=4,
        ),
    ),
    "bart": (
        "encoder-decoder",
        _seq2seq(
            "BartForConditionalGeneration",
            "BartConfig",
            vocab_size=128,
            d_model=32,
            encoder_layers=1,
            decoder_layers=1,
            encoder_attention_heads=4,
            decoder_attention_heads=4,
            encoder_ffn_dim=64,
            decoder_ffn_dim=64,
        ),
    ),
    # vision transformers
    "vit": ("vision-transformer", _vision("ViTForImageClassification", "ViTConfig", **VIT)),
    "deit": ("vision-transformer", _vision("DeiTForImageClassification", "DeiTConfig", **VIT)),
    "beit": (
        "vision-transformer",
        _vision("BeitForImageClassification", "BeitConfig", use_relative_position_bias=True, **VIT),
    ),
    "data2vec-vision": (
        "vision-transformer",
        _vision("Data2VecVisionForImageClassification", "Data2VecVisionConfig", **VIT),
    ),
    "dinov2": ("vision-transformer", _vision("Dinov2Model", "Dinov2Config", **VIT)),
    # hierarchical / hybrid vision
    "swin": (
        "hierarchical-vision",
        _vision(
            "SwinForImageClassification",
            "SwinConfig",
            image_size=32,
            patch_size=2,
            embed_dim=16,
            depths=[1, 1],
            num_heads=[2, 4],
            window_size=4,
        ),
    ),
    "convnext": (
        "cnn",
        _vision("ConvNextForImageClassification", "ConvNextConfig", hidden_sizes=[16, 32], depths=[1, 1], num_stages=2),
    ),
    "resnet-hf": (
        "cnn",
        _vision(
            "ResNetForImageClassification",
            "ResNetConfig",
            embedding_size=16,
            hidden_sizes=[16, 32],
            depths=[1, 1],
            layer_type="bottleneck",
        ),
    ),
    "regnet": (
        "cnn",
        _vision(
            "RegNetForImageClassification",
            "RegNetConfig",
            embedding_size=16,
            hidden_sizes=[16, 32],
            depths=[1, 1],
            groups_width=8,
        ),
    ),
    "mobilenet-v2": (
        "cnn",
        _vision("MobileNetV2ForImageClassification", "MobileNetV2Config", depth_multiplier=0.35, image_size=32),
    ),
    "efficientnet-hf": (
        "cnn",
        _vision(
            "EfficientNetForImageClassification",
            "EfficientNetConfig",
            width_coefficient=0.25,
            depth_coefficient=0.25,
            image_size=32,
            hidden_dim=320,
        ),
    ),
    "mobilevit": (
        "hybrid-vision",
        _vision(
            "MobileViTForImageClassification",
            "MobileViTConfig",
            image_size=32,
            hidden_sizes=[16, 24, 32],
            neck_hidden_sizes=[8, 8, 16, 16, 24, 24, 32],
        ),
    ),
    "segformer": (
        "segmentation",
        _vision(
            "SegformerForSemanticSegmentation",
            "SegformerConfig",
            num_encoder_blocks=2,
            depths=[1, 1],
            sr_ratios=[2, 1],
            hidden_sizes=[16, 32],
            num_attention_heads=[1, 2],
            patch_sizes=[7, 3],
            strides=[4, 2],
            decoder_hidden_size=32,
            num_labels=3,
        ),
    ),
    "levit": (
        "hybrid-vision",
        _vision(
            "LevitForImageClassification",
            "LevitConfig",
            size=64,
            image_size=64,
            hidden_sizes=[32, 48, 64],
            num_attention_heads=[2, 3, 4],
            depths=[1, 1, 1],
            key_dim=[8, 8, 8],
        ),
    ),
    "poolformer": (
        "cnn",
        _vision(
            "PoolFormerForImageClassification",
            "PoolFormerConfig",
            hidden_sizes=[16, 32],
            depths=[1, 1],
            num_encoder_blocks=2,
            patch_sizes=[7, 3],
            strides=[4, 2],
            padding=[2, 1],
        ),
    ),
    "cvt": (
        "hybrid-vision",
        _vision("CvtForImageClassification", "CvtConfig", embed_dim=[16, 24, 32], num_heads=[1, 2, 4], depth=[1, 2, 3]),
    ),
    "convnextv2": (
        "cnn",
        _vision(
            "ConvNextV2ForImageClassification", "ConvNextV2Config", hidden_sizes=[16, 32], depths=[1, 1], num_stages=2
        ),
    ),
    "gemma": ("decoder", _text("GemmaForCausalLM", "GemmaConfig", num_key_value_heads=1, head_dim=8, **LM)),
    "mpnet": ("encoder", _text("MPNetForSequenceClassification", "MPNetConfig", **TEXT)),
    "bloom": (
        "decoder",
        _text("BloomForCausalLM", "BloomConfig", vocab_size=128, hidden_size=32, n_layer=2, n_head=4),
    ),
}
