"""select_backend: every available backend timed on the user's batch and threads, the fastest kept."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch
from torch import nn

from torchslim.core.errors import ConfigError, ModelError
from torchslim.deploy import OutputParity, Selection, available_backends, register_backend, select_backend
from torchslim.deploy.select import markdown_table
from torchslim.measure.latency import LatencyStats


def mlp() -> nn.Module:
    torch.manual_seed(0)
    return nn.Sequential(nn.Linear(16, 32), nn.ReLU(), nn.Linear(32, 4)).eval()


class Unavailable:
    name = "unavailable-runtime-for-test"
    suffix = ".none"

    def available(self) -> bool:
        return False

    def unavailable_reason(self) -> str:
        return "the test runtime is never installed"

    def export(self, model: Any, path: Any, example_input: Any) -> Any:
        raise AssertionError("an unavailable backend is never exported to")

    run = check_parity = time = export


STUBS_ON = {"on": False}
"""The stub backends stay registered for the whole session (the registry has no removal): they are
available only inside this file's tests, so no later test's automatic selection ever meets them."""


@pytest.fixture(autouse=True)
def _stubs_available() -> Any:
    STUBS_ON["on"] = True
    yield
    STUBS_ON["on"] = False


class FixedSpeed:
    """A backend whose file says how long it takes: the baseline 1 ms, the model 2 ms (a slowdown)."""

    name = "fixed-speed-runtime-for-test"
    suffix = ".txt"

    def available(self) -> bool:
        return STUBS_ON["on"]

    def export(self, model: nn.Module, path: str | Path, example_input: Any) -> Any:
        ms = 1.0 if getattr(model, "is_baseline", False) else 2.0
        Path(path).write_text(str(ms))
        return OutputParity(0.0, None, 0.0, False, True)  # anything with to_dict()

    def run(self, path: str | Path, inputs: Any, *, threads: int | None = None) -> np.ndarray:
        return np.zeros(1)

    def check_parity(self, model: nn.Module, path: str | Path, inputs: Any) -> OutputParity:
        return OutputParity(0.0, None, 1e-5, False, True)

    def time(self, path: str | Path, example_input: Any, **kw: Any) -> LatencyStats:
        ms = float(Path(path).read_text())
        return LatencyStats(ms, ms, ms, ms, kw["repeats"], 1, kw["threads"], self.name)


class BadParity(FixedSpeed):
    name = "bad-parity-runtime-for-test"

    def check_parity(self, model: nn.Module, path: str | Path, inputs: Any) -> OutputParity:
        return OutputParity(1.0, None, 1e-5, False, False)


class DriftingParity(FixedSpeed):
    """A compressed model's output 3 steps off the simulation, still near it (rounding that compounds)."""

    name = "drifting-parity-runtime-for-test"

    def check_parity(self, model: nn.Module, path: str | Path, inputs: Any) -> OutputParity:
        return OutputParity(0.3, 0.1, 0.2, True, False, 3.0, cosine=0.9999, top1_agreement=1.0)


class CloseParity(FixedSpeed):
    """A compressed model's output 5 steps off at its worst, close in every other way (cosine 0.9995,
    no offset or scale change, the same top-1): what compounding rounding looks like."""

    name = "close-parity-runtime-for-test"

    def check_parity(self, model: nn.Module, path: str | Path, inputs: Any) -> OutputParity:
        return OutputParity(
            0.5,
            0.1,
            0.2,
            True,
            False,
            5.0,
            cosine=0.9995,
            top1_agreement=1.0,
            mean_diff_in_steps=0.02,
            norm_change=0.01,
        )


register_backend(Unavailable())
register_backend(FixedSpeed())
register_backend(BadParity())
register_backend(DriftingParity())
register_backend(CloseParity())


def test_select_times_every_available_backend_and_keeps_the_fastest(tmp_path: Path) -> None:
    real = [n for n in ("onnxruntime", "openvino") if n in available_backends()]
    candidates = [*real, "unavailable-runtime-for-test"]
    sel = select_backend(
        mlp(), torch.randn(1, 16), batch_size=4, threads=1, candidates=candidates, rounds=2, warmup=1, repeats=3
    )
    assert isinstance(sel, Selection) and sel.batch_size == 4 and sel.threads == 1
    assert [f.name for f in sel.backends] == candidates
    for name in real:
        facts = sel.facts(name)
        assert facts.usable and facts.parity_ok and facts.latency is not None
        assert facts.latency.repeats == 2 and facts.latency.batch_size == 4 and facts.latency.runtime == name
    missing = sel.facts("unavailable-runtime-for-test")
    assert not missing.available and missing.reason == "the test runtime is never installed"
    assert sel.best in real
    fastest = min(real, key=lambda n: sel.facts(n).latency.median_ms)  # type: ignore[union-attr]  # usable: timed
    assert sel.best == fastest
    if len(real) > 1:
        assert sel.margin is not None and sel.margin >= 1.0
    report = json.loads(json.dumps(sel.to_dict()))
    assert report["best"] == sel.best and report["backends"][0]["latency"]["median_ms"] > 0
    table = markdown_table({"mlp": sel})
    assert "| mlp | 4 | 1 |" in table and sel.best in table.splitlines()[-1]
    with pytest.raises(ConfigError, match="was not a candidate"):
        sel.facts("tensorrt")


def test_slower_than_float_on_every_backend_warns_or_raises_with_strict() -> None:
    model, baseline = mlp(), mlp()
    baseline.is_baseline = True  # type: ignore[assignment]  # read by the FixedSpeed test backend
    kw: dict[str, Any] = {"batch_size": 1, "threads": 1, "candidates": ["fixed-speed-runtime-for-test"], "rounds": 2}
    with pytest.warns(RuntimeWarning, match="slower than its float baseline on every backend"):
        sel = select_backend(model, torch.randn(1, 16), baseline=baseline, **kw)
    facts = sel.facts("fixed-speed-runtime-for-test")
    assert facts.speedup_over_baseline == pytest.approx(0.5) and sel.warnings
    with pytest.raises(ModelError, match="strict=True"):
        select_backend(model, torch.randn(1, 16), baseline=baseline, strict=True, **kw)


def test_bad_arguments_are_config_errors() -> None:
    with pytest.raises(ConfigError, match="batch_size"):
        select_backend(mlp(), torch.randn(1, 16), batch_size=0, threads=1)
    with pytest.raises(ConfigError, match="threads"):
        select_backend(mlp(), torch.randn(1, 16), batch_size=1, threads=0)


def test_a_backend_failing_parity_is_never_picked_unless_parity_is_not_required() -> None:
    kw: dict[str, Any] = {"batch_size": 1, "threads": 1, "candidates": ["bad-parity-runtime-for-test"], "rounds": 1}
    sel = select_backend(mlp(), torch.randn(1, 16), **kw)
    facts = sel.facts("bad-parity-runtime-for-test")
    assert sel.best is None and facts.latency is None and facts.parity_ok is False
    assert facts.reason is not None and "parity check failed" in facts.reason
    assert any("no backend ran with parity" in w for w in sel.warnings)
    measured = select_backend(mlp(), torch.randn(1, 16), require_parity=False, **kw)
    facts = measured.facts("bad-parity-runtime-for-test")
    assert measured.best == "bad-parity-runtime-for-test" and facts.latency is not None and not facts.usable
    assert "(parity failed)" in markdown_table({"mlp": measured})


def test_the_stub_backends_are_unavailable_outside_these_tests() -> None:
    STUBS_ON["on"] = False
    assert not {
        "fixed-speed-runtime-for-test",
        "bad-parity-runtime-for-test",
        "drifting-parity-runtime-for-test",
        "close-parity-runtime-for-test",
    } & set(available_backends())


def test_compare_outputs_says_how_close_a_failing_output_still_is() -> None:
    from torchslim.deploy import compare_outputs

    ref = np.array([[0.0, 1.0, 2.0, 3.0], [3.0, 2.0, 1.0, 0.0]], dtype=np.float32)
    drifted = ref + np.float32(3.0 * 3.0 / 255)  # 3 steps everywhere: the same ranking, the same direction
    near = compare_outputs(ref, drifted, quantized=True)
    assert not near.ok and near.max_diff_in_steps == pytest.approx(3.0, rel=1e-4)
    assert near.top1_agreement == 1.0 and near.cosine is not None and near.cosine > 0.99
    broken = compare_outputs(ref, ref[:, ::-1].copy(), quantized=True)  # a wrong layout
    assert broken.top1_agreement == 0.0 and broken.cosine is not None and broken.cosine < 0.5


def test_parity_steps_moves_a_compressed_models_bound() -> None:
    kw: dict[str, Any] = {
        "batch_size": 1,
        "threads": 1,
        "candidates": ["drifting-parity-runtime-for-test"],
        "rounds": 1,
    }
    strict = select_backend(mlp(), torch.randn(1, 16), **kw)
    facts = strict.facts("drifting-parity-runtime-for-test")
    assert strict.best is None and facts.parity_ok is False
    assert facts.reason is not None
    assert "3.00 steps off, bound 2" in facts.reason and "cosine 0.99990" in facts.reason
    assert "top-1 agreement 1.000" in facts.reason
    loose = select_backend(mlp(), torch.randn(1, 16), parity_steps=4, **kw)
    assert loose.best == "drifting-parity-runtime-for-test" and loose.facts(loose.best).parity_ok
    assert loose.facts(loose.best).parity is not None
    assert {k: loose.facts(loose.best).parity[k] for k in ("ok", "bound_steps")} == {"ok": True, "bound_steps": 4}
    assert select_backend(mlp(), torch.randn(1, 16), parity_steps=2.5, **kw).best is None
    with pytest.raises(ConfigError, match="parity_steps"):
        select_backend(mlp(), torch.randn(1, 16), parity_steps=0, **kw)


def _noisy_logits(seed: int = 0) -> tuple[np.ndarray, np.ndarray, float]:
    """Reference logits and a copy with zero-mean one-step noise plus two 5-step spikes (the step is
    the reference's range / 255): rounding that compounded in a deep int8 network."""
    rng = np.random.default_rng(seed)
    ref = rng.normal(size=(4, 100)).astype(np.float32)
    ref[np.arange(4), rng.integers(0, 100, 4)] += 6.0  # a clear top-1 per row
    step = float(ref.max() - ref.min()) / 255
    got = ref + (rng.choice([-1.0, 0.0, 1.0], size=ref.shape) * step).astype(np.float32)
    got[0, 3] += 5 * step
    got[2, 7] -= 5 * step
    return ref, got, step


def test_an_output_further_than_the_step_bound_passes_when_close_in_direction_offset_scale_and_top1() -> None:
    from torchslim.deploy import compare_outputs

    ref, got, step = _noisy_logits()
    near = compare_outputs(ref, got, quantized=True)
    assert near.max_diff_in_steps is not None and near.max_diff_in_steps > 5
    assert near.within_steps is False and near.close is True and near.ok
    assert near.cosine is not None and near.cosine > 0.998 and near.top1_agreement == 1.0
    assert near.mean_diff_in_steps is not None and abs(near.mean_diff_in_steps) < 0.2
    # the step bound alone refuses it
    assert not compare_outputs(ref, got, quantized=True, cosine_bound=None).ok
    # an offset (a wrong zero point: every value one step up) is not rounding noise
    shifted = compare_outputs(ref, got + np.float32(step), quantized=True)
    assert not shifted.ok and shifted.mean_diff_in_steps is not None and shifted.mean_diff_in_steps > 0.9
    # neither is a scale error, which the cosine cannot see
    scaled = compare_outputs(ref, ref * np.float32(1.1), quantized=True)
    assert not scaled.ok and scaled.cosine is not None and scaled.cosine > 0.9999
    # nor a changed decision
    flipped = got.copy()
    flipped[1] = ref[1]
    flipped[1, int(np.argsort(ref[1])[-2])] = ref[1].max() + 5 * step
    changed = compare_outputs(ref, flipped, quantized=True)
    assert changed.top1_agreement == 0.75 and not changed.ok
    # a float model gets no close test
    assert not compare_outputs(ref, got, quantized=False).ok


def test_select_keeps_a_close_backend_unless_the_cosine_bound_says_otherwise() -> None:
    kw: dict[str, Any] = {"batch_size": 1, "threads": 1, "candidates": ["close-parity-runtime-for-test"], "rounds": 1}
    sel = select_backend(mlp(), torch.randn(1, 16), **kw)
    facts = sel.facts("close-parity-runtime-for-test")
    assert sel.best == "close-parity-runtime-for-test" and facts.parity is not None
    assert facts.parity["close"] is True and facts.parity["within_steps"] is False
    assert facts.parity["cosine_bound"] == 0.998 and facts.parity["ok"] is True
    for bound in (None, 0.9999):
        refused = select_backend(mlp(), torch.randn(1, 16), parity_cosine=bound, **kw)
        reason = refused.facts("close-parity-runtime-for-test").reason
        assert refused.best is None and reason is not None and "5.00 steps off, bound 2" in reason
        assert "mean difference +0.02 steps" in reason
    assert select_backend(mlp(), torch.randn(1, 16), parity_steps=6, parity_cosine=None, **kw).best is not None
    for bad in (0, 1.5, True):
        with pytest.raises(ConfigError, match="parity_cosine"):
            select_backend(mlp(), torch.randn(1, 16), parity_cosine=bad, **kw)
