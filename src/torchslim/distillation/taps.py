"""Feature taps on teacher and student: forward hooks by module name, removed cleanly, and
automatic layer pairing by relative depth.

``with FeatureTaps(model, ["layer1", "layer3"]) as taps: model(x); taps.outputs["layer3"]`` records
what each named module returned in the last forward; leaving the block (normally or by an
exception) removes every hook. An unknown name is a :class:`~torchslim.core.errors.TargetError`
with close matches, raised before any hook is registered.

Pairing: :func:`candidate_layers` lists a model's "layers" (the blocks of its largest
``nn.ModuleList`` of one block type, as in a transformer encoder; otherwise its top-level children
with parameters, the output head excluded), and :func:`pair_by_depth` pairs student layer ``i`` of
``n_s`` with the teacher layer of nearest relative depth: ``j = round((i + 1) n_t / n_s) - 1``, so
the last layers are always paired and a 6 -> 3 layer student pairs with teacher layers 1, 3, 5.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping, Sequence
from typing import Any, cast

from torch import Tensor, nn

from torchslim.core.errors import ModelError, TargetError, did_you_mean


def module_names(model: nn.Module) -> list[str]:
    return [n for n, _ in model.named_modules() if n]


def find_module(model: nn.Module, name: str, *, role: str = "model") -> nn.Module:
    """The submodule `name` of `model`; a `TargetError` naming `role` and close matches otherwise."""
    if not isinstance(name, str) or not name:
        raise TargetError(f"A {role} tap needs a non-empty module name, got {name!r}.")
    modules = dict(model.named_modules())
    if name not in modules:
        names = module_names(model)
        raise TargetError(
            f"The {role} {type(model).__name__} has no module {name!r} to tap."
            + did_you_mean(name, names)
            + ("" if did_you_mean(name, names) else f" Some of its modules: {names[:12]}.")
        )
    return modules[name]


class FeatureTaps:
    """Forward hooks recording the outputs of named modules of `model` (a context manager).

    ``outputs[name]`` holds what the module returned in its latest call (a tensor, a tuple, or a
    model output object; see :func:`pick_feature`). `detach` stores detached outputs (for a teacher
    run under ``no_grad`` it makes no difference). :meth:`close` removes every hook and is
    idempotent; leaving a ``with`` block calls it, also when the block raises.
    """

    def __init__(self, model: nn.Module, names: Iterable[str], *, role: str = "model", detach: bool = False) -> None:
        self.model = model
        self.names = list(dict.fromkeys(names))
        self.role = role
        self.detach = detach
        self.outputs: dict[str, Any] = {}
        self._handles: list[Any] = []
        self._modules = {name: find_module(model, name, role=role) for name in self.names}

    @property
    def active(self) -> bool:
        return bool(self._handles)

    def open(self) -> FeatureTaps:
        """Register the hooks (no-op when already registered)."""
        if self._handles:
            return self
        try:
            for name, module in self._modules.items():
                self._handles.append(module.register_forward_hook(self._recorder(name)))
        except BaseException:
            self.close()
            raise
        return self

    def _recorder(self, name: str) -> Any:
        def record(module: nn.Module, args: Any, output: Any) -> None:
            self.outputs[name] = _detach(output) if self.detach else output

        return record

    def clear(self) -> None:
        self.outputs.clear()

    def close(self) -> None:
        """Remove every hook and forget recorded outputs."""
        while self._handles:
            self._handles.pop().remove()
        self.outputs.clear()

    def __enter__(self) -> FeatureTaps:
        return self.open()

    def __exit__(self, *exc: Any) -> None:
        self.close()

    def get(self, name: str) -> Any:
        if name not in self.outputs:
            raise ModelError(
                f"The {self.role} module {name!r} did not run in the last forward pass, so there is no feature "
                "to distil; tap a module that the forward pass calls."
            )
        return self.outputs[name]


def _detach(value: Any) -> Any:
    if isinstance(value, Tensor):
        return value.detach()
    if isinstance(value, (list, tuple)):
        return type(value)(_detach(v) for v in value) if not hasattr(value, "_fields") else value
    return value


def _tensors_of(output: Any) -> list[Any]:
    if isinstance(output, Tensor):
        return [output]
    if isinstance(output, Mapping):
        return list(output.values())
    if isinstance(output, (list, tuple)):
        return list(output)
    for attr in ("last_hidden_state", "hidden_states", "logits"):
        value = getattr(output, attr, None)
        if isinstance(value, Tensor):
            return [value]
    return []


def pick_feature(output: Any, *, kind: str = "hidden", name: str = "?", role: str = "model") -> Tensor:
    """The tensor to distil from a module output.

    ``kind="attention"``: the attention matrix ``[B, heads, T, T]`` (e.g. the second element of a
    Hugging Face attention module's ``(output, weights)``). Otherwise the first tensor (the output
    itself, the first element of a tuple, or ``last_hidden_state``).
    """
    items = _tensors_of(output)
    if kind == "attention":
        for item in reversed(items):
            if isinstance(item, Tensor) and item.dim() == 4 and item.shape[-1] == item.shape[-2]:
                return item
        raise ModelError(
            f"The {role} module {name!r} returned no attention weights [B, heads, T, T] "
            f"(got {_describe(output)}); tap an attention module of an eager-attention model."
        )
    for item in items:
        if isinstance(item, Tensor):
            return item
    raise ModelError(f"The {role} module {name!r} returned no tensor to distil (got {_describe(output)}).")


def _describe(output: Any) -> str:
    if isinstance(output, Tensor):
        return f"a tensor {tuple(output.shape)}"
    if isinstance(output, (list, tuple)):
        return "(" + ", ".join(_describe(v) if v is not None else "None" for v in output) + ")"
    return type(output).__name__


# ------------------------------------------------------------------------------------------------
# layers and stages


def find_stages(model: nn.Module, *, min_blocks: int = 2) -> list[tuple[str, nn.Module]]:
    """Outermost ``nn.Sequential`` / ``nn.ModuleList`` containers of at least `min_blocks` children
    that all share one class with parameters (a transformer's layer list, a ResNet stage), in model
    order. Containers nested in a found one are not listed."""
    found: list[tuple[str, nn.Module]] = []
    for name, module in model.named_modules():
        if not isinstance(module, (nn.Sequential, nn.ModuleList)):
            continue
        if any(name == f or name.startswith(f + ".") or f == "" for f, _ in found):
            continue
        children = list(module.children())
        if len(children) < min_blocks or len({type(c) for c in children}) != 1:
            continue
        if not any(True for _ in children[0].parameters()):
            continue
        found.append((name, module))
    return found


def layer_list(model: nn.Module) -> tuple[str, nn.ModuleList] | None:
    """The largest ``nn.ModuleList`` of one block type (a transformer's layers), or None."""
    best: tuple[str, nn.ModuleList] | None = None
    for name, module in model.named_modules():
        if not isinstance(module, nn.ModuleList) or len(module) == 0:
            continue
        children = list(module.children())
        if len({type(c) for c in children}) != 1 or not any(True for _ in children[0].parameters()):
            continue
        if best is None or len(module) > len(best[1]):
            best = (name, module)
    return best


def candidate_layers(model: nn.Module) -> list[str]:
    """The layers automatic pairing chooses from (see the module docstring), in forward order."""
    stack = layer_list(model)
    if stack is not None:
        prefix = f"{stack[0]}." if stack[0] else ""
        return [f"{prefix}{i}" for i in range(len(stack[1]))]
    children = [(n, m) for n, m in model.named_children() if any(True for _ in m.parameters())]
    if len(children) > 1:
        children = children[:-1]  # the last child with parameters is the output head
    names = [n for n, _ in children]
    if not names:
        raise ModelError(f"{type(model).__name__} has no layers with parameters to pair automatically.")
    return names


def pair_by_depth(teacher_layers: Sequence[str], student_layers: Sequence[str]) -> list[tuple[str, str]]:
    """``[(teacher_layer, student_layer), ...]``: student layer ``i`` of ``n_s`` with teacher layer
    ``round((i + 1) * n_t / n_s) - 1`` (nearest relative depth, ties rounded up)."""
    n_t, n_s = len(teacher_layers), len(student_layers)
    if not n_t or not n_s:
        raise ModelError("Automatic pairing needs at least one teacher and one student layer.")
    pairs = []
    for i, student in enumerate(student_layers):
        j = int(math.floor((i + 1) * n_t / n_s + 0.5)) - 1
        pairs.append((teacher_layers[min(max(j, 0), n_t - 1)], student))
    return pairs


def attention_module(model: nn.Module, layer: str) -> str:
    """The name of the first module inside `layer` whose class name contains "Attention"."""
    base = find_module(model, layer)
    for name, module in base.named_modules():
        if name and "Attention" in type(module).__name__:
            return f"{layer}.{name}"
    raise ModelError(
        f"Layer {layer!r} of {type(model).__name__} has no attention module to take attention maps from; "
        "name the attention modules explicitly."
    )


def hf_attention_owners(model: nn.Module) -> list[nn.Module]:
    """Hugging Face models inside `model` (modules with ``set_attn_implementation`` and a config)."""
    owners: list[nn.Module] = []
    for module in model.modules():
        if callable(getattr(module, "set_attn_implementation", None)) and hasattr(module, "config"):
            if not any(module in list(o.modules()) for o in owners):
                owners.append(module)
    return owners


class EagerAttention:
    """Switch every Hugging Face model inside the given modules to eager attention (which returns
    attention weights) and restore the previous implementation on :meth:`close`."""

    def __init__(self, *models: nn.Module) -> None:
        self._previous: list[tuple[nn.Module, str | None]] = []
        for model in models:
            for owner in hf_attention_owners(model):
                current = getattr(owner.config, "_attn_implementation", None)
                if current != "eager":
                    cast(Any, owner).set_attn_implementation("eager")  # a Hugging Face method
                    self._previous.append((owner, current))

    def close(self) -> None:
        while self._previous:
            owner, previous = self._previous.pop()
            if previous is not None:
                cast(Any, owner).set_attn_implementation(previous)


def token_mask(model: nn.Module, inputs: Any) -> Tensor | None:
    """The ``[B, T]`` attention mask the model sees for `inputs` (dict input or texts), else None."""
    if isinstance(inputs, Mapping):
        mask = inputs.get("attention_mask")
        return mask if isinstance(mask, Tensor) else None
    if isinstance(inputs, (list, tuple)) and inputs and all(isinstance(t, str) for t in inputs):
        tokenize = getattr(model, "tokenize", None)
        if tokenize is None:
            return None
        encoded = tokenize(list(inputs))
        mask = encoded.get("attention_mask") if isinstance(encoded, Mapping) else None
        if isinstance(mask, Tensor):
            first = next(model.parameters(), None)
            return mask.to(first.device) if first is not None else mask
    return None
