"""Target and its command-line form: values, bounds, and errors that name the parameter."""

from __future__ import annotations

import pytest

import torchslim as ts
from torchslim.cli.search import parse_budget
from torchslim.core.errors import ConfigError
from torchslim.search.target import drop_points_from_cli, parse_target


def test_target_is_exported_frozen_and_keyword_only():
    target = ts.Target(size=15, max_drop=1.0)
    with pytest.raises(TypeError):
        ts.Target(15)  # type: ignore[misc]  # positional on purpose: keyword-only
    with pytest.raises(AttributeError):
        target.size = 3  # type: ignore[misc]  # frozen on purpose
    assert target.bounds() == {"size": pytest.approx(1 / 15)}
    assert target.primary_metric == "size"


def test_parse_each_metric_and_combinations():
    assert parse_target("size=15x").size == 15
    assert parse_target("latency=0.3x").latency == pytest.approx(0.3)
    assert parse_target("energy=0.1x").energy == pytest.approx(0.1)
    assert parse_target("macs=0.2x").macs == pytest.approx(0.2)
    both = parse_target("latency=0.5x, size=4x", max_drop=0.5)
    assert both.bounds() == {"size": pytest.approx(0.25), "latency": pytest.approx(0.5)}
    assert both.primary_metric == "size" and both.max_drop == 0.5
    assert parse_target("size=10x,max_drop=2", max_drop=1.0).max_drop == 2.0
    assert parse_target("latency=0.4x,min_cosine=0.99").min_cosine == pytest.approx(0.99)
    assert parse_target("size=4x,latency=0.5x,primary=latency").primary_metric == "latency"


@pytest.mark.parametrize(
    ("text", "named"),
    [
        ("size=abc", "size"),
        ("size=0.5x", "Target.size"),
        ("latency=1.5x", "Target.latency"),
        ("energy=0x", "Target.energy"),
        ("sise=15x", "sise"),
        ("size15x", "size15x"),
        ("size=4x,size=5x", "size"),
        ("max_drop=1", "bounds none"),
        ("", "--target"),
        ("size=4x,max_drop=-1", "Target.max_drop"),
        ("latency=0.3x,min_cosine=2", "Target.min_cosine"),
    ],
)
def test_bad_targets_name_the_parameter(text, named):
    with pytest.raises(ConfigError) as info:
        parse_target(text)
    assert named in str(info.value)


def test_unknown_key_suggests_the_close_one():
    with pytest.raises(ConfigError, match="Did you mean 'latency'"):
        parse_target("latncy=0.3x")


def test_max_drop_option_and_budget():
    assert drop_points_from_cli(1) == 1.0
    assert drop_points_from_cli(0.02) == pytest.approx(2.0)
    assert parse_budget("10m") == (None, 10.0)
    assert parse_budget("30") == (30, None)
    for bad in ("0", "ten", "-3m", "0m"):
        with pytest.raises(ConfigError, match="--budget"):
            parse_budget(bad)


def test_describe_says_what_is_minimised():
    text = ts.Target(energy=0.1, max_drop=1.0).describe()
    assert "energy <= 0.1x" in text and "minimise energy" in text


def test_a_text_models_example_is_tokenized_from_the_data():
    import torch
    from torch import nn

    from torchslim.core import DataSplits
    from torchslim.search.run import _example

    class TextModel(nn.Module):
        def tokenize(self, texts):
            return {"input_ids": torch.tensor([[len(t)] for t in texts])}

    data = DataSplits(calibration=[(["a tweet", "another"], torch.tensor([0, 1]))])
    assert _example(data, TextModel())["input_ids"].tolist() == [[7]]
    images = DataSplits(calibration=[(torch.zeros(4, 1, 8, 8), torch.zeros(4))])
    assert _example(images, nn.Identity()).shape == (1, 1, 8, 8)


def test_explain_says_when_every_trial_missed_a_cost_bound():
    from torchslim.search.report import explain
    from torchslim.search.target import Target

    target = Target(latency=0.4, min_cosine=0.99)
    records = [
        {"stopped_early": "misses the latency bound before fine-tuning", "violation": 1.5, "costs": {"latency": 0.547}},
        {"stopped_early": "misses the latency bound before fine-tuning", "violation": 2.0, "costs": {"latency": 0.6}},
    ]
    why = explain(None, records, target)
    assert "Every trial (2) missed a cost bound" in why and "latency 0.547x (bound 0.4x)" in why
    assert "needs more time" in explain(None, [], target)
