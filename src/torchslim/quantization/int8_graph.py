"""An integer graph end to end: int8 quantization points between the quantized layers.

A static int8 model whose convolutions are integer kernels still leaves every residual ``Add``,
the ``ReLU`` after it and the pooling in float unless their values are quantized too: an int8
runtime fuses ``DequantizeLinear -> Add -> QuantizeLinear`` into one integer ``Add``
(onnxruntime: ``QLinearAdd``), ``DQ -> GlobalAveragePool -> Q`` into an integer pooling, and
removes a ``ReLU`` before a ``QuantizeLinear`` whose zero point is the lowest code (the clamp at
zero *is* that quantizer's lower bound). So a ResNet needs an 8-bit quantizer

* on every **Add output** (after its ReLU when it has one): ``y = s (clamp(round(v / s) + z, qmin,
  qmax) - z)``, with ``(s, z)`` from an observer of ``v`` on the calibration data (so ``z = qmin``
  after a ReLU, whose outputs are >= 0);
* on every **Add input** that no quantized layer quantizes already (a float stem, say).

These points are found with ``torch.fx`` (:func:`plan_points`) and live on the module whose output
the value is (the block's ``ReLU`` module, or the block itself when its ReLU module is used twice):
two non-persistent buffers and a forward hook (:func:`install_point`) that fake-quantizes the
module's output in PyTorch and emits ``QuantizeLinear -> DequantizeLinear`` during ONNX export,
so the PyTorch simulation computes what the runtime computes. The model's own code is unchanged;
the ``quantize`` plan entry records ``{module: [scale, zero point]}`` and its replay re-installs
the points. Layers reading a point directly take the point's scale and zero point for their input
(the same observer on the same values gives the same numbers; sharing makes the two quantizers one,
which the export then writes once). Pooling needs no point: the classifier's input quantizer
already quantizes the pooled value, and the export moves a copy of it before the ``Flatten``.

Jacob et al. 2018, "Quantization and training of neural networks for efficient
integer-arithmetic-only inference" (section 2.3 and appendix A.1 on integer Add).
"""

from __future__ import annotations

import dataclasses
import operator
from collections.abc import Callable
from typing import Any

import torch
from torch import Tensor, nn

from torchslim.graph.flow import PASS_THROUGH_CALLS, PASS_THROUGH_MODULES, trace_layers
from torchslim.quantization import pt2e_ops
from torchslim.quantization.functional import fake_quantize
from torchslim.quantization.onnx_ops import QDQExport

POINT_SCALE = "torchslim_point_scale"
POINT_ZERO_POINT = "torchslim_point_zero_point"
PT2E_POINT = "_torchslim_point_pt2e"
_ADD_FUNCTIONS = (operator.add, operator.iadd, torch.add)
_IDENTITY_MODULES = (nn.Identity, nn.Dropout)
_INT8_POOLS = (nn.AdaptiveAvgPool2d, nn.AvgPool2d, nn.MaxPool2d, nn.AdaptiveMaxPool2d)


@dataclasses.dataclass
class PointPlan:
    """Where the quantization points go, and which layers still need an int8 output of their own."""

    points: dict[str, str]  # module name -> what its output is ("add output" | "add input")
    consumers: dict[str, list[str]]  # point module -> static layers whose first input is the point
    output_layers: set[str]  # static Conv layers whose output must be quantized by the layer itself
    skipped: dict[str, str]  # fx node name -> why no point could be placed there
    output_clamps: dict[str, tuple[float, float]] = dataclasses.field(default_factory=dict)
    """Output layers whose only reader is a clamp (ReLU, ReLU6, Hardtanh) -> its interval: the layer's
    int8 output is calibrated on the clamped values (:func:`clamp_of`)."""


def _sole_reader(node: Any, modules: dict[str, nn.Module]) -> Any:
    """The one node reading `node`'s value as its first argument, past identity modules (a folded
    BatchNorm, Dropout); None when there are several readers."""
    for _ in range(8):
        users = list(node.users)
        if len(users) != 1 or users[0].args[:1] != (node,):
            return None
        node = users[0]
        if not (node.op == "call_module" and isinstance(modules.get(str(node.target)), _IDENTITY_MODULES)):
            return node
    return None


def clamp_of(node: Any, modules: dict[str, nn.Module]) -> tuple[float, float] | None:
    """The interval of a clamp activation at fx `node` (``ReLU`` [0, inf), ``ReLU6`` [0, 6],
    ``Hardtanh`` [min, max], as modules or functions), None for anything else.

    A layer whose int8 output feeds only such a clamp gets its output range from the clamped values:
    the 256 codes cover what the clamp lets through (``ReLU6`` after a convolution whose outputs span
    [-13.6, 8.2] used 70 of them; now all 256 over [0, 6]), the quantizer itself is the clamp (its
    lowest and highest codes), so the clamp after it changes nothing, and no runtime has to fold a
    clamp into a wider quantizer: OpenVINO's low-precision rewrite of that pattern shifted
    EfficientNet-Lite0's outputs by 0.92 steps on average (docs/deploy.md).
    """
    target: Any = None
    if node.op == "call_module":
        target = modules.get(str(node.target))
    elif node.op == "call_function":
        target = node.target
    if isinstance(target, nn.ReLU6) or target in (torch.nn.functional.relu6,):
        return (0.0, 6.0)
    if _is_relu(node, modules):
        return (0.0, float("inf"))
    if isinstance(target, nn.Hardtanh):
        return (float(target.min_val), float(target.max_val))
    return None


def _is_add(node: Any) -> bool:
    if node.op == "call_function" and node.target in _ADD_FUNCTIONS:
        pass
    elif not (node.op == "call_method" and node.target in ("add", "add_")):
        return False
    return len(node.args) >= 2 and all(hasattr(a, "op") for a in node.args[:2]) and not node.kwargs.get("alpha")


def _is_relu(node: Any, modules: dict[str, nn.Module]) -> bool:
    if node.op == "call_module":
        return isinstance(modules.get(str(node.target)), nn.ReLU)
    return node.op in ("call_function", "call_method") and getattr(node.target, "__name__", node.target) in (
        "relu",
        "relu_",
    )


def _passes_through(node: Any, modules: dict[str, nn.Module]) -> bool:
    if node.op == "call_module":
        return isinstance(modules.get(str(node.target)), PASS_THROUGH_MODULES)
    return node.op in ("call_function", "call_method") and getattr(node.target, "__name__", node.target) in (
        PASS_THROUGH_CALLS
    )


def _module_of(node: Any, graph: Any) -> str | None:
    """The innermost submodule, called once, whose output is exactly `node`'s value (None: none)."""
    stack = node.meta.get("nn_module_stack") or {}
    repeated = {key.split("@")[0] for n in graph.nodes for key in (n.meta.get("nn_module_stack") or {}) if "@" in key}
    for key in reversed(list(stack)):
        if "@" in key or key in repeated or not key:
            continue
        inside = [n for n in graph.nodes if key in (n.meta.get("nn_module_stack") or {})]
        members = set(inside)
        leaving = [n for n in inside if any(u not in members for u in n.users)]
        if leaving == [node]:
            return str(key)
    return None


def _int8_readers(node: Any, modules: dict[str, nn.Module], static: set[str], depth: int = 0) -> bool:
    """True when everything that reads `node` can take int8: a static quantized layer (first input),
    another Add, average / max pooling, or a pass-through op whose readers can."""
    if depth > 32 or not node.users:
        return False
    for user in node.users:
        if _is_add(user) or (user.op == "call_module" and isinstance(modules.get(str(user.target)), _INT8_POOLS)):
            continue
        if user.op == "call_module" and str(user.target) in static and user.args and user.args[0] is node:
            continue
        if not (_passes_through(user, modules) and _int8_readers(user, modules, static, depth + 1)):
            return False
    return True


def _add_points(graph: Any, modules: dict[str, nn.Module], static: set[str]) -> tuple[dict[Any, str], dict[str, str]]:
    """fx node -> point kind, for every Add output (after its ReLU) and float Add input, where the
    Add's output goes only to readers that take int8 (a transformer's Add before a LayerNorm stays float)."""
    wanted: dict[Any, str] = {}
    skipped: dict[str, str] = {}
    for node in graph.nodes:
        if not _is_add(node):
            continue
        users = list(node.users)
        out = users[0] if len(users) == 1 and _is_relu(users[0], modules) else node
        if not _int8_readers(out, modules, static):
            skipped[node.name] = "add output: read by an operation that stays float"
            continue
        wanted.setdefault(out, "add output")
        for arg in node.args[:2]:
            while arg.op == "call_module" and isinstance(modules.get(str(arg.target)), _IDENTITY_MODULES):
                arg = arg.args[0]
            if arg.op == "placeholder" or (arg.op == "call_module" and str(arg.target) in static):
                continue  # a model input stays as it is; a quantized layer quantizes its own output
            wanted.setdefault(arg, "add input")
    return wanted, skipped


def plan_points(model: nn.Module, static_layers: set[str], static_convs: set[str]) -> PointPlan | None:
    """The quantization points of `model` (see the module docstring); None when ``torch.fx`` cannot
    trace it. `static_layers` are the layers that will quantize their input statically (8-bit
    asymmetric), `static_convs` the convolutions among them."""
    graph = trace_layers(model)
    if graph is None:
        return None
    modules = dict(model.named_modules())
    wanted, skipped = _add_points(graph, modules, static_layers)
    at: dict[Any, str] = {}
    points: dict[str, str] = {}
    for node, kind in wanted.items():
        name = _module_of(node, graph)
        if name is None or name in static_layers:
            skipped[node.name] = f"{kind}: no submodule (called once) has this value as its output"
            continue
        at[node] = name
        points.setdefault(name, kind)
    consumers = {
        name: [
            str(u.target)
            for u in node.users
            if u.op == "call_module" and str(u.target) in static_layers and u.args and u.args[0] is node
        ]
        for node, name in at.items()
    }

    def covered(node: Any, depth: int = 0) -> bool:
        if depth > 32 or not node.users:
            return False
        for user in node.users:
            if not user.args or user.args[0] is not node:
                return False
            if user.op == "call_module" and str(user.target) in static_layers:
                continue
            if not _passes_through(user, modules) or not (user in at or covered(user, depth + 1)):
                return False
        return True

    output_nodes = [
        n
        for n in graph.nodes
        if n.op == "call_module" and str(n.target) in static_convs and n not in at and not covered(n)
    ]
    clamps = {}
    for n in output_nodes:
        reader = _sole_reader(n, modules)
        clamp = None if reader is None else clamp_of(reader, modules)
        if clamp is not None:
            clamps[str(n.target)] = clamp
    return PointPlan(points, consumers, {str(n.target) for n in output_nodes}, skipped, clamps)


# ------------------------------------------------------------------------------------------------
# the points on the modules


def _point_hook(module: nn.Module, args: tuple[Any, ...], output: Any) -> Any:
    """Forward hook of a point: fake-quantize the module's output (QDQ while exporting to ONNX)."""
    if not isinstance(output, Tensor) or not output.is_floating_point():
        return output
    if torch.compiler.is_exporting():
        # torch.export (ExecuTorch): the quantized_decomposed operators, with the scale and zero
        # point as Python numbers (buffers are fake tensors while torch.export traces)
        return pt2e_ops.qdq_per_tensor(output, *module.__dict__[PT2E_POINT])
    scale, zero_point = getattr(module, POINT_SCALE), getattr(module, POINT_ZERO_POINT)
    if torch.onnx.is_in_onnx_export():
        return QDQExport.apply(output, scale, zero_point, 8)
    return fake_quantize(output, scale, zero_point.to(torch.int32), bits=8)


def install_point(module: nn.Module, scale: float | Tensor, zero_point: int | Tensor) -> None:
    """Make `module`'s output an int8 point with this scale and zero point (idempotent)."""
    s = torch.as_tensor(scale, dtype=torch.float32).reshape(())
    z = torch.as_tensor(zero_point).reshape(()).to(torch.int8)
    first = not hasattr(module, POINT_SCALE)
    module.register_buffer(POINT_SCALE, s.clone(), persistent=False)
    module.register_buffer(POINT_ZERO_POINT, z.clone(), persistent=False)
    module.__dict__[PT2E_POINT] = (float(s), int(z), -128, 127)
    if first:
        module.register_forward_hook(_point_hook)


def point_qparams(module: nn.Module) -> tuple[float, int] | None:
    """``(scale, zero point)`` of a point module, or None when `module` is not one."""
    if not hasattr(module, POINT_SCALE):
        return None
    return float(getattr(module, POINT_SCALE)), int(getattr(module, POINT_ZERO_POINT))


def installed_points(model: nn.Module) -> dict[str, list[float | int]]:
    """``{module name: [scale, zero point]}`` of every point in `model` (the plan entry's form)."""
    out: dict[str, list[float | int]] = {}
    for name, module in model.named_modules():
        q = point_qparams(module)
        if q is not None:
            out[name] = [q[0], q[1]]
    return out


def observe_points(
    model: nn.Module, names: list[str], make: Callable[[], Any]
) -> tuple[dict[str, Any], list[torch.utils.hooks.RemovableHandle]]:
    """Observers (from `make`) on the outputs of modules `names`; remove the handles when done."""
    observers: dict[str, Any] = {}
    handles = []
    for name in names:
        obs = observers[name] = make()

        def hook(module: nn.Module, args: tuple[Any, ...], output: Any, obs: Any = obs) -> None:
            if isinstance(output, Tensor) and output.is_floating_point():
                obs.observe(output.detach())

        handles.append(model.get_submodule(name).register_forward_hook(hook))
    return observers, handles


__all__ = [
    "POINT_SCALE",
    "POINT_ZERO_POINT",
    "PointPlan",
    "install_point",
    "installed_points",
    "observe_points",
    "plan_points",
    "point_qparams",
]
