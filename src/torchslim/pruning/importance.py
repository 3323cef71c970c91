"""Channel importance criteria of structured pruning, as Torch-Pruning importance callables.

Each criterion scores every channel ``c`` of a coupled group (see
:meth:`torchslim.graph.ChannelGraph.importance`):

* ``l1`` / ``l2``: ``I_c = mean over the group's layers of ||W_layer[c]||_p`` (group magnitude;
  Li et al. 2017, "Pruning filters for efficient ConvNets", for the single-layer L1 criterion);
* ``bn_scale``: ``I_c = mean |gamma_c|`` over the group's BatchNorms (Liu et al. 2017, "Learning
  efficient convolutional networks through network slimming"); groups without BatchNorm get None;
* ``taylor``: ``I_c = mean over layers of sum |w * dL/dw|`` over the channel's weights, with
  gradients accumulated on calibration batches by :func:`accumulate_gradients` (Molchanov et al.
  2019, "Importance estimation for neural network pruning");
* ``random``: a seeded baseline.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

import torch
from torch import nn

from torchslim.core.errors import ConfigError, DataError

IMPORTANCES = ("l1", "l2", "bn_scale", "taylor", "random")


def channel_criterion(kind: str, *, normalize: bool, seed: int) -> Any:
    """The Torch-Pruning importance for `kind`; `normalize` divides each group's scores by their mean
    (needed to rank groups against each other in the global scope)."""
    import torch_pruning as tp

    norm = "mean" if normalize else None
    if kind in ("l1", "l2"):
        p = 1 if kind == "l1" else 2
        return _with_conv1d(tp.importance.GroupMagnitudeImportance(p=p, normalizer=norm), p, normalize)
    if kind == "bn_scale":
        return tp.importance.BNScaleImportance(normalizer=norm)
    if kind == "taylor":
        return tp.importance.GroupTaylorImportance(normalizer=norm)
    if kind == "random":
        generator = torch.Generator().manual_seed(int(seed))

        def random_importance(group: Any) -> torch.Tensor:
            return torch.rand(len(group[0].idxs), generator=generator)

        return random_importance
    raise ConfigError(f"Unknown importance {kind!r}; known: {list(IMPORTANCES)}.")


def _with_conv1d(criterion: Any, p: int, normalize: bool) -> Any:
    """`criterion`, falling back to the same group magnitude computed here for groups whose only
    weighted members are Hugging Face ``Conv1D`` layers (weight ``(in, out)``), which Torch-Pruning's
    importance does not read."""

    def importance(group: Any) -> torch.Tensor | None:
        imp = criterion(group)
        if imp is not None:
            return imp  # type: ignore[no-any-return]  # reason: Torch-Pruning is untyped
        return _conv1d_magnitude(group, p, normalize)

    return importance


def _conv1d_magnitude(group: Any, p: int, normalize: bool) -> torch.Tensor | None:
    n = len(group[0].idxs)
    total = torch.zeros(n)
    count = 0
    for item in group:
        layer = item.dep.target.module
        if type(layer).__name__ != "Conv1D" or not isinstance(getattr(layer, "weight", None), torch.Tensor):
            continue
        out = item.dep.handler.__name__ == "prune_out_channels"
        w = layer.weight.detach().abs().pow(p).float()
        local = (w.sum(0) if out else w.sum(1))[torch.as_tensor(item.idxs, dtype=torch.long)]
        root = torch.as_tensor(getattr(item, "root_idxs", item.idxs), dtype=torch.long)
        if local.numel() != root.numel() or int(root.max()) >= n:
            continue
        total.index_add_(0, root, local)
        count += 1
    if count == 0:
        return None
    imp = total / count
    return imp / imp.mean().clamp_min(1e-12) if normalize else imp


def accumulate_gradients(model: nn.Module, loader: Iterable[Any], batches: int) -> int:
    """Sum the task-loss gradients of `batches` batches into ``.grad`` (eval mode); return samples used."""
    from torchslim.train import logits_of, run_model

    model.zero_grad(set_to_none=True)
    seen = 0
    modes = [(m, m.training) for m in model.modules()]
    model.eval()
    try:
        with torch.enable_grad():
            for i, batch in enumerate(loader):
                if i >= batches:
                    break
                if not isinstance(batch, (list, tuple)) or len(batch) != 2:
                    raise DataError("taylor importance needs (inputs, labels) batches.")
                inputs, labels = batch
                logits = logits_of(run_model(model, inputs))
                loss = nn.functional.cross_entropy(logits, torch.as_tensor(labels))
                loss.backward()
                seen += int(torch.as_tensor(labels).shape[0])
    finally:
        for m, flag in modes:
            m.training = flag
    if seen == 0:
        raise DataError("taylor importance read no calibration samples (the loader is empty).")
    return seen
