"""The architecture zoo as tests: 50% structured pruning on every architecture is OK (measured MAC
reduction, output shapes unchanged, the caller's model untouched) or a typed refusal that names what
to exclude; never a crash, never a hang. Eight representative architectures run in the fast suite;
the rest are marked ``zoo`` and ``slow`` (``pytest -m zoo tests/zoo``)."""

from __future__ import annotations

from pathlib import Path

import pytest
from tests.zoo.harness import check_nonconstant, prune, run_cell, run_model
from tests.zoo.registry import ARCHS, FAST

FAST_HIDDEN = ("bert", "vit")
"""Architectures whose hidden-size pruning runs in the fast suite (the rest: ``zoo`` + ``slow``)."""

SLOW = (pytest.mark.zoo, pytest.mark.slow)
PARAMS = [
    pytest.param(name, hidden, id=f"{name}-{'hidden-too' if hidden else 'channels-heads'}", marks=marks)
    for name in ARCHS
    for hidden, marks in (
        (False, () if name in FAST else SLOW),
        (True, () if name in FAST_HIDDEN else SLOW),
    )
]


def test_zoo_is_large_and_covers_the_families() -> None:
    assert len(ARCHS) >= 40
    families = {a.family for a in ARCHS.values()}
    for family in ("cnn", "encoder", "decoder", "encoder-decoder", "vision-transformer", "hand-made", "segmentation"):
        assert family in families
    assert set(FAST) <= set(ARCHS)


@pytest.mark.parametrize(("name", "hidden"), PARAMS)
def test_prune50_is_ok_or_a_typed_refusal(name: str, hidden: bool) -> None:
    model, example = ARCHS[name].build()
    check_nonconstant(run_model(model, example))
    cell = run_cell(lambda: prune(model, example, hidden=hidden)[1], limit=120)
    assert cell.status in ("ok", "refused"), f"{name}: {cell.status}: {cell.detail}"
    if cell.status == "ok":
        assert 0 < cell.facts["mac_ratio"] < 1.0
    else:  # a typed refusal naming the layer or coupling (never a name the user did not type)
        assert "'" in cell.detail and "Did you mean" not in cell.detail, cell.detail
        assert "exclude" in cell.detail or "nothing was changed" in cell.detail, cell.detail


INT8_FAST = ("resnet-hf", "fmnist-resnet", "mobilenet-v2")
"""Architectures whose int8 kernel count runs in the fast suite: one traced by ``torch.fx``, two
found through the autograd graph (Hugging Face models fx cannot trace; TF-style padding)."""
CONV_ARCHS = [
    pytest.param(name, marks=() if name in INT8_FAST else SLOW)
    for name, arch in ARCHS.items()
    if arch.family in ("cnn", "hybrid-vision", "segmentation", "hand-made", "torchslim built-in")
]


@pytest.mark.parametrize("name", CONV_ARCHS)
def test_int8_convolutions_run_as_integer_kernels(name: str) -> None:
    """Static int8 by layer type: >= 90% of the convolutions torchslim quantized are QLinearConv /
    ConvInteger in onnxruntime's optimized graph, and the export matches PyTorch (parity)."""
    import copy

    from tests.zoo.harness import export, quantize
    from tests.zoo.run import integer_share

    model, example = ARCHS[name].build()
    quantized, facts = quantize(copy.deepcopy(model), example)
    cell = run_cell(lambda: {**export(quantized, example, kernels=True), **facts}, limit=120)
    assert cell.status == "ok", f"{name}: {cell.status}: {cell.detail}"
    share = integer_share(cell)
    if share is None:
        pytest.skip(f"{name} has no quantized convolution")
    assert share >= 0.9, f"{name}: {cell.facts['integer_convs']} integer of {cell.facts['conv_layers']} convolutions"


EXECUTORCH_FAST = ("fmnist-resnet",)
"""The one architecture whose ExecuTorch int8 export runs in the fast suite (lowering takes seconds
to tens of seconds a model); the other conv families run under ``-m zoo``."""


@pytest.mark.parametrize(
    "name", [pytest.param(p.values[0], marks=() if p.values[0] in EXECUTORCH_FAST else SLOW) for p in CONV_ARCHS]
)
def test_int8_exports_to_executorch_with_parity(name: str, tmp_path: Path) -> None:
    """Static int8: the ``pt2e`` form lowers to an ExecuTorch program whose output matches PyTorch's,
    with no quantize / dequantize left to portable kernels (every int8 op is an XNNPACK kernel), or
    the export is a typed refusal naming why."""
    import copy

    pytest.importorskip("executorch")
    from tests.zoo.harness import quantize

    from torchslim.deploy import get_backend

    model, example = ARCHS[name].build()
    quantized, _ = quantize(copy.deepcopy(model), example)
    backend = get_backend("executorch")
    cell = run_cell(lambda: backend.export(quantized, tmp_path / "m.pte", example).to_dict(), limit=180)
    assert cell.status in ("ok", "refused"), f"{name}: {cell.status}: {cell.detail}"
    if cell.status == "refused":
        pytest.skip(f"{name}: {cell.detail}")
    assert not any("quantize" in op for op in cell.facts["portable_ops"]), cell.facts["portable_ops"]
    parity = backend.check_parity(quantized, tmp_path / "m.pte", example)
    assert parity.ok, f"{name}: {parity}"
