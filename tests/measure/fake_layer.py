"""A minimal compressed layer that implements only the public layer contract
(:class:`torchslim.core.layer.CompressedLayer`), with none of the quantization package's internals.

Measurement, artifacts and deployment must handle it through the contract alone: it has no
``weight_q``, ``weight_bits``, ``activation_bits`` or ``torchslim_*`` attributes on purpose. Its
weight is stored as ``bits``-bit integer codes with one float scale; it computes with the
dequantized weight. Shared by tests/measure, tests/io and tests/deploy (loaded by path).
"""

from __future__ import annotations

from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from torchslim.core.layer import OnnxForm, StorageBits


class FakeCompressedLinear(nn.Module):
    def __init__(
        self, weight: Tensor, bias: Tensor | None = None, *, bits: int = 4, input_bits: int | None = None
    ) -> None:
        super().__init__()
        top = max(2 ** (bits - 1) - 1, 1)
        scale = weight.detach().abs().max().clamp_min(1e-8) / top
        codes = torch.clamp(torch.round(weight.detach() / scale), -top - 1, top).to(torch.int8)
        self.register_buffer("codes", codes)
        self.register_buffer("scale", scale.reshape(()))
        self.bias = nn.Parameter(bias.detach().clone()) if bias is not None else None
        self.bits = bits
        self.input_bits = input_bits
        self.onnx_calls: list[bool] = []

    @classmethod
    def from_linear(cls, linear: nn.Linear, *, bits: int = 4, input_bits: int | None = None) -> FakeCompressedLinear:
        return cls(linear.weight, linear.bias, bits=bits, input_bits=input_bits)

    # -- the layer contract ---------------------------------------------------------------------
    def stored_state(self, prefix: str) -> tuple[dict[str, Tensor], dict[str, Any]]:
        tensors = {prefix + "codes": self.codes.clone(), prefix + "scale": self.scale.clone()}
        if self.bias is not None:
            tensors[prefix + "bias"] = self.bias.detach().clone()
        return tensors, {"codec": "fake-int", "bits": self.bits}

    def load_stored_state(self, prefix: str, tensors: dict[str, Tensor], meta: dict[str, Any]) -> None:
        assert meta["codec"] == "fake-int" and meta["bits"] == self.bits
        with torch.no_grad():
            self.codes.copy_(tensors[prefix + "codes"])
            self.scale.copy_(tensors[prefix + "scale"])
            if self.bias is not None:
                self.bias.copy_(tensors[prefix + "bias"])

    def effective_weight(self) -> Tensor:
        return self.codes.float() * self.scale

    def stored_weight(self) -> Tensor:
        return self.codes

    def storage_bits(self) -> StorageBits:
        return StorageBits(weight=self.bits, activation=self.input_bits)

    def layout(self) -> dict[str, Any]:
        return {"shape": list(self.codes.shape), "bits": self.bits, "bias": self.bias is not None}

    def onnx_form(self, enabled: bool) -> OnnxForm:
        self.onnx_calls.append(enabled)
        return OnnxForm(integer_weights=False, details={"bits": self.bits})

    def forward(self, x: Tensor) -> Tensor:
        return F.linear(x, self.effective_weight(), self.bias)


def compress_linears(model: nn.Module, *, bits: int, input_bits: int | None = None) -> nn.Module:
    """Replace every ``nn.Linear`` child of `model` (recursively) by a :class:`FakeCompressedLinear`."""
    for name, child in list(model.named_children()):
        if isinstance(child, nn.Linear):
            setattr(model, name, FakeCompressedLinear.from_linear(child, bits=bits, input_bits=input_bits))
        else:
            compress_linears(child, bits=bits, input_bits=input_bits)
    return model
