"""Parameter counts: total (unique) parameters, nonzero effective weights, and per-layer counts.

* ``count_parameters`` counts every stored learnable parameter once, even when it is shared by
  several modules (tied weights).
* ``count_nonzero`` counts the nonzeros of the *effective* weights the model computes with: for a
  tensor parametrized with ``torch.nn.utils.parametrize`` (e.g. a pruning mask), the nonzeros of the
  parametrized (masked) tensor; for a ``torch.nn.utils.prune``-style ``weight_orig``/``weight_mask``
  pair, the nonzeros of ``weight_orig * weight_mask``.

Sparsity of a layer is ``1 - nonzero / params``.
"""

from __future__ import annotations

import dataclasses

from torch import nn

from torchslim.measure._util import display_name, is_parametrization_list, own_weights


@dataclasses.dataclass(frozen=True)
class LayerParams:
    """Parameters one module owns directly (a parametrized weight belongs to its owner module)."""

    name: str
    type: str
    params: int
    nonzero: int

    @property
    def sparsity(self) -> float:
        return 0.0 if self.params == 0 else 1.0 - self.nonzero / self.params


def count_layer_parameters(model: nn.Module) -> dict[str, LayerParams]:
    """Per-module parameter and nonzero counts, keyed by qualified module name (``"(root)"`` for the
    top module), in model order. Only modules that own parameters appear. A shared parameter is
    counted at its first owner, so the values sum to :func:`count_parameters`/:func:`count_nonzero`."""
    seen: set[int] = set()
    out: dict[str, LayerParams] = {}
    for name, module in model.named_modules():
        if is_parametrization_list(module):
            continue
        params = 0
        nonzero = 0
        for _tname, effective, stored in own_weights(module):
            fresh = [p for p in stored if id(p) not in seen]
            if stored and not fresh:
                continue  # shared with an earlier module: counted there
            for p in fresh:
                seen.add(id(p))
                params += p.numel()
            nonzero += int(effective.count_nonzero().item())
        if params or nonzero:
            out[display_name(name)] = LayerParams(display_name(name), type(module).__name__, params, nonzero)
    return out


def count_parameters(model: nn.Module) -> int:
    """Number of weights of the model, each shared tensor counted once (a quantized layer's integer
    codes count as its weights; masked weights count in full)."""
    return sum(layer.params for layer in count_layer_parameters(model).values())


def count_nonzero(model: nn.Module) -> int:
    """Number of nonzero entries of the effective (masked / parametrized) parameters."""
    return sum(layer.nonzero for layer in count_layer_parameters(model).values())
