"""Observers: ranges they pick and the errors they raise."""

from __future__ import annotations

import pytest
import torch

from torchslim.core.errors import ConfigError, DataError
from torchslim.quantization import (
    Granularity,
    MinMaxObserver,
    MovingAverageMinMaxObserver,
    MSEObserver,
    PercentileObserver,
    dequantize,
    make_observer,
    quantize,
    weight_qparams,
)


def mse_of(x, scale, zp, bits=8):
    return float(((dequantize(quantize(x, scale, zp, bits=bits), scale, zp) - x) ** 2).mean())


def test_minmax_tracks_the_running_range():
    obs = MinMaxObserver(bits=8, symmetric=False)
    obs.observe(torch.tensor([0.0, 1.0]))
    obs.observe(torch.tensor([-2.0, 0.5]))
    lo, hi = obs.range()
    assert float(lo) == -2.0 and float(hi) == 1.0
    scale, zp = obs.qparams()
    assert float(scale) == pytest.approx(3.0 / 255)


def test_moving_average_smooths_per_batch_extremes():
    obs = MovingAverageMinMaxObserver(momentum=0.5, bits=8)
    obs.observe(torch.tensor([0.0, 1.0]))
    obs.observe(torch.tensor([0.0, 3.0]))
    assert float(obs.range()[1]) == pytest.approx(2.0)
    with pytest.raises(ConfigError, match="momentum"):
        MovingAverageMinMaxObserver(momentum=0.0)


def test_percentile_clips_outliers_and_helps_mse():
    g = torch.Generator().manual_seed(0)
    x = torch.randn(20_000, generator=g)
    x[:5] = 80.0  # a few huge outliers
    minmax = MinMaxObserver(bits=8)
    pct = PercentileObserver(percentile=99.9, bits=8)
    for obs in (minmax, pct):
        obs.observe(x)
    assert float(pct.range()[1]) < 5.0 < float(minmax.range()[1])
    body = x[5:]
    assert mse_of(body, *pct.qparams()) < mse_of(body, *minmax.qparams())


def test_mse_observer_beats_minmax_on_heavy_tails():
    with torch.random.fork_rng():  # StudentT.sample takes no generator: seed the global one, locally
        torch.manual_seed(1)
        x = torch.distributions.StudentT(2.0).sample((8192,))
    mse = MSEObserver(bits=4, symmetric=True)
    minmax = MinMaxObserver(bits=4, symmetric=True)
    for obs in (mse, minmax):
        obs.observe(x)
    assert mse_of(x, *mse.qparams(), bits=4) < mse_of(x, *minmax.qparams(), bits=4)


def test_per_channel_observer_and_weight_methods():
    w = torch.randn(6, 10)
    w[2] *= 50
    for method in ("minmax", "percentile", "mse"):
        scale, zp = weight_qparams(w, bits=8, granularity=Granularity.per_channel(0), method=method)
        assert scale.shape == (6,) and (zp == 0).all()
        assert float(scale[2]) > 10 * float(scale[0])
    obs = make_observer("mse", bits=8, granularity=Granularity.per_group(4, 0))
    obs.observe(w)
    scale, _ = obs.qparams()
    assert scale.shape == (6, 3)


def test_observer_errors():
    obs = MinMaxObserver()
    with pytest.raises(DataError, match="observed nothing"):
        obs.qparams()
    with pytest.raises(DataError, match="NaN"):
        obs.observe(torch.tensor([1.0, float("nan")]))
    with pytest.raises(ConfigError, match="Unknown observer 'minmx'.*minmax"):
        make_observer("minmx")
    with pytest.raises(ConfigError, match="percentile"):
        PercentileObserver(percentile=20)
