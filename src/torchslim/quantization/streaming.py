"""Memory-bounded int8 post-training quantization of a sharded safetensors decoder, one block at a time.

A Hugging Face causal decoder (Llama, Mistral, Qwen2 and the other models whose ``model.model`` has
``embed_tokens``, ``layers``, ``norm`` and ``rotary_emb``) saved as sharded safetensors
(``model.safetensors.index.json`` + shards, or one ``model.safetensors``) is quantized without ever
holding the model: its skeleton lives on the ``meta`` device; each stage (the embedding, every
decoder block, the final norm and LM head) is materialised alone, its weights read lazily with
``safetensors.safe_open`` (only that block's tensors, from the shards that hold them), quantized,
written and released before the next one is read.

Calibration activations are carried block to block, as in sequential GPTQ (Frantar et al. 2022,
"GPTQ: accurate post-training quantization for generative pre-trained transformers"): the inputs of
block ``i`` are the outputs of the *quantized* blocks before it, so each block's activation ranges
are observed on what the quantized model really feeds it. A float chain is carried beside it, so the
result reports the SQNR of every block and of the final logits against the float model, and the
top-1 agreement of next-token predictions.

Weights: symmetric per-output-channel (per-row for the embedding) int8 round-to-nearest,
``s_c = max_j |W_cj| / 127``, ``q = clamp(round(W / s_c), -128, 127)`` (Jacob et al. 2018, eq. 1
with ``z = 0``), through :func:`~torchslim.quantization.functional.quantize_tensor`. Activations:
each linear layer's input range is observed on the calibration data and stored as a per-tensor
symmetric scale ``s_in = max |x| / 127`` (static int8 inputs); with ``static_activations=True`` the
quantized chain also fake-quantizes those inputs, so the reported SQNR covers W8A8.

Output: sharded safetensors (``shard-00001.safetensors``, ... + ``model.safetensors.index.json``,
the Hugging Face index layout) holding ``<linear>.weight_q`` (int8), ``<linear>.weight_scale``
(float32, one per output channel), ``<linear>.input_scale`` (float32), the embedding's and LM head's
``weight_q`` / ``weight_scale`` and every other tensor (norms, biases) in float32. Shards are written
atomically as soon as they fill; :func:`dequantized_state_dict` reads them back.
"""

from __future__ import annotations

import contextlib
import dataclasses
import json
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import torch
from safetensors import safe_open
from torch import Tensor, nn

from torchslim.core.errors import ArtifactError, ConfigError, ModelError
from torchslim.io.atomic import write_json, write_safetensors
from torchslim.quantization.functional import as_granularity, dequantize, quantize_tensor, sqnr_db

INDEX = "model.safetensors.index.json"
FORMAT = "torchslim.streaming_int8"
SINGLE = "model.safetensors"


class LazyCheckpoint:
    """The tensors of a sharded (or single-file) safetensors checkpoint, read on demand."""

    def __init__(self, directory: str | Path) -> None:
        self.directory = Path(directory)
        index = self.directory / INDEX
        if index.is_file():
            try:
                weight_map = json.loads(index.read_text(encoding="utf-8"))["weight_map"]
            except (OSError, ValueError, KeyError) as exc:
                raise ArtifactError(f"{str(index)!r} is not a safetensors index with a weight_map: {exc}.") from None
            self.weight_map: dict[str, str] = {str(k): str(v) for k, v in weight_map.items()}
        elif (self.directory / SINGLE).is_file():
            with safe_open(str(self.directory / SINGLE), framework="pt") as handle:
                self.weight_map = {name: SINGLE for name in handle.keys()}  # noqa: SIM118  # safe_open has no __iter__
        else:
            raise ArtifactError(f"{str(self.directory)!r} holds neither {INDEX} nor {SINGLE}.")
        self.files = sorted(set(self.weight_map.values()))
        for name in self.files:
            if "/" in name or "\\" in name or name.startswith(".") or not (self.directory / name).is_file():
                raise ArtifactError(f"{str(index)!r} names a missing or invalid shard {name!r}.")

    @property
    def largest_shard_bytes(self) -> int:
        return max((self.directory / name).stat().st_size for name in self.files)

    @property
    def total_bytes(self) -> int:
        return sum((self.directory / name).stat().st_size for name in self.files)

    def names(self, prefix: str) -> list[str]:
        """Tensor names under `prefix` (a module path ending in ``.``, or an exact name)."""
        return sorted(n for n in self.weight_map if n.startswith(prefix) or n == prefix.rstrip("."))

    def _by_file(self, names: list[str]) -> dict[str, list[str]]:
        by_file: dict[str, list[str]] = {}
        for name in names:
            if name not in self.weight_map:
                raise ArtifactError(f"Tensor {name!r} is not in the checkpoint {str(self.directory)!r}.")
            by_file.setdefault(self.weight_map[name], []).append(name)
        return by_file

    def read(self, names: list[str]) -> dict[str, Tensor]:
        """Copy the named tensors into memory, opening each shard that holds some of them once."""
        out: dict[str, Tensor] = {}
        for file, wanted in self._by_file(names).items():
            with safe_open(str(self.directory / file), framework="pt") as handle:
                for name in wanted:
                    out[name] = handle.get_tensor(name)
        return out

    def read_into(self, targets: dict[str, Tensor]) -> None:
        """Copy each named stored tensor into its target (``copy_``: converts the dtype), one tensor in
        memory at a time; every name is checked before anything is read."""
        for file, wanted in self._by_file(list(targets)).items():
            with safe_open(str(self.directory / file), framework="pt") as handle:
                for name in wanted:
                    target = targets[name]
                    stored = handle.get_tensor(name)
                    if tuple(stored.shape) != tuple(target.shape):
                        raise ArtifactError(
                            f"Tensor {name!r} in {file!r} has shape {tuple(stored.shape)}, the model expects "
                            f"{tuple(target.shape)}."
                        )
                    with torch.no_grad():
                        target.copy_(stored)
                    del stored


class ShardWriter:
    """Writes tensors into shards of at most `max_bytes` (one tensor larger than that gets its own shard)."""

    def __init__(self, directory: Path, max_bytes: int) -> None:
        self.directory = directory
        self.max_bytes = max_bytes
        self.pending: dict[str, Tensor] = {}
        self.pending_bytes = 0
        self.shards: list[tuple[str, list[str], int]] = []

    def add(self, name: str, tensor: Tensor) -> None:
        size = tensor.numel() * tensor.element_size()
        if self.pending and self.pending_bytes + size > self.max_bytes:
            self.flush()
        self.pending[name] = tensor.detach().contiguous()  # callers pass tensors nobody changes afterwards
        self.pending_bytes += size

    def flush(self) -> None:
        if not self.pending:
            return
        name = f"shard-{len(self.shards) + 1:05d}.safetensors"
        write_safetensors(self.directory / name, self.pending, metadata={"format": FORMAT})
        self.shards.append((name, list(self.pending), self.pending_bytes))
        self.pending, self.pending_bytes = {}, 0

    @property
    def total_bytes(self) -> int:
        return sum((self.directory / name).stat().st_size for name, _, _ in self.shards)

    @property
    def largest_bytes(self) -> int:
        return max((self.directory / name).stat().st_size for name, _, _ in self.shards)

    def close(self, metadata: dict[str, Any]) -> None:
        """Flush, then write the index (``metadata`` + ``weight_map``) last: a complete index means complete shards."""
        self.flush()
        weight_map = {tensor: shard for shard, names, _ in self.shards for tensor in names}
        total = sum(size for _, _, size in self.shards)
        write_json(self.directory / INDEX, {"metadata": {**metadata, "total_size": total}, "weight_map": weight_map})


@dataclasses.dataclass(frozen=True)
class BlockResult:
    """One quantized stage: its name, quantized linear layers, SQNR (dB) of its output on the quantized
    chain against the same float block on the same input, and seconds."""

    name: str
    layers: int
    sqnr_db: float
    seconds: float


@dataclasses.dataclass(frozen=True)
class StreamingResult:
    """What :func:`quantize_checkpoint` did: per-block results, end-to-end quality, sizes in bytes."""

    blocks: list[BlockResult]
    logits_sqnr_db: float
    top1_agreement: float
    source_bytes: int
    largest_source_shard_bytes: int
    output_bytes: int
    largest_output_shard_bytes: int
    parameters: int
    seconds: float

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)


@dataclasses.dataclass
class _Run:
    """The state of one streaming quantization: source, writer, the two calibration chains."""

    source: LazyCheckpoint
    writer: ShardWriter
    static_activations: bool
    float_chain: Tensor
    quant_chain: Tensor
    position_embeddings: Any = None
    parameters: int = 0
    blocks: list[BlockResult] = dataclasses.field(default_factory=list)


@dataclasses.dataclass(frozen=True)
class DecoderParts:
    """The stages of a causal decoder's skeleton, in the order they run."""

    embed: nn.Embedding
    layers: nn.ModuleList
    norm: nn.Module
    rotary: nn.Module
    head: nn.Linear
    config: Any


def decoder_parts(model: nn.Module) -> DecoderParts:
    """The stages of a causal LM (``model.model.{embed_tokens, layers, norm, rotary_emb}``, ``lm_head``);
    a :class:`ModelError` for another layout."""
    decoder = getattr(model, "model", None)
    needed = ("embed_tokens", "layers", "norm", "rotary_emb")
    head = getattr(model, "lm_head", None)
    if decoder is None or any(not hasattr(decoder, n) for n in needed) or not isinstance(head, nn.Linear):
        raise ModelError(
            f"{type(model).__name__} is not a causal decoder with model.{{{', '.join(needed)}}} and lm_head; "
            "streaming quantization supports the Llama family layout (Llama, Mistral, Qwen2, ...)."
        )
    return DecoderParts(
        embed=decoder.embed_tokens,
        layers=decoder.layers,
        norm=decoder.norm,
        rotary=decoder.rotary_emb,
        head=head,
        config=getattr(model, "config", None),
    )


@contextlib.contextmanager
def materialized(module: nn.Module, prefix: str, source: LazyCheckpoint, **rename: str) -> Iterator[nn.Module]:
    """Give the meta-device `module` real storage, load its tensors (``prefix + name``, or a `rename`d
    name) from `source`, yield it, and send it back to ``meta`` (freeing the memory) afterwards."""
    module.to_empty(device="cpu")
    targets = {rename.get(key, prefix + key): value for key, value in module.state_dict(keep_vars=True).items()}
    try:
        source.read_into(targets)  # one stored tensor at a time, straight into the module's float32 storage
    except ArtifactError as exc:
        module.to("meta")
        raise ModelError(f"Cannot load {prefix.rstrip('.') or type(module).__name__}: {exc}") from None
    del targets
    try:
        yield module
    finally:
        module.to("meta")


CHUNK_ELEMENTS = 1 << 22
"""Rows are quantized in chunks of about this many elements, so temporaries stay ~16 MB per chunk."""


def quantize_rows_(weight: Tensor, bits: int) -> tuple[Tensor, Tensor]:
    """Int8 codes and float32 per-row scales of a 2-D float weight (symmetric round-to-nearest); the
    weight is overwritten, in place, by its dequantized values. Chunks of rows give the same result
    as the whole matrix at once (every row has its own scale)."""
    g = as_granularity("per_channel", axis=0)
    rows = max(1, CHUNK_ELEMENTS // max(1, weight.shape[1]))
    codes = torch.empty(weight.shape, dtype=torch.int8)
    scales = torch.empty(weight.shape[0], dtype=torch.float32)
    with torch.no_grad():
        for start in range(0, weight.shape[0], rows):
            part = weight[start : start + rows]
            q, scale, zero = quantize_tensor(part.detach().float(), bits=bits, symmetric=True, granularity=g)
            codes[start : start + rows] = q
            scales[start : start + rows] = scale.reshape(-1)
            part.copy_(dequantize(q, scale, zero, granularity=g))
    return codes, scales


def _observe_inputs(layers: dict[str, nn.Linear]) -> tuple[dict[str, float], list[Any]]:
    """Forward pre-hooks recording each linear layer's largest absolute input; returns (ranges, handles)."""
    ranges: dict[str, float] = {}

    def hook_for(name: str) -> Callable[[nn.Module, tuple[Any, ...]], None]:
        def hook(module: nn.Module, args: tuple[Any, ...]) -> None:
            ranges[name] = max(ranges.get(name, 0.0), float(args[0].detach().abs().max()))

        return hook

    return ranges, [layer.register_forward_pre_hook(hook_for(name)) for name, layer in layers.items()]


def _fake_quant_inputs(layers: dict[str, nn.Linear], scales: dict[str, float]) -> list[Any]:
    """Forward pre-hooks that round each linear layer's input to its static int8 grid."""

    def hook_for(scale: float) -> Callable[[nn.Module, tuple[Any, ...]], tuple[Any, ...]]:
        def hook(module: nn.Module, args: tuple[Any, ...]) -> tuple[Any, ...]:
            return (torch.clamp(torch.round(args[0] / scale), -128, 127) * scale, *args[1:])

        return hook

    return [layer.register_forward_pre_hook(hook_for(scales[name])) for name, layer in layers.items()]


def _call_block(block: nn.Module, hidden: Tensor, run: _Run) -> Tensor:
    out = block(hidden, position_embeddings=run.position_embeddings)
    return out[0] if isinstance(out, tuple) else out


def _quantize_block(block: nn.Module, prefix: str, run: _Run, bits: int) -> None:
    # long: the one stage every decoder block goes through, in the order the module docstring gives
    """Quantize one materialised decoder block: float chain, observed quantized chain, weights, outputs."""
    started = time.perf_counter()
    linears = {name: m for name, m in block.named_modules() if isinstance(m, nn.Linear)}
    with torch.no_grad():
        run.float_chain = _call_block(block, run.float_chain, run)
        ranges, handles = _observe_inputs(linears)
        reference = _call_block(block, run.quant_chain, run)  # float weights on the quantized chain's inputs
        for handle in handles:
            handle.remove()
        scales = {name: max(value, 1e-8) / 127.0 for name, value in ranges.items()}
        for name, layer in linears.items():
            codes, scale = quantize_rows_(layer.weight, bits)
            run.writer.add(f"{prefix}{name}.weight_q", codes)
            run.writer.add(f"{prefix}{name}.weight_scale", scale)
            run.writer.add(f"{prefix}{name}.input_scale", torch.tensor(scales[name], dtype=torch.float32))
        quantized = {f"{name}.weight" for name in linears}
        for key, value in block.state_dict().items():
            if key not in quantized:
                run.writer.add(prefix + key, value)
        handles = _fake_quant_inputs(linears, scales) if run.static_activations else []
        run.quant_chain = _call_block(block, run.quant_chain, run)
        for handle in handles:
            handle.remove()
    run.parameters += sum(p.numel() for p in block.parameters())
    run.blocks.append(
        BlockResult(
            prefix.rstrip("."), len(linears), sqnr_db(reference, run.quant_chain), time.perf_counter() - started
        )
    )


def _embed(parts: DecoderParts, ids: Tensor, run: _Run, bits: int) -> None:
    """The embedding stage: both chains start from the token embeddings (the quantized one dequantized)."""
    embed = parts.embed
    with materialized(embed, "model.embed_tokens.", run.source):
        run.float_chain = embed(ids).float()
        codes, scale = quantize_rows_(embed.weight, bits)
        run.writer.add("model.embed_tokens.weight_q", codes)
        run.writer.add("model.embed_tokens.weight_scale", scale)
        run.quant_chain = embed(ids).float()
        run.parameters += embed.weight.numel()
    rotary = type(parts.rotary)(config=parts.config)  # small, and its buffers are not in the checkpoint
    positions = torch.arange(ids.shape[1]).unsqueeze(0)
    run.position_embeddings = rotary(run.float_chain, position_ids=positions)


def _head(parts: DecoderParts, run: _Run, bits: int) -> tuple[float, float]:
    """Final norm and LM head (tied to the embedding when the config says so): logits SQNR and top-1 agreement."""
    tied = bool(getattr(parts.config, "tie_word_embeddings", False)) and "lm_head.weight" not in run.source.weight_map
    head = parts.head
    with materialized(parts.norm, "model.norm.", run.source) as norm:
        for key, value in norm.state_dict().items():
            run.writer.add(f"model.norm.{key}", value)
        float_hidden, quant_hidden = norm(run.float_chain), norm(run.quant_chain)
        run.parameters += sum(p.numel() for p in norm.parameters())
    rename = {"weight": "model.embed_tokens.weight"} if tied else {}
    with materialized(head, "lm_head.", run.source, **rename), torch.no_grad():
        float_logits = head(float_hidden)
        input_scale = max(float(quant_hidden.abs().max()), 1e-8) / 127.0
        run.writer.add("lm_head.input_scale", torch.tensor(input_scale, dtype=torch.float32))
        codes, scale = quantize_rows_(head.weight, bits)
        if not tied:  # a tied head computes with the int8 embedding, which is stored already
            run.writer.add("lm_head.weight_q", codes)
            run.writer.add("lm_head.weight_scale", scale)
            run.parameters += head.weight.numel()
        if run.static_activations:
            quant_hidden = torch.clamp(torch.round(quant_hidden / input_scale), -128, 127) * input_scale
        quant_logits = head(quant_hidden)
    agreement = float((float_logits.argmax(-1) == quant_logits.argmax(-1)).float().mean())
    return sqnr_db(float_logits, quant_logits), agreement


def skeleton_from(directory: Path) -> nn.Module:
    """The model of ``directory/config.json`` on the meta device (no memory for weights)."""
    from transformers import AutoConfig, AutoModelForCausalLM

    config = AutoConfig.from_pretrained(str(directory))
    with torch.device("meta"):
        return AutoModelForCausalLM.from_config(config, dtype=torch.float32)


def quantize_checkpoint(
    source: str | Path,
    out: str | Path,
    *,
    calibration: Tensor,
    bits: int = 8,
    max_shard_bytes: int = 512 * 2**20,
    static_activations: bool = False,
    on_block: Callable[[BlockResult], None] | None = None,
) -> StreamingResult:
    # long: the pipeline in order (skeleton, embedding, blocks, head, index) with its argument checks
    """Quantize the causal decoder saved in `source` (config.json + sharded safetensors) into `out`, one
    block in memory at a time (see the module docstring).

    Args:
        source: a Hugging Face model directory: ``config.json`` and ``model.safetensors.index.json`` +
            shards (or one ``model.safetensors``).
        out: the directory to write (created; ``config.json`` is copied beside the int8 shards).
        calibration: token ids ``[sequences, length]`` (int64) the chains are run on.
        bits: weight bits (2-8).
        max_shard_bytes: the largest output shard.
        static_activations: also fake-quantize every linear layer's input on its calibrated int8 grid.
        on_block: called with each block's result as soon as it is written (progress, tests).
    """
    started = time.perf_counter()
    source_dir, out_dir = Path(source), Path(out)
    if calibration.dtype != torch.long or calibration.dim() != 2 or calibration.numel() == 0:
        raise ConfigError(
            "quantize_checkpoint(calibration=...) must be non-empty int64 token ids [sequences, length], got "
            f"{calibration.dtype} {tuple(calibration.shape)}."
        )
    if not 2 <= bits <= 8:
        raise ConfigError(f"bits={bits} must be in 2..8 for int8 storage.")
    checkpoint = LazyCheckpoint(source_dir)
    parts = decoder_parts(skeleton_from(source_dir))
    out_dir.mkdir(parents=True, exist_ok=True)
    run = _Run(checkpoint, ShardWriter(out_dir, max_shard_bytes), static_activations, calibration, calibration)
    with torch.no_grad():
        _embed(parts, calibration, run, bits)
        for i, block in enumerate(parts.layers):
            with materialized(block, f"model.layers.{i}.", checkpoint):
                _quantize_block(block, f"model.layers.{i}.", run, bits)
            if on_block is not None:
                on_block(run.blocks[-1])
        logits_sqnr, agreement = _head(parts, run, bits)
    run.writer.close({"format": FORMAT, "bits": str(bits), "weights": "symmetric per-output-channel int8"})
    (out_dir / "config.json").write_text((source_dir / "config.json").read_text(encoding="utf-8"), encoding="utf-8")
    return StreamingResult(
        blocks=run.blocks,
        logits_sqnr_db=logits_sqnr,
        top1_agreement=agreement,
        source_bytes=checkpoint.total_bytes,
        largest_source_shard_bytes=checkpoint.largest_shard_bytes,
        output_bytes=run.writer.total_bytes,
        largest_output_shard_bytes=run.writer.largest_bytes,
        parameters=run.parameters,
        seconds=time.perf_counter() - started,
    )


def dequantized_state_dict(directory: str | Path) -> dict[str, Tensor]:
    """Float tensors of a :func:`quantize_checkpoint` output: ``weight_q * weight_scale`` as ``weight``,
    other tensors as stored (input scales dropped). Reads everything: for checks on small models."""
    source = LazyCheckpoint(directory)
    tensors = source.read(list(source.weight_map))
    out: dict[str, Tensor] = {}
    for name, tensor in tensors.items():
        if name.endswith(".weight_q"):
            base = name[: -len("_q")]
            out[base] = tensor.float() * tensors[base + "_scale"].reshape(-1, 1)
        elif not name.endswith((".weight_scale", ".input_scale")):
            out[name] = tensor
    return out


__all__ = [
    "BlockResult",
    "LazyCheckpoint",
    "ShardWriter",
    "StreamingResult",
    "dequantized_state_dict",
    "quantize_checkpoint",
]
