"""EfficientNet-Lite0 and MiniLM-L6: real pretrained weights, offline, with published reference values."""

from __future__ import annotations

import copy
import json

import numpy as np
import pytest
import torch
from torch import nn

from torchslim.core.errors import DataError, ModelError
from torchslim.models import (
    SAMPLE_PHOTO_LABELS,
    SentenceEncoder,
    TextClassifier,
    build_from_spec,
    build_model,
    efficientnet_preprocess,
    example_input,
    get_model_spec,
    sample_photos,
)


def n_params(model: nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())


def shapes(model: nn.Module) -> dict[str, tuple[int, ...]]:
    return {k: tuple(v.shape) for k, v in model.state_dict().items()}


# ---------------------------------------------------------------- EfficientNet-Lite0


def test_effnet_params_and_forward(effnet):
    assert n_params(effnet) == 4_652_008
    assert not effnet.training
    assert isinstance(effnet._fc, nn.Linear) and effnet._fc.out_features == 1000
    with torch.no_grad():
        assert effnet(example_input(effnet, batch_size=2)).shape == (2, 1000)


def test_effnet_recognises_sample_photos(effnet):
    photos = sample_photos()
    names = list(SAMPLE_PHOTO_LABELS)
    batch = torch.stack([efficientnet_preprocess(photos[n]) for n in names])
    with torch.no_grad():
        probs = effnet(batch).softmax(-1)
    top1 = probs.argmax(-1).tolist()
    assert top1 == [SAMPLE_PHOTO_LABELS[n][0] for n in names]
    assert SAMPLE_PHOTO_LABELS["coffee"][0] == 967  # espresso
    assert probs[names.index("coffee"), 967] > 0.8


def test_effnet_loads_weights_only(monkeypatch):
    calls = []
    real_load = torch.load

    def spy(*args, **kwargs):
        calls.append(kwargs.get("weights_only"))
        return real_load(*args, **kwargs)

    monkeypatch.setattr(torch, "load", spy)
    model = build_model("efficientnet-lite0", num_classes=10)
    assert calls == [True]
    assert model._fc.weight.shape == (10, 1280)
    assert n_params(model) == 4_652_008 - 1280 * 990 - 990


def test_effnet_new_head_keeps_the_body(effnet):
    model = build_model("efficientnet-lite0", num_classes=10)
    torch.testing.assert_close(model._conv_stem.weight, effnet._conv_stem.weight)
    torch.testing.assert_close(model._bn1.running_mean, effnet._bn1.running_mean)
    assert get_model_spec(model) == {"name": "efficientnet-lite0", "kwargs": {"num_classes": 10}}


def test_effnet_without_pretrained_reads_no_file(monkeypatch, effnet):
    def refuse(*args, **kwargs):
        raise AssertionError("pretrained=False must not read the weights file")

    monkeypatch.setattr(torch, "load", refuse)
    rebuilt = build_from_spec(json.loads(json.dumps(get_model_spec(effnet))))
    assert shapes(rebuilt) == shapes(effnet)
    assert not torch.equal(rebuilt._conv_stem.weight, effnet._conv_stem.weight)
    rebuilt.load_state_dict(effnet.state_dict())
    x = example_input("efficientnet-lite0")
    with torch.no_grad():
        torch.testing.assert_close(rebuilt(x), effnet(x))


def test_efficientnet_preprocess():
    photos = sample_photos()
    assert list(photos) == ["coffee", "chelsea", "camera", "astronaut", "rocket"]
    for name, array in photos.items():
        assert array.dtype == np.uint8 and array.ndim == 3 and array.shape[-1] == 3, name
    assert photos["coffee"].shape == (400, 600, 3)
    x = efficientnet_preprocess(photos["coffee"])
    assert x.shape == (3, 224, 224) and x.dtype == torch.float32
    assert -127 / 128 - 1e-4 <= x.min().item() and x.max().item() <= 1.0 + 1e-4
    flat = efficientnet_preprocess(np.full((10, 20, 3), 255, dtype=np.uint8), size=32)
    torch.testing.assert_close(flat, torch.full((3, 32, 32), 1.0))
    gray = efficientnet_preprocess(photos["camera"][..., 0])
    torch.testing.assert_close(gray, efficientnet_preprocess(photos["camera"]))
    with pytest.raises(DataError, match="uint8"):
        efficientnet_preprocess(photos["coffee"].astype(np.float32))
    with pytest.raises(DataError, match="shape"):
        efficientnet_preprocess(np.zeros((4, 4, 2), dtype=np.uint8))


# ---------------------------------------------------------------- MiniLM-L6


def test_minilm_params_and_structure(minilm):
    assert isinstance(minilm, SentenceEncoder)
    assert n_params(minilm) == 22_713_216
    assert sum(isinstance(m, nn.Linear) for m in minilm.modules()) == 37
    assert minilm.hidden_size == 384
    assert not minilm.training
    # The tokenizer is re-created from a path: no submodule, nothing in the state dict.
    assert "tokenizer" not in dict(minilm.named_children())
    assert all(k.startswith("transformer.") for k in minilm.state_dict())


def test_minilm_published_cosine(minilm):
    batch = minilm.tokenize(["A man is eating food.", "A man is eating a piece of bread."])
    with torch.no_grad():
        emb = minilm(**batch)
    assert emb.shape == (2, 384)
    torch.testing.assert_close(emb.norm(dim=-1), torch.ones(2))
    cosine = torch.nn.functional.cosine_similarity(emb[0:1], emb[1:2]).item()
    assert cosine == pytest.approx(0.7553, abs=1e-3)
    # Padding does not change the embedding (masked mean pooling).
    alone = minilm.tokenize("A man is eating food.", padding="longest")
    assert alone["input_ids"].shape[1] < 128
    with torch.no_grad():
        torch.testing.assert_close(minilm(**alone)[0], emb[0], atol=1e-5, rtol=1e-4)


def test_minilm_example_input(minilm):
    x = example_input(minilm, batch_size=2)
    assert set(x) == {"input_ids", "attention_mask"}
    assert x["input_ids"].shape == (2, 128) and x["input_ids"].dtype == torch.int64
    assert 0 < int(x["attention_mask"].sum()) < 2 * 128  # padded to 128
    by_name = example_input("minilm-l6", batch_size=2)
    assert all(torch.equal(x[k], by_name[k]) for k in x)
    with torch.no_grad():
        assert minilm(**x).shape == (2, 384)


def test_minilm_classifier_and_spec_round_trip(minilm):
    clf = build_model("minilm-l6", num_classes=3, pretrained=False)
    assert isinstance(clf, TextClassifier)
    assert n_params(clf) == 22_713_216 + 384 * 3 + 3
    assert set(clf.state_dict()) == set(minilm.state_dict()) | {"classifier.weight", "classifier.bias"}
    spec = get_model_spec(clf)
    assert spec == {"name": "minilm-l6", "kwargs": {"num_classes": 3}}
    with torch.no_grad():
        logits = clf(**clf.tokenize(["good", "bad"]))
    assert logits.shape == (2, 3)
    # The encoder's pretrained body loads into the classifier (same keys under `transformer.`).
    missing = clf.load_state_dict(minilm.state_dict(), strict=False).missing_keys
    assert sorted(missing) == ["classifier.bias", "classifier.weight"]
    twin = copy.deepcopy(clf)
    assert get_model_spec(twin) == spec and twin.tokenizer_path == clf.tokenizer_path


def test_minilm_encoder_spec_rebuilds_without_weights(minilm):
    spec = get_model_spec(minilm)
    assert spec == {"name": "minilm-l6", "kwargs": {"num_classes": None}}
    rebuilt = build_from_spec(json.loads(json.dumps(spec)))
    assert isinstance(rebuilt, SentenceEncoder)
    assert shapes(rebuilt) == shapes(minilm)
    word = "transformer.embeddings.word_embeddings.weight"
    assert not torch.equal(rebuilt.state_dict()[word], minilm.state_dict()[word])
    rebuilt.load_state_dict(minilm.state_dict())
    x = example_input(minilm, batch_size=1)
    with torch.no_grad():
        torch.testing.assert_close(rebuilt(**x), minilm(**x))


def test_tokenize_rejects_non_text(minilm):
    with pytest.raises(ModelError, match="strings"):
        minilm.tokenize([1, 2])
