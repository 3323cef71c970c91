"""ONNX export: float models, and quantized models as int8 QDQ that onnxruntime runs with integer kernels.

:func:`export_onnx` traces the model with the TorchScript ONNX exporter. Layers that implement
``torchslim_set_onnx_export(enabled)`` (torchslim's quantized layers) switch to an export form while
tracing and emit, with the scales and zero points torchslim computed (nothing is re-calibrated):

* ``DequantizeLinear`` on int8 weight initializers (per tensor, or per output channel with ``axis``);
* ``QuantizeLinear`` -> ``DequantizeLinear`` on each statically quantized input, and the bias as an
  int32 initializer with scale ``s_in * s_w`` (what an integer kernel adds);
* for dynamically quantized Linear layers, onnxruntime's dynamic int8 pattern
  ``DynamicQuantizeLinear -> MatMulInteger -> Cast -> Mul -> Add`` (fused into ``DynamicQuantizeMatMul``).

A graph pass then makes the integer fusion reliable: when a ``QuantizeLinear`` is reached from a
``Conv`` / ``Gemm`` / ``MatMul`` through a single-consumer chain of quantization-transparent ops
(``Relu``, ``MaxPool``, ``Flatten``, ``Reshape``, ``Transpose``, ``Squeeze``, ``Unsqueeze``,
``Identity``), copies of that ``QuantizeLinear -> DequantizeLinear`` pair are placed right after the
producer and after each op of the chain. This changes no value: quantization is monotone, so it
commutes with max-pooling and reshapes, and applying the same quantizer twice is the same as once;
a ``Relu`` fed by a ``DequantizeLinear`` whose zero point is the lowest code is a no-op and is
dropped. onnxruntime then sees the ``DQ -> Conv -> Q`` groups it fuses into ``QLinearConv``
(Gemm: ``QGemm``), and runs max-pooling and reshapes on int8.

:func:`optimized_op_counts` lists the operators onnxruntime actually runs (from
``SessionOptions.optimized_model_filepath``), so tests and benchmarks can check that integer kernels
are used; :func:`check_parity` compares onnxruntime's output with torchslim's simulated output.
"""

from __future__ import annotations

import collections
import dataclasses
import inspect
import tempfile
import warnings
from pathlib import Path
from typing import Any, Iterator, Mapping, Sequence

import numpy as np
import torch
from torch import Tensor, nn

from torchslim.core.errors import ArtifactError, ConfigError, ModelError
from torchslim.io.atomic import atomic_path

DEFAULT_OPSET = 17
TRANSPARENT_OPS = frozenset({"Relu", "MaxPool", "Flatten", "Reshape", "Transpose", "Squeeze", "Unsqueeze", "Identity"})
COMPUTE_OPS = frozenset({"Conv", "Gemm", "MatMul"})
INTEGER_OPS = frozenset({
    "QLinearConv", "QGemm", "QLinearMatMul", "MatMulInteger", "ConvInteger", "DynamicQuantizeMatMul",
    "MatMulIntegerToFloat", "QLinearAdd", "QLinearMul", "QLinearAveragePool", "QLinearGlobalAveragePool",
    "QLinearSigmoid", "QLinearLeakyRelu", "QLinearConcat", "QAttention", "DynamicQuantizeLSTM",
})
FLOAT_COMPUTE_OPS = frozenset({"Conv", "FusedConv", "Gemm", "FusedGemm", "MatMul", "FusedMatMul", "Attention"})


@dataclasses.dataclass
class OnnxExport:
    """What :func:`export_onnx` wrote."""

    path: Path
    quantized: bool
    opset: int
    input_names: list[str]
    output_names: list[str]
    integer_layers: list[str] = dataclasses.field(default_factory=list)
    float_weight_layers: list[str] = dataclasses.field(default_factory=list)
    inserted_qdq: int = 0
    removed_relu: int = 0
    bytes: int = 0
    notes: list[str] = dataclasses.field(default_factory=list)

    def to_dict(self) -> dict[str, Any]:
        out = dataclasses.asdict(self)
        out["path"] = str(self.path)
        return out


# ----------------------------------------------------------------------------------------------
# inputs

def _signature_order(model: nn.Module, keys: Sequence[str]) -> list[str]:
    try:
        params = list(inspect.signature(model.forward).parameters)
    except (TypeError, ValueError):
        return list(keys)
    ordered = [p for p in params if p in keys]
    for i, name in enumerate(ordered):
        if params.index(name) != i:
            raise ModelError(
                f"export_onnx: the example input gives {list(keys)} but {type(model).__name__}.forward takes "
                f"{params}; give the leading arguments without gaps."
            )
    return ordered + [k for k in keys if k not in ordered]


def normalize_inputs(model: nn.Module, example_input: Any, input_names: Sequence[str] | None = None) -> tuple[tuple[Tensor, ...], list[str]]:
    """Positional tensors and their names for a tensor, a tuple of tensors, or a mapping."""
    if isinstance(example_input, Tensor):
        args: tuple[Tensor, ...] = (example_input,)
        names = ["input"]
    elif isinstance(example_input, Mapping):
        keys = _signature_order(model, [str(k) for k in example_input])
        args = tuple(example_input[k] for k in keys)
        names = list(keys)
    elif isinstance(example_input, (tuple, list)) and example_input and all(isinstance(t, Tensor) for t in example_input):
        args = tuple(example_input)
        names = [f"input_{i}" for i in range(len(args))]
    else:
        raise ConfigError(
            "export_onnx: example_input must be a tensor, a tuple of tensors or a mapping of tensors, "
            f"got {type(example_input).__name__}."
        )
    if input_names is not None:
        if len(input_names) != len(args):
            raise ConfigError(f"export_onnx: {len(input_names)} input_names for {len(args)} inputs.")
        names = [str(n) for n in input_names]
    return args, names


def _export_layers(model: nn.Module) -> Iterator[tuple[str, nn.Module]]:
    for name, module in model.named_modules():
        if callable(getattr(module, "torchslim_set_onnx_export", None)):
            yield name, module


# ----------------------------------------------------------------------------------------------
# export

def _eager_attention(model: nn.Module) -> list[tuple[Any, str]]:
    """Switch every Hugging Face model inside `model` from SDPA to eager attention for tracing.

    torch's ONNX form of ``scaled_dot_product_attention`` guards fully masked rows with
    ``Where(IsNaN(p), 0, p)`` over every attention matrix: on MiniLM-L6 (batch 32 x 128 tokens) that
    pass took ~30% of onnxruntime's time, fp32 and int8 alike. Eager attention is the same
    softmax(QK^T / sqrt(d) + mask) V without it. Returns ``(module, previous)`` pairs to restore.
    """
    switched: list[tuple[Any, str]] = []
    seen: set[int] = set()
    for module in model.modules():
        config = getattr(module, "config", None)
        setter = getattr(module, "set_attn_implementation", None)
        if config is None or not callable(setter) or id(config) in seen:
            continue
        seen.add(id(config))
        previous = getattr(config, "_attn_implementation", None)
        if previous == "sdpa":
            setter("eager")
            if getattr(config, "_attn_implementation", None) == "eager":
                switched.append((module, previous))
    return switched


def export_onnx(
    model: nn.Module,
    path: str | Path,
    example_input: Any,
    *,
    opset: int = DEFAULT_OPSET,
    input_names: Sequence[str] | None = None,
    output_names: Sequence[str] | None = None,
    dynamic_batch: bool = True,
    dynamic_axes: Mapping[str, Mapping[int, str]] | None = None,
    propagate_qdq: bool = True,
    eager_attention: bool = True,
) -> OnnxExport:
    """Write `model` to `path` as ONNX (int8 QDQ for torchslim-quantized layers), atomically.

    `example_input` is a tensor, a tuple of tensors or a mapping (ordered like ``forward``'s
    arguments). With `dynamic_batch` every input's and output's first dimension is dynamic, and the
    second dimension of integer inputs of rank >= 2 (token ids) too; `dynamic_axes` overrides that.
    The model is traced in eval mode; its modes are restored afterwards and it is not changed.
    With `eager_attention` Hugging Face models inside `model` are traced with eager attention
    instead of SDPA (see :func:`_eager_attention`), and switched back afterwards.
    """
    if opset < 13:
        raise ConfigError(f"export_onnx: opset {opset} is too old; per-channel DequantizeLinear needs opset >= 13.")
    args, names = normalize_inputs(model, example_input, input_names)
    layers = list(_export_layers(model))
    quantized = bool(layers)
    out_names = list(output_names) if output_names is not None else ["output"]
    if dynamic_axes is None and dynamic_batch:
        axes: dict[str, dict[int, str]] = {}
        for name, tensor in zip(names, args):
            axes[name] = {0: "batch"}
            if not tensor.is_floating_point() and tensor.dim() >= 2:
                axes[name][1] = "sequence"
        for name in out_names:
            axes[name] = {0: "batch"}
    else:
        axes = {k: dict(v) for k, v in (dynamic_axes or {}).items()}

    flags = [(m, m.training) for m in model.modules()]
    integer_layers, float_weight_layers = [], []
    for name, module in layers:
        info = module.torchslim_onnx_info() if hasattr(module, "torchslim_onnx_info") else {}
        (integer_layers if info.get("integer_weights", True) else float_weight_layers).append(name)
    path = Path(path)
    switched: list[tuple[Any, str]] = []
    try:
        model.eval()
        switched = _eager_attention(model) if eager_attention else []
        for _, module in layers:
            module.torchslim_set_onnx_export(True)
        with tempfile.TemporaryDirectory(prefix="torchslim-onnx-") as tmp:
            raw = Path(tmp) / "raw.onnx"
            with warnings.catch_warnings(), torch.no_grad():
                warnings.simplefilter("ignore")
                torch.onnx.export(
                    model, args, str(raw), dynamo=False, opset_version=opset, input_names=names,
                    output_names=out_names, dynamic_axes=axes or None, do_constant_folding=True,
                )
            import onnx

            proto = onnx.load(str(raw))
    except (RuntimeError, TypeError, ValueError, NotImplementedError) as exc:
        raise ModelError(f"export_onnx: {type(model).__name__} could not be exported: {type(exc).__name__}: {exc}") from exc
    finally:
        for module, implementation in reversed(switched):
            module.set_attn_implementation(implementation)
        for _, module in layers:
            module.torchslim_set_onnx_export(False)
        for module, flag in flags:
            module.training = flag
    inserted = removed = 0
    if quantized and propagate_qdq:
        pool_before_float_relu(proto)
        inserted, removed = propagate_output_qdq(proto)
        float_weights_where_unfused(proto)
    import onnx

    onnx.checker.check_model(proto)
    with atomic_path(path) as tmp_path:
        onnx.save(proto, str(tmp_path))
    notes = []
    if switched:
        notes.append(
            "Hugging Face attention exported as explicit MatMul/Softmax instead of torch's scaled_dot_product_attention "
            "(whose ONNX form adds an IsNaN/Where pass over every attention matrix); the model itself is unchanged."
        )
    if float_weight_layers:
        notes.append(
            f"{len(float_weight_layers)} per-group layer(s) are stored as dequantized float32 weights (opset "
            f"{opset} has no block-wise DequantizeLinear); onnxruntime may re-quantize such weights per tensor "
            "when it fuses an integer kernel, so check_parity is the judge of these layers."
        )
    return OnnxExport(
        path=path, quantized=quantized, opset=opset, input_names=names, output_names=out_names,
        integer_layers=integer_layers, float_weight_layers=float_weight_layers, inserted_qdq=inserted,
        removed_relu=removed, bytes=path.stat().st_size, notes=notes,
    )


# ----------------------------------------------------------------------------------------------
# graph pass

def _constant_value(graph: Any, name: str, depth: int = 0) -> np.ndarray | None:
    """The value of initializer / Constant `name`, following Identity nodes (the exporter's dedup)."""
    from onnx import numpy_helper

    for init in graph.initializer:
        if init.name == name:
            return numpy_helper.to_array(init)
    for node in graph.node:
        if node.output and node.output[0] == name:
            if node.op_type == "Constant":
                for attr in node.attribute:
                    if attr.name == "value":
                        return numpy_helper.to_array(attr.t)
            if node.op_type == "Identity" and depth < 8:
                return _constant_value(graph, node.input[0], depth + 1)
            return None
    return None


def _dequantized_inputs(node: Any, producer: dict[str, Any]) -> bool:
    """True when the data and weight inputs of `node` come from DequantizeLinear."""
    feeds = [producer.get(name) for name in node.input[:2]]
    return len(feeds) == 2 and all(f is not None and f.op_type == "DequantizeLinear" for f in feeds)


def _graph_links(graph: Any) -> tuple[list[Any], dict[str, Any], dict[str, list[Any]], set[str]]:
    """The graph's nodes, ``{tensor: producing node}``, ``{tensor: reading nodes}`` and output names."""
    nodes = list(graph.node)
    producer = {out: node for node in nodes for out in node.output}
    consumers: dict[str, list[Any]] = collections.defaultdict(list)
    for node in nodes:
        for inp in node.input:
            if inp:
                consumers[inp].append(node)
    return nodes, producer, consumers, {o.name for o in graph.output}


def pool_before_float_relu(proto: Any) -> int:
    """``Relu -> MaxPool -> QuantizeLinear`` after a float Conv / Gemm / MatMul becomes
    ``MaxPool -> Relu -> QuantizeLinear``, in place; returns how many pairs were swapped.

    Exact (max commutes with a non-decreasing function). It keeps a float layer's pooling in float:
    onnxruntime otherwise moves the QuantizeLinear above the MaxPool (its QDQ propagation crosses
    MaxPool, not Relu) and pools the 4x larger tensor in int8 with a slow NCHW kernel (fmnist-cnn with
    conv1 float: 2.1x slower than fp32 without the swap, 0.65x with it).
    """
    graph = proto.graph
    nodes, producer, consumers, graph_outputs = _graph_links(graph)
    swapped = 0
    for pool in nodes:
        if pool.op_type != "MaxPool" or len(pool.output) != 1:
            continue
        relu = producer.get(pool.input[0])
        if relu is None or relu.op_type != "Relu" or len(consumers[relu.output[0]]) != 1 or relu.output[0] in graph_outputs:
            continue
        compute = producer.get(relu.input[0])
        if compute is None or compute.op_type not in ("Conv", "Gemm", "MatMul") or _dequantized_inputs(compute, producer):
            continue
        users = consumers[pool.output[0]]
        if not users or any(u.op_type != "QuantizeLinear" for u in users) or pool.output[0] in graph_outputs:
            continue
        before, between, after = relu.input[0], relu.output[0], pool.output[0]
        pool.input[0], pool.output[0] = before, between
        relu.input[0], relu.output[0] = between, after
        i, j = nodes.index(relu), nodes.index(pool)
        nodes[i], nodes[j] = nodes[j], nodes[i]
        swapped += 1
    if swapped:
        del graph.node[:]
        graph.node.extend(nodes)
    return swapped


def float_weights_where_unfused(proto: Any) -> int:
    """Give a Conv whose output no ``QuantizeLinear`` takes (so onnxruntime cannot fuse it
    into an integer kernel: a residual branch before its ``Add``, say) its weight and bias as float
    initializers, dequantized here, instead of ``DequantizeLinear`` nodes; in place, returns how many.

    The values are the same; the difference is speed: onnxruntime's fast float convolution (NCHWc)
    needs constant weights, and runs a conv on dequantized weights through a plain kernel (measured on
    fmnist-resnet's residual convs at batch 64: 2-5.5 ms each instead of 0.7-1.2 ms).
    """
    from onnx import numpy_helper

    graph = proto.graph
    nodes, producer, consumers, graph_outputs = _graph_links(graph)
    replaced: dict[str, str] = {}  # DequantizeLinear output -> float initializer name
    changed = 0
    for node in nodes:
        if node.op_type != "Conv":  # (onnxruntime fuses a Gemm on dequantized inputs even with a float output)
            continue
        users = consumers[node.output[0]]
        if len(users) == 1 and users[0].op_type in ("Relu", "Clip") and users[0].output[0] not in graph_outputs:
            users = consumers[users[0].output[0]]  # onnxruntime folds a Relu / Clip into the QuantizeLinear
        if users and node.output[0] not in graph_outputs and all(u.op_type == "QuantizeLinear" for u in users):
            continue  # onnxruntime fuses this one (and would re-quantize float weights itself, per tensor)
        touched = False
        for slot in (1, 2):
            if len(node.input) <= slot or not node.input[slot]:
                continue
            dq = producer.get(node.input[slot])
            if dq is None or dq.op_type != "DequantizeLinear":
                continue
            codes = _constant_value(graph, dq.input[0])  # an initializer, or one behind Identity nodes
            if codes is None:
                continue
            if dq.output[0] not in replaced:
                q = codes.astype(np.float64)
                scale = _constant_value(graph, dq.input[1])
                zp = _constant_value(graph, dq.input[2]) if len(dq.input) > 2 and dq.input[2] else None
                if scale is None or (len(dq.input) > 2 and dq.input[2] and zp is None):
                    continue
                axis = next((a.i for a in dq.attribute if a.name == "axis"), 1)
                shape = [1] * q.ndim
                if scale.size > 1:
                    shape[axis % q.ndim] = -1
                zp_f = zp.astype(np.float64).reshape(shape) if zp is not None else 0.0
                value = ((q - zp_f) * scale.astype(np.float64).reshape(shape)).astype(np.float32)
                name = f"{dq.output[0]}__float"
                graph.initializer.append(numpy_helper.from_array(value, name))
                replaced[dq.output[0]] = name
            node.input[slot] = replaced[dq.output[0]]
            touched = True
        changed += touched
    if replaced:  # drop the DequantizeLinear nodes (and their int initializers) nothing reads any more
        live = {inp for node in graph.node for inp in node.input} | graph_outputs
        dropped = [n for n in graph.node if n.op_type == "DequantizeLinear" and n.output[0] in replaced
                   and n.output[0] not in live]
        keep = [n for n in graph.node if n not in dropped]
        del graph.node[:]
        graph.node.extend(keep)
        used = {inp for node in graph.node for inp in node.input}
        candidates = {inp for n in dropped for inp in n.input}
        for init in [i for i in graph.initializer if i.name in candidates and i.name not in used]:
            graph.initializer.remove(init)
    return changed


def propagate_output_qdq(proto: Any) -> tuple[int, int]:
    """The graph pass of the module docstring, in place; returns (QDQ pairs inserted, Relus removed)."""
    from onnx import helper

    graph = proto.graph
    nodes, producer, consumers, graph_outputs = _graph_links(graph)

    # tensor -> (scale name, zero point name) of the QDQ pair to place after it
    insert: dict[str, tuple[str, str]] = {}
    for q in nodes:
        if q.op_type != "QuantizeLinear" or len(q.input) < 3:
            continue
        scale, zp = q.input[1], q.input[2]
        scale_value = _constant_value(graph, scale)
        if scale_value is None or scale_value.size != 1:
            continue
        zp_value = _constant_value(graph, zp)

        def same_quantizer(node: Any) -> bool:
            if node.op_type != "QuantizeLinear" or len(node.input) < 3:
                return False
            other_scale, other_zp = _constant_value(graph, node.input[1]), _constant_value(graph, node.input[2])
            return (other_scale is not None and other_zp is not None and zp_value is not None
                    and np.array_equal(other_scale, scale_value) and np.array_equal(other_zp, zp_value)
                    and other_zp.dtype == zp_value.dtype)

        chain = []
        cur = q.input[0]
        head = None
        while True:
            users = consumers[cur]
            # several readers are fine where all of them quantize it the same way (a residual
            # block's conv1 and shortcut reading one tensor, calibrated on the same data)
            if cur in graph_outputs or (len(users) != 1 and not (cur == q.input[0] and all(map(same_quantizer, users)))):
                break
            p = producer.get(cur)
            if p is None:
                break
            if p.op_type in TRANSPARENT_OPS:
                chain.append(p)
                cur = p.input[0]
                continue
            if p.op_type in COMPUTE_OPS and _dequantized_inputs(p, producer):
                head = p  # an integer kernel once fused; a float one keeps its float output
            break
        if head is None or not chain:
            continue
        points = [cur] + [n.output[0] for n in reversed(chain[1:])]
        for t in points:
            insert.setdefault(t, (scale, zp))

    new_nodes = []
    rename: dict[str, str] = {}
    dq_zero_is_min: dict[str, bool] = {}
    inserted = removed = 0
    counter = 0
    for node in nodes:
        for i, name in enumerate(node.input):
            if name in rename:
                node.input[i] = rename[name]
        if node.op_type == "Relu" and dq_zero_is_min.get(node.input[0], False) and node.output[0] not in graph_outputs:
            rename[node.output[0]] = node.input[0]
            removed += 1
            continue
        new_nodes.append(node)
        if node.op_type == "DequantizeLinear" and len(node.input) >= 3:
            zp_value = _constant_value(graph, node.input[2])
            if zp_value is not None and zp_value.size == 1:
                lowest = np.iinfo(zp_value.dtype).min if np.issubdtype(zp_value.dtype, np.integer) else None
                dq_zero_is_min[node.output[0]] = lowest is not None and int(zp_value.reshape(())) == lowest
        for out in node.output:
            if out in insert:
                scale, zp = insert[out]
                counter += 1
                q_out, dq_out = f"{out}__tsq{counter}", f"{out}__tsdq{counter}"
                new_nodes.append(helper.make_node("QuantizeLinear", [out, scale, zp], [q_out], name=f"torchslim_Q_{counter}"))
                new_nodes.append(helper.make_node("DequantizeLinear", [q_out, scale, zp], [dq_out], name=f"torchslim_DQ_{counter}"))
                rename[out] = dq_out
                zp_value = _constant_value(graph, zp)
                if zp_value is not None:
                    dq_zero_is_min[dq_out] = int(zp_value.reshape(())) == int(np.iinfo(zp_value.dtype).min)
                inserted += 1
    del graph.node[:]
    graph.node.extend(new_nodes)
    return inserted, removed


# ----------------------------------------------------------------------------------------------
# running and checking

def ort_session(path: str | Path, *, threads: int | None = None, optimized_path: str | Path | None = None,
                spinning: bool = True) -> Any:
    """An onnxruntime CPU session with `threads` intra-op threads (all optimizations enabled).

    ``spinning=False`` stops idle intra-op threads from busy-waiting: needed when several sessions
    take turns on few cores (an A/B timing loop), where one session's spinning threads steal the
    cores the next one runs on (measured: fmnist-cnn fp32 at 2 threads, 2.2 ms alone, 7.1 ms when
    alternating with three other spinning sessions, 2.7 ms alternating without spinning).
    """
    import onnxruntime as ort

    path = Path(path)
    if not path.is_file():
        raise ArtifactError(f"ONNX file {str(path)!r} does not exist.")
    options = ort.SessionOptions()
    options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    if threads is not None:
        options.intra_op_num_threads = int(threads)
        options.inter_op_num_threads = 1
    if not spinning:
        options.add_session_config_entry("session.intra_op.allow_spinning", "0")
    if optimized_path is not None:
        options.optimized_model_filepath = str(optimized_path)
    options.log_severity_level = 3
    return ort.InferenceSession(str(path), sess_options=options, providers=["CPUExecutionProvider"])


def optimized_op_counts(path: str | Path, *, threads: int = 1) -> collections.Counter[str]:
    """How many of each operator onnxruntime runs after its graph optimizations (fusions included)."""
    import onnx

    with tempfile.TemporaryDirectory(prefix="torchslim-ort-") as tmp:
        opt = Path(tmp) / "optimized.onnx"
        ort_session(path, threads=threads, optimized_path=opt)
        graph = onnx.load(str(opt)).graph
    return collections.Counter(n.op_type for n in graph.node)


def integer_op_summary(path: str | Path) -> dict[str, Any]:
    """Integer vs float compute operators in onnxruntime's optimized graph of `path`."""
    counts = optimized_op_counts(path)
    integer = {k: v for k, v in counts.items() if k in INTEGER_OPS}
    floating = {k: v for k, v in counts.items() if k in FLOAT_COMPUTE_OPS}
    return {"integer_ops": integer, "float_compute_ops": floating, "all_ops": dict(counts)}


def onnx_feeds(session: Any, example_input: Any) -> dict[str, np.ndarray]:
    """Input arrays for `session` from a tensor, a tuple of tensors or a mapping."""
    names = [i.name for i in session.get_inputs()]

    def arr(t: Any) -> np.ndarray:
        return t.detach().cpu().numpy() if isinstance(t, Tensor) else np.asarray(t)

    if isinstance(example_input, Mapping):
        missing = [n for n in names if n not in example_input]
        if missing:
            raise ConfigError(f"ONNX inputs {missing} are missing from the given inputs {list(example_input)}.")
        return {n: arr(example_input[n]) for n in names}
    values = [example_input] if isinstance(example_input, Tensor) else list(example_input)
    if len(values) != len(names):
        raise ConfigError(f"The ONNX model takes {len(names)} inputs {names}, got {len(values)}.")
    return {n: arr(v) for n, v in zip(names, values)}


def run_onnx(path: str | Path, inputs: Any, *, threads: int | None = None) -> np.ndarray:
    """The first output of the ONNX model at `path` on `inputs`."""
    session = ort_session(path, threads=threads)
    return session.run(None, onnx_feeds(session, inputs))[0]


@dataclasses.dataclass
class ParityReport:
    """ONNX output versus the PyTorch (torchslim-simulated) output on the same inputs.

    For a quantized model the tolerance is ``steps * step`` with ``step`` the step of an 8-bit
    quantizer of the reference output's range, ``(max - min) / 255``; for a float model it is
    ``atol + rtol * |reference|`` elementwise.
    """

    max_abs_diff: float
    step: float | None
    tolerance: float
    quantized: bool
    ok: bool
    max_diff_in_steps: float | None = None

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)


def check_parity(
    model: nn.Module,
    path: str | Path,
    inputs: Any,
    *,
    steps: float = 2.0,
    rtol: float = 1e-3,
    atol: float = 1e-5,
    threads: int | None = None,
) -> ParityReport:
    """Compare onnxruntime's output of `path` with `model`'s output on `inputs` (see :class:`ParityReport`)."""
    flags = [(m, m.training) for m in model.modules()]
    try:
        model.eval()
        with torch.no_grad():
            if isinstance(inputs, Tensor):
                out = model(inputs)
            elif isinstance(inputs, Mapping):
                out = model(**inputs)
            else:
                out = model(*inputs)
    finally:
        for module, flag in flags:
            module.training = flag
    if not isinstance(out, Tensor):
        out = getattr(out, "logits", None) if not isinstance(out, (tuple, list)) else out[0]
    if not isinstance(out, Tensor):
        raise ModelError(f"check_parity: cannot find the output tensor of {type(model).__name__}.")
    ref = out.detach().float().cpu().numpy()
    got = run_onnx(path, inputs, threads=threads).astype(np.float32)
    if got.shape != ref.shape:
        raise ModelError(f"ONNX output shape {list(got.shape)} differs from the model's {list(ref.shape)}.")
    diff = np.abs(got - ref)
    max_diff = float(diff.max()) if diff.size else 0.0
    quantized = any(True for _ in _export_layers(model))
    if quantized:
        step = float(ref.max() - ref.min()) / 255.0 if ref.size else 0.0
        tolerance = steps * step
        return ParityReport(max_diff, step, tolerance, True, max_diff <= tolerance + 1e-12,
                            max_diff / step if step > 0 else None)
    bound = atol + rtol * np.abs(ref)
    return ParityReport(max_diff, None, float(bound.max()) if bound.size else atol, False, bool((diff <= bound).all()))
