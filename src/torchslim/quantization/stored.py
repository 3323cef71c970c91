"""What a quantized layer stores in an artifact, and how it is read back.

Weight codes are stored **packed** (``bits`` per code, e.g. two 4-bit codes per byte, see
:mod:`~torchslim.quantization.packing`), without the repeated columns of split outlier channels;
scales always, zero points only for asymmetric weights, then the bias, the input / output
quantization parameters and any other state of the layer's children. A layer marked by the
``entropy_code`` step (:mod:`~torchslim.quantization.entropy_code`) stores its codes entropy coded
instead (``weight_entropy``, :mod:`torchslim.io.entropy`) when that is smaller.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import torch
from torch import Tensor

from torchslim.core.errors import ArtifactError
from torchslim.io.entropy import decode_symbols, encode_symbols
from torchslim.quantization.outliers import split_multipliers
from torchslim.quantization.packing import pack_codes, packed_nbytes, signed_codes, unpack_codes, unsigned_codes
from torchslim.quantization.specs import OWN_KEYS

if TYPE_CHECKING:
    from torchslim.quantization.quantized import QuantizedMixin

CODEC = "torchslim-quantized-layer"
ENTROPY_ATTRIBUTE = "entropy_coded"
"""Plain module attribute: True when the layer stores its codes entropy coded (set by ``entropy_code``)."""
STORED_KEYS = (
    "weight_packed",
    "weight_entropy",
    "weight_scale",
    "weight_zero_point",
    "bias",
    "input_scale",
    "input_zero_point",
    "input_split",
    "output_scale",
    "output_zero_point",
)


def stored_state(layer: QuantizedMixin, prefix: str) -> tuple[dict[str, Tensor], dict[str, Any]]:
    """The tensors to store (keys start with `prefix`) and the codec description."""

    wq = layer.stored_weight()
    bits = layer.weight_spec.bits
    tensors: dict[str, Tensor] = {prefix + "weight_scale": layer.weight_scale.detach().clone()}
    entropy = None
    if layer.__dict__.get(ENTROPY_ATTRIBUTE):
        blob, entropy = encode_symbols(unsigned_codes(wq, bits), 2**bits)
        if blob.size < packed_nbytes(wq.numel(), bits):
            tensors[prefix + "weight_entropy"] = torch.from_numpy(blob)
        else:
            entropy = None  # packed codes are smaller (a small or high-entropy layer)
    if entropy is None:
        tensors[prefix + "weight_packed"] = pack_codes(wq.contiguous(), bits)
    if not layer.weight_spec.symmetric and bits > 1:
        tensors[prefix + "weight_zero_point"] = layer.weight_zero_point.detach().clone()
    bias = layer._parameters.get("bias_float")
    if bias is not None:
        tensors[prefix + "bias"] = bias.detach().clone()
    own = layer._buffers
    for key in ("input_scale", "input_zero_point", "input_split", "output_scale", "output_zero_point"):
        value = own.get(key)
        if value is not None:
            tensors[prefix + key] = value.detach().clone()
    for key, value in layer.state_dict().items():
        if key not in OWN_KEYS:
            tensors[prefix + key] = value.detach().clone()
    # the plan entry holds the full layout; the shape and bit-width here check the stored codes against it
    meta = {"packed": CODEC, "bits": bits, "numel": wq.numel(), "weight_shape": list(layer.weight_q.shape)}
    if entropy is not None:
        meta["entropy"] = entropy
    return tensors, meta


def _copy_checked(target: Tensor, value: Tensor | None, key: str) -> None:
    if value is None:
        raise ArtifactError(f"packed tensor {key!r} is missing.")
    if tuple(value.shape) != tuple(target.shape):
        raise ArtifactError(f"packed tensor {key!r} has shape {list(value.shape)}, expected {list(target.shape)}.")
    target.copy_(value.to(target.dtype))


def _read_codes(prefix: str, tensors: dict[str, Tensor], meta: dict[str, Any], bits: int, numel: int) -> Tensor:
    """The flat codes from the entropy-coded stream (``meta["entropy"]``) or the packed tensor."""
    entropy = meta.get("entropy")
    key = "weight_entropy" if entropy is not None else "weight_packed"
    stored = tensors.get(prefix + key)
    if stored is None:
        raise ArtifactError(f"layer {prefix[:-1]!r}: stored tensor {key!r} is missing.")
    if entropy is None:
        return unpack_codes(stored, bits, numel)
    if not isinstance(entropy, dict) or entropy.get("alphabet") != 2**bits or stored.dtype != torch.uint8:
        raise ValueError(f"the entropy-coded codes do not describe {bits}-bit codes.")
    return signed_codes(decode_symbols(stored.numpy(), entropy, numel), bits)


def _stored_codes(
    layer: QuantizedMixin, prefix: str, tensors: dict[str, Tensor], meta: dict[str, Any]
) -> tuple[Tensor, Tensor | None]:
    """The full code matrix (split columns repeated) and the split channel list, checked."""
    name = prefix[:-1]
    wq = layer.weight_q
    if list(meta.get("weight_shape", [])) != list(wq.shape) or int(meta.get("bits", -1)) != layer.weight_spec.bits:
        raise ArtifactError(
            f"layer {name!r}: stored weight {meta.get('weight_shape')} at {meta.get('bits')} bits does not "
            f"match the rebuilt layer {list(wq.shape)} at {layer.weight_spec.bits} bits."
        )
    stored_shape = layer.stored_weight().shape
    split = None
    if "input_split" in layer._buffers:
        split = tensors.get(prefix + "input_split")
        if split is None or split.numel() != wq.shape[1] - stored_shape[1]:
            raise ArtifactError(f"layer {name!r}: the split channel list is missing or has the wrong length.")
        if split.numel() and (int(split.min()) < 0 or int(split.max()) >= stored_shape[1]):
            raise ArtifactError(f"layer {name!r}: split channel index out of range [0, {stored_shape[1]}).")
    try:
        codes = _read_codes(prefix, tensors, meta, layer.weight_spec.bits, stored_shape.numel()).reshape(stored_shape)
    except ValueError as exc:
        raise ArtifactError(f"layer {name!r}: {exc}") from None
    if split is not None:
        codes = torch.cat([codes, codes[:, split.long()]], dim=1)
    return codes, split


def load_stored_state(layer: QuantizedMixin, prefix: str, tensors: dict[str, Tensor], meta: dict[str, Any]) -> None:
    """Inverse of :func:`stored_state`: fill `layer` (rebuilt, empty) from stored tensors."""
    codes, split = _stored_codes(layer, prefix, tensors, meta)
    with torch.no_grad():
        layer.weight_q.copy_(codes)
        _copy_checked(layer.weight_scale, tensors.get(prefix + "weight_scale"), prefix + "weight_scale")
        zp = tensors.get(prefix + "weight_zero_point")
        if zp is not None:
            _copy_checked(layer.weight_zero_point, zp, prefix + "weight_zero_point")
        else:
            layer.weight_zero_point.zero_()
        bias = layer._parameters.get("bias_float")
        if bias is not None:
            _copy_checked(bias, tensors.get(prefix + "bias"), prefix + "bias")
        own = layer._buffers
        for key in ("input_scale", "input_zero_point", "output_scale", "output_zero_point"):
            target = own.get(key)
            if target is not None:
                _copy_checked(target, tensors.get(prefix + key), prefix + key)
        if split is not None:
            _copy_checked(layer.input_split, split, prefix + "input_split")
            main, extra = split_multipliers(layer.stored_weight().shape[1], layer.input_split)
            layer._split_mult_main.copy_(main)
            layer._split_mult_extra.copy_(extra)
    rest = {
        k[len(prefix) :]: v for k, v in tensors.items() if k.startswith(prefix) and k[len(prefix) :] not in STORED_KEYS
    }
    if rest:
        _, unexpected = layer.load_state_dict(rest, strict=False)
        if unexpected:
            raise ArtifactError(f"layer {prefix[:-1]!r}: unexpected stored tensors {unexpected}.")


__all__ = ["CODEC", "ENTROPY_ATTRIBUTE", "load_stored_state", "stored_state"]
