"""The ``entropy_code`` step: quantized layers store their codes entropy coded.

The last stage of Deep Compression (Han et al. 2016, section 4: Huffman coding of the indices and of
the sparse-index gaps), with constriction's ANS coder instead of Huffman
(:mod:`torchslim.io.entropy`): every quantized layer of the model (``kmeans_quant``,
``pow2_quant``, ``quantize``) is marked, and from then on its stored state holds the codes as an
entropy-coded stream, the smallest of a dense or a sparse (gaps + symbols) form, or the packed
codes when those are smaller. The model computes exactly as before; only the artifact changes,
and the report's bytes are those of the real files. The mark is a plan entry, so a loaded model is
marked again and saves the same way.

Unstructured-sparse float layers (pruning without quantization) keep io's own sparse codecs
(bitmask / index); a model without quantized layers is left as it is, with a note.
"""

from __future__ import annotations

import copy
import dataclasses
from typing import Any, ClassVar

from torch import nn

from torchslim.core.config import TechniqueConfig
from torchslim.core.context import Context
from torchslim.core.errors import ModelError
from torchslim.core.plans import append_plan_entry, register_plan_replay
from torchslim.core.targets import Targets
from torchslim.core.technique import TECHNIQUES, StepOutcome
from torchslim.quantization.quantized import QuantizedMixin
from torchslim.quantization.stored import ENTROPY_ATTRIBUTE

PLAN_KIND = "entropy_code"


@dataclasses.dataclass(frozen=True, kw_only=True)
class EntropyCode(TechniqueConfig):
    """Entropy coding of the stored weight codes (ANS; Duda 2013) - Deep Compression's last stage.

    Code length of a stream of symbols with histogram ``p``: about ``n * H(p)`` bits,
    ``H(p) = -sum_s p_s log2 p_s`` (Shannon 1948), instead of ``n * b`` packed; pruned layers code
    the positions of their non-zero codes as gaps (Han et al. 2016, section 4).

    Attributes:
        enabled: mark the layers (false removes an earlier mark, back to packed codes).
    """

    name: ClassVar[str] = "entropy_code"
    summary: ClassVar[str] = (
        "Entropy-code the stored weight codes and sparse-index gaps of quantized layers (constriction ANS); "
        "smaller artifact, same outputs."
    )

    enabled: bool = True


def mark_layers(model: nn.Module, names: list[str], enabled: bool) -> None:
    """Set the entropy mark on the quantized layers `names` of `model`."""
    for name in names:
        try:
            layer = model.get_submodule(name)
        except AttributeError:
            raise ModelError(f"{PLAN_KIND} plan entry: the model has no layer {name!r}.") from None
        if not isinstance(layer, QuantizedMixin):
            raise ModelError(f"{PLAN_KIND} plan entry: layer {name!r} is not a quantized layer.")
        setattr(layer, ENTROPY_ATTRIBUTE, bool(enabled))


@TECHNIQUES.handles(EntropyCode)
def entropy_code_handler(
    model: nn.Module, config: EntropyCode, *, targets: Targets | None, context: Context
) -> StepOutcome:
    """Mark every selected quantized layer of a copy of `model` (see the module docstring)."""
    work = copy.deepcopy(model)
    selected = (targets or Targets()).resolve(work)
    names = [name for name, module in selected if isinstance(module, QuantizedMixin)]
    info: dict[str, Any] = {"coder": "constriction ANS", "layers": len(names)}
    if not names:
        info["notes"] = ["no quantized layers: nothing to entropy-code (float tensors keep the sparse codecs)"]
        return StepOutcome(model=work, info=info)
    mark_layers(work, names, config.enabled)
    append_plan_entry(work, {"kind": PLAN_KIND, "layers": names, "enabled": config.enabled})
    return StepOutcome(model=work, info=info)


@register_plan_replay(PLAN_KIND)
def replay_entropy_code(model: nn.Module, entry: dict[str, Any]) -> nn.Module:
    """Plan replay: mark the recorded layers again (the stored meta says how each was written)."""
    names = entry.get("layers")
    if not isinstance(names, list) or not all(isinstance(n, str) for n in names):
        raise ModelError(f"{PLAN_KIND} plan entry: 'layers' must be a list of layer names.")
    mark_layers(model, names, bool(entry.get("enabled", True)))
    return model


__all__ = ["PLAN_KIND", "EntropyCode", "entropy_code_handler", "mark_layers", "replay_entropy_code"]
