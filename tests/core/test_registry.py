import pytest

from torchslim.core import ConfigError, Registry, UnknownNameError


class A:
    name = "a"


class B(A):
    pass


def test_dispatch_by_type_and_mro():
    reg = Registry("thing")
    reg.register("a", A, "handler-a")
    assert reg.handler_for(A()) == "handler-a"
    assert reg.handler_for(B()) == "handler-a"
    assert reg.config_type("a") is A
    assert reg.name_of(B()) == "a"
    assert "a" in reg and reg.names() == ["a"]


def test_unknown_names():
    reg = Registry("thing")
    reg.register("alpha", A, 1)
    with pytest.raises(UnknownNameError, match="Unknown thing 'alpa'.*Did you mean 'alpha'"):
        reg.config_type("alpa")
    with pytest.raises(UnknownNameError):
        reg.handler_for(object())


def test_duplicate_name_with_other_type_rejected():
    reg = Registry("thing")
    reg.register("a", A, 1)
    with pytest.raises(ConfigError):
        reg.register("a", B, 2)
