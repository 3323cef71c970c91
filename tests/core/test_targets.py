import pytest
from torch import nn

from torchslim.core import ConfigError, TargetError, Targets


def model():
    return nn.Sequential(
        nn.Conv2d(1, 4, 3),
        nn.ReLU(),
        nn.Sequential(nn.Conv2d(4, 4, 3), nn.BatchNorm2d(4)),
        nn.Flatten(),
        nn.Linear(4, 2),
    )


def names(pairs):
    return [n for n, _ in pairs]


def test_default_selects_modules_with_own_params():
    assert names(Targets().resolve(model())) == ["0", "2.0", "2.1", "4"]


def test_types_match_along_mro():
    class MyConv(nn.Conv2d):
        pass

    m = nn.Sequential(MyConv(1, 1, 1), nn.Conv2d(1, 1, 1))
    assert names(Targets(types=["Conv2d"]).resolve(m)) == ["0", "1"]


def test_names_regex_and_exclude():
    m = model()
    assert names(Targets(names=["re:2\\..*"]).resolve(m)) == ["2.0", "2.1"]
    assert names(Targets(names=["2"], exclude=["BatchNorm2d"]).resolve(m)) == ["2", "2.0"]
    assert names(Targets(types=["Conv2d", "Linear"], exclude=["4"]).resolve(m)) == ["0", "2.0"]


def test_pattern_matching_nothing_is_an_error():
    with pytest.raises(TargetError, match="'Conv3d' matches no module.*Did you mean 'Conv2d'"):
        Targets(types=["Conv3d"]).resolve(model())
    with pytest.raises(TargetError, match="'classifier' matches no module"):
        Targets(exclude=["classifier"]).resolve(model())
    with pytest.raises(TargetError):
        Targets(names=["re:head.*"]).resolve(model())


def test_bad_regex_and_keys():
    with pytest.raises(ConfigError, match="bad regex"):
        Targets(names=["re:("])
    with pytest.raises(ConfigError, match="Did you mean 'types'"):
        Targets.from_dict({"type": ["Linear"]})


def test_candidates_restrict():
    assert names(Targets().resolve(model(), candidates={"4"})) == ["4"]
