"""Distillation losses: logit KD, feature hints, attention transfer, TinyBERT and DistilBERT terms.

Each loss states its formula and source. Notation: ``z_s``, ``z_t`` student / teacher logits,
``y`` hard labels, ``T`` the temperature, ``F_s``, ``F_t`` student / teacher features, ``B`` the
batch size.

=====================  ==============================================================  ==============================
name                   formula                                                         source
=====================  ==============================================================  ==============================
``kd_loss``            (1 - a) CE(z_s, y) + a T^2 KL(softmax(z_t/T) || softmax(z_s/T))  Hinton, Vinyals & Dean 2015
``hint``               mean (r(F_s) - F_t)^2, r a learned regressor when widths differ  Romero et al. 2015 (FitNets)
``attention``          (beta/2) mean (Q_s/|Q_s| - Q_t/|Q_t|)^2, Q = mean_c |F_c|^p      Zagoruyko & Komodakis 2017
``hidden_mse``         mean (H_s W_h - H_t)^2                                           Jiao et al. 2020 (TinyBERT)
``attention_map``      (1/h) sum_i mean (A_i^S - A_i^T)^2                               Jiao et al. 2020 (TinyBERT)
``cosine``             mean over positions of 1 - cos(h_s, h_t)                         Sanh et al. 2019 (DistilBERT)
=====================  ==============================================================  ==============================

Feature losses are small ``nn.Module`` classes built from the student's and the teacher's feature
shapes (``cls(student_shape, teacher_shape)``) so that their adapters, when they need one, have
their sizes before training starts; :data:`FEATURE_LOSSES` maps the names above to them. Every
feature loss takes ``forward(student_feature, teacher_feature, mask=None)`` where `mask` is an
optional ``[B, T]`` token mask (1 = real token) used by losses over token sequences.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import torch.nn.functional as F
from torch import Tensor, nn

from torchslim.core.errors import ConfigError, ModelError

Shape = Sequence[int]


# ------------------------------------------------------------------------------------------------
# logits


def _check_temperature(temperature: float) -> float:
    if isinstance(temperature, bool) or not isinstance(temperature, (int, float)):
        raise ConfigError(f"temperature must be a number > 0, got {temperature!r}.")
    if not math.isfinite(temperature) or temperature <= 0:
        raise ConfigError(f"temperature={temperature!r} is out of range (0, inf): it must be a finite number > 0.")
    return float(temperature)


def _check_alpha(alpha: float) -> float:
    if isinstance(alpha, bool) or not isinstance(alpha, (int, float)) or not (0.0 <= float(alpha) <= 1.0):
        raise ConfigError(f"alpha={alpha!r} is out of range [0, 1].")
    return float(alpha)


def _flat_logits(student: Tensor, teacher: Tensor) -> tuple[Tensor, Tensor]:
    if student.shape != teacher.shape:
        raise ModelError(
            f"Student logits {tuple(student.shape)} and teacher logits {tuple(teacher.shape)} differ in shape; "
            "logit distillation needs the same number of classes (and positions)."
        )
    classes = student.shape[-1]
    return student.reshape(-1, classes), teacher.reshape(-1, classes)


def soft_target_loss(student_logits: Tensor, teacher_logits: Tensor, *, temperature: float = 4.0) -> Tensor:
    """``T^2 KL(softmax(z_t / T) || softmax(z_s / T))``, averaged over samples.

    ``KL(p || q) = sum_c p_c (log p_c - log q_c)``; every leading dimension but the last (classes)
    counts as a sample. The ``T^2`` factor keeps the gradient magnitude of the soft term roughly
    independent of T (Hinton, Vinyals & Dean 2015, "Distilling the knowledge in a neural network",
    section 2). The teacher logits are detached.
    """
    T = _check_temperature(temperature)
    s, t = _flat_logits(student_logits, teacher_logits.detach())
    log_p_s = F.log_softmax(s.float() / T, dim=-1)
    log_p_t = F.log_softmax(t.float() / T, dim=-1)
    return F.kl_div(log_p_s, log_p_t, reduction="batchmean", log_target=True) * (T * T)


def kd_loss(
    student_logits: Tensor,
    teacher_logits: Tensor,
    labels: Tensor | None = None,
    *,
    temperature: float = 4.0,
    alpha: float = 0.9,
) -> Tensor:
    """Hinton knowledge distillation (Hinton, Vinyals & Dean 2015, "Distilling the knowledge in a
    neural network"):

        L = (1 - alpha) * CE(z_s, y) + alpha * T^2 * KL(softmax(z_t / T) || softmax(z_s / T))

    with the KL averaged over samples (``batchmean``) and CE the mean cross-entropy on the hard
    labels. ``alpha = 1`` is pure soft-target distillation (`labels` may then be None); at
    ``T = 1, alpha = 1`` the loss is exactly ``KL(p_t || p_s)``.
    """
    alpha = _check_alpha(alpha)
    soft = soft_target_loss(student_logits, teacher_logits, temperature=temperature)
    if alpha == 1.0:
        return soft
    if labels is None:
        raise ConfigError(f"kd_loss needs labels when alpha < 1 (alpha={alpha}); pass labels or alpha=1.")
    hard = F.cross_entropy(student_logits.reshape(-1, student_logits.shape[-1]), labels.reshape(-1))
    return (1.0 - alpha) * hard + alpha * soft


class KDLoss(nn.Module):
    """:func:`kd_loss` as a module: ``KDLoss(temperature=4, alpha=0.9)(z_s, z_t, y)``.

    Formula: ``(1 - alpha) CE(z_s, y) + alpha T^2 KL(softmax(z_t/T) || softmax(z_s/T))``
    (Hinton, Vinyals & Dean 2015).
    """

    def __init__(self, temperature: float = 4.0, alpha: float = 0.9) -> None:
        super().__init__()
        self.temperature = _check_temperature(temperature)
        self.alpha = _check_alpha(alpha)

    def forward(self, student_logits: Tensor, teacher_logits: Tensor, labels: Tensor | None = None) -> Tensor:
        return kd_loss(student_logits, teacher_logits, labels, temperature=self.temperature, alpha=self.alpha)

    def extra_repr(self) -> str:
        return f"temperature={self.temperature}, alpha={self.alpha}"


# ------------------------------------------------------------------------------------------------
# feature helpers


def make_adapter(student_shape: Shape, teacher_shape: Shape, *, bias: bool = True) -> nn.Module | None:
    """A learned map from the student's feature width to the teacher's, or None when they agree.

    ``[B, C, H, W]`` features get a 1x1 ``Conv2d(C_s, C_t)`` (the FitNets regressor; Romero et al.
    used a convolution, 1x1 is its common lightweight form); any other feature ``[..., D]`` gets a
    ``Linear(D_s, D_t)`` on the last dimension.
    """
    if len(student_shape) != len(teacher_shape):
        raise ModelError(
            f"Student feature {tuple(student_shape)} and teacher feature {tuple(teacher_shape)} have different "
            "ranks; pair layers of the same kind (conv with conv, token states with token states)."
        )
    if len(student_shape) == 4:
        cs, ct = int(student_shape[1]), int(teacher_shape[1])
        return None if cs == ct else nn.Conv2d(cs, ct, kernel_size=1, bias=bias)
    ds, dt = int(student_shape[-1]), int(teacher_shape[-1])
    return None if ds == dt else nn.Linear(ds, dt, bias=bias)


def match_spatial(student: Tensor, teacher: Tensor) -> tuple[Tensor, Tensor]:
    """Average-pool the larger of two ``[B, C, H, W]`` maps to the other's H x W (no-op when equal)."""
    if student.dim() != 4 or student.shape[-2:] == teacher.shape[-2:]:
        return student, teacher
    hs, ws = student.shape[-2:]
    ht, wt = teacher.shape[-2:]
    size = (min(hs, ht), min(ws, wt))
    if (hs, ws) != size:
        student = F.adaptive_avg_pool2d(student, size)
    if (ht, wt) != size:
        teacher = F.adaptive_avg_pool2d(teacher, size)
    return student, teacher


def _check_leading(name: str, student_shape: Shape, teacher_shape: Shape, *, channel_dim: int) -> None:
    """Every dimension except the batch, the channel dimension and (for 4D maps) H, W must agree."""
    if len(student_shape) != len(teacher_shape):
        raise ModelError(
            f"{name}: student feature {tuple(student_shape)} and teacher feature {tuple(teacher_shape)} have "
            "different ranks."
        )
    rank = len(student_shape)
    free = {0, channel_dim % rank} | ({2, 3} if rank == 4 else set())
    for d in range(rank):
        if d not in free and student_shape[d] != teacher_shape[d]:
            raise ModelError(
                f"{name}: student feature {tuple(student_shape)} and teacher feature {tuple(teacher_shape)} differ "
                f"in dimension {d}; only the batch and feature width may differ."
            )


def _masked_mean(values: Tensor, mask: Tensor | None) -> Tensor:
    """Mean of ``values [B, T, ...]`` over the positions where ``mask [B, T]`` is 1 (plain mean without)."""
    if mask is None or values.dim() < 2 or tuple(mask.shape) != tuple(values.shape[:2]):
        return values.mean()
    weights = mask.to(values.dtype).reshape(*mask.shape, *([1] * (values.dim() - 2))).expand_as(values)
    return (values * weights).sum() / weights.sum().clamp(min=1.0)


class FeatureLoss(nn.Module):
    """Base of the feature losses: built from shapes, called as ``loss(F_s, F_t, mask=None)``."""

    kind: str = ""

    def __init__(self, student_shape: Shape, teacher_shape: Shape) -> None:
        super().__init__()
        self.student_shape = tuple(int(d) for d in student_shape)
        self.teacher_shape = tuple(int(d) for d in teacher_shape)

    def forward(self, student: Tensor, teacher: Tensor, mask: Tensor | None = None) -> Tensor:  # pragma: no cover
        raise NotImplementedError


class HintLoss(FeatureLoss):
    """FitNets hint loss (Romero et al. 2015, "FitNets: Hints for thin deep nets"):

        L = mean( (r(F_s) - F_t)^2 )

    ``r`` is a learned regressor (``adapter``: 1x1 conv for ``[B, C, H, W]``, linear on the last
    dimension otherwise) when the widths differ, the identity when they agree. Maps of different
    spatial size are average-pooled to the smaller one. With a token mask, the mean runs over the
    real tokens only.
    """

    kind = "hint"
    adapter_bias = True

    def __init__(self, student_shape: Shape, teacher_shape: Shape) -> None:
        super().__init__(student_shape, teacher_shape)
        _check_leading(
            type(self).__name__,
            self.student_shape,
            self.teacher_shape,
            channel_dim=1 if len(self.student_shape) == 4 else -1,
        )
        self.adapter = make_adapter(self.student_shape, self.teacher_shape, bias=self.adapter_bias)

    def forward(self, student: Tensor, teacher: Tensor, mask: Tensor | None = None) -> Tensor:
        if self.adapter is not None:
            student = self.adapter(student)
        student, teacher = match_spatial(student, teacher)
        return _masked_mean((student - teacher.detach()).pow(2), mask)


class HiddenStateMSE(HintLoss):
    """TinyBERT hidden-state loss (Jiao et al. 2020, "TinyBERT: Distilling BERT for natural language
    understanding", eq. 8):

        L_hidn = MSE(H_s W_h, H_t)

    ``H [B, T, d]`` are a transformer layer's outputs and ``W_h`` (``adapter``, a bias-free linear map
    ``d_s -> d_t``) is learned; it is the identity when the widths agree. Padding tokens are left
    out of the mean when a token mask is available.
    """

    kind = "hidden_mse"
    adapter_bias = False


class AttentionTransferLoss(FeatureLoss):
    """Attention transfer (Zagoruyko & Komodakis 2017, "Paying more attention to attention", eq. 2):

        Q(F) = vec( mean_c |F_c|^p ),    L = (beta / 2) * mean( (Q_s / ||Q_s||_2 - Q_t / ||Q_t||_2)^2 )

    an activation-based spatial attention map per sample (channels averaged, so the widths may
    differ and no adapter is needed). The mean of squared differences and ``beta = 1000``, ``p = 2``
    follow the authors' code (``at_loss``). Maps of different spatial size are average-pooled to the
    smaller one. Token features ``[B, T, D]`` give a map over tokens the same way.
    """

    kind = "attention"

    def __init__(self, student_shape: Shape, teacher_shape: Shape, *, p: float = 2.0, beta: float = 1000.0) -> None:
        super().__init__(student_shape, teacher_shape)
        if len(self.student_shape) not in (3, 4) or len(self.student_shape) != len(self.teacher_shape):
            raise ModelError(
                f"AttentionTransferLoss needs two [B, C, H, W] maps (or two [B, T, D] token states), got "
                f"{self.student_shape} and {self.teacher_shape}."
            )
        if len(self.student_shape) == 3 and self.student_shape[1] != self.teacher_shape[1]:
            raise ModelError(
                f"AttentionTransferLoss: token counts differ ({self.student_shape} vs {self.teacher_shape})."
            )
        self.p = float(p)
        self.beta = float(beta)

    def attention_map(self, feature: Tensor) -> Tensor:
        """``Q(F) / ||Q(F)||_2`` per sample, flattened."""
        if feature.dim() == 4:
            q = feature.abs().pow(self.p).mean(dim=1)
        else:
            q = feature.abs().pow(self.p).mean(dim=-1)
        return F.normalize(q.reshape(q.shape[0], -1), dim=1)

    def forward(self, student: Tensor, teacher: Tensor, mask: Tensor | None = None) -> Tensor:
        student, teacher = match_spatial(student, teacher)
        diff = self.attention_map(student) - self.attention_map(teacher.detach())
        return (self.beta / 2.0) * diff.pow(2).mean()


class AttentionMapMSE(FeatureLoss):
    """TinyBERT attention-based distillation (Jiao et al. 2020, eq. 7):

        L_attn = (1 / h) * sum_{i=1..h} MSE(A_i^S, A_i^T)

    over the ``h`` heads' attention matrices ``A [B, h, T, T]`` (student and teacher need the same
    head count). TinyBERT fits the unnormalised scores; Hugging Face models expose the softmax
    probabilities, which is what this loss sees when tapping an attention module. With a token mask,
    only query rows and key columns of real tokens count.
    """

    kind = "attention_map"

    def __init__(self, student_shape: Shape, teacher_shape: Shape) -> None:
        super().__init__(student_shape, teacher_shape)
        if len(self.student_shape) != 4 or self.student_shape[1:] != self.teacher_shape[1:]:
            raise ModelError(
                f"AttentionMapMSE needs attention maps [B, heads, T, T] of the same heads and length, got "
                f"student {self.student_shape} and teacher {self.teacher_shape}."
            )

    def forward(self, student: Tensor, teacher: Tensor, mask: Tensor | None = None) -> Tensor:
        sq = (student - teacher.detach()).pow(2)
        if mask is not None and tuple(mask.shape) == (sq.shape[0], sq.shape[-1]):
            m = mask.to(sq.dtype)
            weights = (m[:, None, :, None] * m[:, None, None, :]).expand_as(sq)
            return (sq * weights).sum() / weights.sum().clamp(min=1.0)
        return sq.mean()


class CosineLoss(FeatureLoss):
    """DistilBERT's cosine embedding loss (Sanh, Debut, Chaumond & Wolf 2019, "DistilBERT, a
    distilled version of BERT", section 3):

        L_cos = mean over positions of ( 1 - cos(h_s, h_t) )

    aligning the directions of student and teacher hidden vectors (``torch.nn.CosineEmbeddingLoss``
    with target 1). Vectors run along the last dimension (the channel dimension for ``[B, C, H, W]``);
    a learned linear / 1x1 conv ``adapter`` maps the student's width to the teacher's when they differ.
    """

    kind = "cosine"

    def __init__(self, student_shape: Shape, teacher_shape: Shape) -> None:
        super().__init__(student_shape, teacher_shape)
        _check_leading(
            type(self).__name__,
            self.student_shape,
            self.teacher_shape,
            channel_dim=1 if len(self.student_shape) == 4 else -1,
        )
        self.adapter = make_adapter(self.student_shape, self.teacher_shape)

    def forward(self, student: Tensor, teacher: Tensor, mask: Tensor | None = None) -> Tensor:
        if self.adapter is not None:
            student = self.adapter(student)
        student, teacher = match_spatial(student, teacher)
        dim = 1 if student.dim() == 4 else -1
        loss = 1.0 - F.cosine_similarity(student, teacher.detach(), dim=dim, eps=1e-8)
        return _masked_mean(loss, mask)


FEATURE_LOSSES: dict[str, type[FeatureLoss]] = {
    cls.kind: cls for cls in (HintLoss, AttentionTransferLoss, HiddenStateMSE, AttentionMapMSE, CosineLoss)
}
"""Feature-loss name -> class; the names are those of ``FeaturePair.loss`` and the ``distill`` config."""


def feature_loss(kind: str, student_shape: Shape, teacher_shape: Shape) -> FeatureLoss:
    """Build the feature loss `kind` for the given feature shapes (ConfigError for an unknown kind)."""
    from torchslim.core.errors import did_you_mean

    try:
        cls = FEATURE_LOSSES[kind]
    except KeyError:
        raise ConfigError(
            f"Unknown feature loss {kind!r}; known: {sorted(FEATURE_LOSSES)}."
            + did_you_mean(kind, list(FEATURE_LOSSES))
        ) from None
    return cls(student_shape, teacher_shape)
