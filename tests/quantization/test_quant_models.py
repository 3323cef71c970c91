"""Quantization of the real pretrained models (slow: deselected by ``make test``)."""

from __future__ import annotations

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from torchslim.core import Context, DataSplits
from torchslim.quantization import Quantize, WeightQuant, quantize_handler

pytestmark = pytest.mark.slow

PAIR = ["A man is eating food.", "A man is eating a piece of bread."]


def embed(model, texts):
    with torch.no_grad():
        return torch.cat(
            [model(**model.tokenize(texts[i : i + 16], padding="longest")) for i in range(0, len(texts), 16)]
        )


def test_minilm_int8_keeps_embeddings(tmp_path):
    from torchslim.data import load_splits
    from torchslim.deploy.onnxruntime import export_onnx, integer_op_summary, run_onnx
    from torchslim.models import build_model

    model = build_model("minilm-l6")
    splits = load_splits("tweets", batch_size=16, eval_samples=200, seed=0)
    texts = [t for batch, _ in splits.test for t in batch][:64]
    out = quantize_handler(
        model,
        Quantize(weights=WeightQuant(bits=8), calibration_samples=128),
        targets=None,
        context=Context(data=splits),
    )
    assert out.info["activation_mode"] == "dynamic"
    rows = {r["layer"]: r for r in out.layers}
    assert len(rows) == 40  # 37 Linear + 3 Embedding (weights only)
    assert rows["transformer.embeddings.word_embeddings"]["activations"] == "float"
    assert "top1_agreement" not in out.info  # unit-norm embeddings: argmax agreement means nothing
    q = out.model
    cos = F.cosine_similarity(embed(model, texts), embed(q, texts))
    assert float(cos.mean()) >= 0.99
    pair = embed(q, PAIR)
    assert float(F.cosine_similarity(pair[0:1], pair[1:2])) == pytest.approx(0.7553, abs=0.005)
    enc = model.tokenize(PAIR, padding="longest")
    export_onnx(q, tmp_path / "m.onnx", enc)
    ops = integer_op_summary(tmp_path / "m.onnx")["integer_ops"]
    # query / key / value share one DynamicQuantizeLinear of their input: MatMulIntegerToFloat
    assert sum(ops.get(k, 0) for k in ("MatMulInteger", "DynamicQuantizeMatMul", "MatMulIntegerToFloat")) >= 36
    got = torch.from_numpy(run_onnx(tmp_path / "m.onnx", enc))
    assert float(F.cosine_similarity(got[0:1], got[1:2])) == pytest.approx(0.7553, abs=0.006)


def test_efficientnet_per_channel_beats_per_tensor():
    from torchslim.models import build_model, efficientnet_preprocess, sample_photos

    model = build_model("efficientnet-lite0")
    photos = list(sample_photos().values())
    rng = np.random.default_rng(0)

    def crops(n):
        out = []
        for i in range(n):
            p = photos[i % len(photos)]
            h, w = p.shape[:2]
            s = rng.uniform(0.4, 1.0)
            ch, cw = int(h * s), int(w * s)
            y, x = rng.integers(0, h - ch + 1), rng.integers(0, w - cw + 1)
            out.append(efficientnet_preprocess(np.ascontiguousarray(p[y : y + ch, x : x + cw])))
        return torch.stack(out)

    cal, test = crops(16), crops(16)
    with torch.no_grad():
        ref = model(test).argmax(1)
    ctx = Context(data=DataSplits(calibration=[(cal, None)]))
    agree = {}
    for g in ("per_tensor", "per_channel"):
        q = quantize_handler(model, Quantize(weights=WeightQuant(granularity=g)), targets=None, context=ctx).model
        with torch.no_grad():
            agree[g] = float((q(test).argmax(1) == ref).float().mean())
    assert agree["per_channel"] >= 0.8
    assert agree["per_channel"] >= agree["per_tensor"]
