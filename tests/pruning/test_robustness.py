"""channel_pruning on what Torch-Pruning handles and torchslim used to refuse or crash on: bare
parameters coupled to channels, GPT-2 ``Conv1D``, key/value-cache outputs, tied weights, couplings
that break the model (found, left whole, named with the exclude), a time limit on the dependency
search, and `strict` turning partial coverage into an error."""

from __future__ import annotations

import copy

import pytest
import torch
from torch import nn

from torchslim.core import TECHNIQUES, Context, Targets
from torchslim.core.errors import ModelError, TargetError
from torchslim.core.plans import model_plan
from torchslim.graph import ChannelGraph, apply_channel_ops
from torchslim.measure import count_macs
from torchslim.pruning import ChannelPruning, prune_channels

IMG = torch.randn(2, 3, 16, 16, generator=torch.Generator().manual_seed(0))


class Tokens(nn.Module):
    """Patch conv + class token + position embedding + layer scale: bare parameters on the hidden channels."""

    def __init__(self, dim: int = 16) -> None:
        super().__init__()
        self.patch = nn.Conv2d(3, dim, 4, stride=4)
        self.cls_token = nn.Parameter(torch.randn(1, 1, dim))
        self.pos = nn.Parameter(torch.randn(1, 17, dim))
        self.fc1 = nn.Linear(dim, 32)
        self.fc2 = nn.Linear(32, dim)
        self.gamma = nn.Parameter(torch.rand(dim) + 0.5)
        self.head = nn.Linear(dim, 3)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        t = self.patch(x).flatten(2).transpose(1, 2)
        t = torch.cat([self.cls_token.expand(t.shape[0], -1, -1), t], dim=1) + self.pos
        t = t + self.gamma * self.fc2(torch.relu(self.fc1(t)))
        return self.head(t.mean(dim=1))


class ConcatSplit(nn.Module):
    """A concatenation split again into halves: a coupling Torch-Pruning gets wrong for some groups."""

    def __init__(self) -> None:
        super().__init__()
        self.a = nn.Conv2d(3, 8, 3, padding=1)
        self.b = nn.Conv2d(3, 8, 3, padding=1)
        self.c = nn.Conv2d(8, 8, 3, padding=1)
        self.d = nn.Conv2d(8, 8, 3, padding=1)
        self.head = nn.Linear(16, 5)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        left, right = torch.split(torch.relu(torch.cat([self.a(x), self.b(x)], dim=1)), 8, dim=1)
        return self.head(torch.cat([self.c(left), self.d(right)], dim=1).mean(dim=(2, 3)))


class ClassTokenSplit(nn.Module):
    """CvT's class token: split off along the token dimension, then concatenated back onto two
    branches (Torch-Pruning 1.6 fails to infer that concatenation's sizes)."""

    def __init__(self, dim: int = 16) -> None:
        super().__init__()
        self.patch = nn.Conv2d(3, dim, 4, stride=4)
        self.cls_token = nn.Parameter(torch.randn(1, 1, dim))
        self.fc1 = nn.Linear(dim, 32)
        self.fc2 = nn.Linear(32, dim)
        self.mix = nn.Conv2d(dim, dim, 3, padding=1, groups=dim)
        self.mix2 = nn.Conv2d(dim, dim, 3, padding=1, groups=dim)
        self.head = nn.Linear(dim, 3)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        t = self.patch(x).flatten(2).transpose(1, 2)
        t = torch.cat([self.cls_token.expand(t.shape[0], -1, -1), t], dim=1)
        t = t + self.fc2(torch.relu(self.fc1(t)))
        cls, rest = torch.split(t, [1, t.shape[1] - 1], 1)
        img = rest.transpose(1, 2).reshape(x.shape[0], -1, 4, 4)
        a = torch.cat([cls, self.mix(img).flatten(2).transpose(1, 2)], dim=1)
        b = torch.cat([cls, self.mix2(img).flatten(2).transpose(1, 2)], dim=1)
        return self.head((a * b).mean(dim=1))


def _seeded(cls: type[nn.Module]) -> nn.Module:
    torch.manual_seed(0)
    return cls().eval()


def _replayed(fresh: nn.Module, pruned: nn.Module) -> nn.Module:
    for entry in model_plan(pruned):
        apply_channel_ops(fresh, entry["ops"])
    fresh.load_state_dict(pruned.state_dict())
    return fresh


def test_bare_parameters_coupled_to_channels_are_cut_with_them_and_replayed():
    model = _seeded(Tokens)
    out = prune_channels(model, IMG, ratio=0.5)
    pruned = out.model
    assert pruned.patch.out_channels == 8
    assert pruned.cls_token.shape == (1, 1, 8) and pruned.pos.shape == (1, 17, 8) and pruned.gamma.shape == (8,)
    assert pruned(IMG).shape == (2, 3) and count_macs(pruned, IMG).total < 0.6 * count_macs(model, IMG).total
    assert model.gamma.shape == (16,), "the caller's model is untouched"
    assert torch.allclose(_replayed(_seeded(Tokens), pruned)(IMG), pruned(IMG))
    group = next(g for g in ChannelGraph(_seeded(Tokens), IMG).groups() if g.root == "patch")
    assert set(group.parameters) == {"cls_token", "pos", "gamma"} and "gamma" not in group.layers


def test_a_class_token_concatenated_back_along_the_tokens_is_coupled_index_by_index():
    model = _seeded(ClassTokenSplit)
    out = prune_channels(model, IMG, ratio=0.5)
    pruned = out.model
    assert pruned.patch.out_channels == 8 and pruned.cls_token.shape == (1, 1, 8)
    assert pruned.mix.out_channels == 8 and pruned.head.in_features == 8 and not out.skipped
    assert any("coupled index by index" in note for note in out.info["notes"])
    assert pruned(IMG).shape == (2, 3) and count_macs(pruned, IMG).total < 0.5 * count_macs(model, IMG).total
    assert torch.allclose(_replayed(_seeded(ClassTokenSplit), pruned)(IMG), pruned(IMG))


def test_tied_weights_stay_tied_after_pruning_and_replay():
    class Tied(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.inp = nn.Linear(8, 16)
            self.a = nn.Linear(16, 16)
            self.b = nn.Linear(16, 16)
            self.b.weight = self.a.weight
            self.out = nn.Linear(16, 2)

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            h = torch.relu(self.inp(x))
            return self.out(torch.relu(self.a(h)) + torch.relu(self.b(h)))

    x = torch.randn(2, 8)
    pruned = prune_channels(_seeded(Tied), x, ratio=0.5).model
    assert pruned.a.weight is pruned.b.weight and pruned.a.out_features == 8
    replayed = _replayed(_seeded(Tied), pruned)
    assert replayed.a.weight is replayed.b.weight and torch.allclose(replayed(x), pruned(x))


def test_a_coupling_that_breaks_the_model_is_left_whole_and_named_with_its_exclude():
    model = _seeded(ConcatSplit)
    out = prune_channels(model, IMG, ratio=0.5)
    assert out.model(IMG).shape == (2, 5)
    assert count_macs(out.model, IMG).total < count_macs(model, IMG).total
    assert out.info["not_understood"], "the concat-then-split group breaks the model when cut"
    for reason in out.info["not_understood"]:
        assert "not understood" in reason and "targets: {exclude: ['a', 'b']}" in reason
    assert out.skipped["a"] == out.info["not_understood"][0]
    with pytest.raises(TargetError, match=r"strict\): 2 layers skipped because a: coupling .* not understood"):
        prune_channels(model, IMG, ratio=0.5, strict=True)
    excluded = prune_channels(model, IMG, ratio=0.5, targets=Targets(exclude=("a", "b")), strict=True)
    assert not excluded.info["not_understood"] and excluded.model.a.out_channels == 8
    assert model.a.out_channels == 8, "the caller's model is untouched"


def test_strict_turns_skipped_layers_into_an_error_naming_them():
    model = _seeded(Tokens)
    ok = prune_channels(model, IMG, ratio=0.5, targets=Targets(names=("fc1", "head")))
    assert set(ok.skipped) == {"head"} and ok.model.fc1.out_features == 16
    with pytest.raises(TargetError, match=r"strict\): 1 layer skipped because head: its output channels"):
        prune_channels(model, IMG, ratio=0.5, targets=Targets(names=("fc1", "head")), strict=True)


def test_the_dependency_search_has_a_time_limit_that_names_the_layer(monkeypatch):
    model = _seeded(Tokens)
    graph = ChannelGraph(model, IMG, time_limit=30.0, root_time_limit=0.2)
    real = graph.dg.get_pruning_group

    def slow(module, fn, idxs):
        if module is model.fc1:
            import time

            time.sleep(5)
        return real(module, fn, idxs)

    monkeypatch.setattr(graph.dg, "get_pruning_group", slow)
    roots = {g.root for g in graph.groups()}
    assert "fc1" not in roots and "patch" in roots
    assert "fc1" in graph.search_skipped and "exclude" in graph.search_skipped["fc1"]
    graph.time_limit = 1e-9
    with pytest.raises(ModelError, match="time limit .* at layer '.*'; exclude it"):
        graph.groups()


def test_an_internal_failure_is_a_typed_refusal_and_the_model_is_untouched(monkeypatch):
    model = _seeded(Tokens)
    before = copy.deepcopy(model.state_dict())

    def boom(*_a, **_k):
        raise IndexError("list index out of range")

    monkeypatch.setattr(ChannelGraph, "_describe", boom)
    config = ChannelPruning(ratio=0.5)
    with pytest.raises(ModelError, match="not understood.*IndexError.*nothing was changed") as info:
        TECHNIQUES.handler_for(config)(model, config, targets=None, context=Context(example_input=IMG))
    assert "Did you mean" not in str(info.value)
    assert all(torch.equal(before[k], v) for k, v in model.state_dict().items())


def test_hidden_ratio_prunes_a_transformer_hidden_size(toys):
    model = toys.tiny_bert().eval()
    x = toys.bert_input()
    kept = prune_channels(model, x, ratio=0.5)
    assert any("hidden size" in r for r in kept.info["untouched"].values())
    out = prune_channels(model, x, ratio=0.5, hidden_ratio=0.5)
    assert count_macs(out.model, x).total < count_macs(kept.model, x).total
    assert out.model(**x).shape == (2, 3)
    assert out.model.bert.embeddings.word_embeddings.embedding_dim == 16


def test_cvt_attention_loses_whole_heads_and_its_embed_dim_follows():
    transformers = pytest.importorskip("transformers")
    config = transformers.CvtConfig(embed_dim=[16, 24, 32], num_heads=[1, 2, 4], depth=[1, 2, 3], num_labels=3)
    torch.manual_seed(0)
    model = transformers.CvtForImageClassification(config).eval()
    stage = model.cvt.encoder.stages[2]
    with torch.no_grad():  # heads 2 and 3 of the last stage read nothing: cutting them changes nothing
        for layer in stage.layers:
            attention = layer.attention.attention
            for proj in (attention.projection_query, attention.projection_key, attention.projection_value):
                proj.weight[16:] = 0
                proj.bias[16:] = 0
    names = tuple(
        f"cvt.encoder.stages.2.layers.{i}.attention.attention.projection_{p}"
        for i in range(3)
        for p in ("query", "key", "value")
    )
    x = torch.randn(2, 3, 32, 32, generator=torch.Generator().manual_seed(0))
    out = prune_channels(model, x, ratio=0.5, head_ratio=0.5, targets=Targets(names=names))
    for layer in out.model.cvt.encoder.stages[2].layers:
        attention = layer.attention.attention
        assert (attention.num_heads, attention.embed_dim, attention.projection_value.out_features) == (2, 16, 16)
    assert torch.allclose(out.model(x).logits, model(x).logits, atol=1e-5)
    assert stage.layers[0].attention.attention.num_heads == 4, "the caller's model is untouched"


def test_gpt2_conv1d_is_pruned_like_linear_with_the_cache_turned_off_for_tracing():
    transformers = pytest.importorskip("transformers")
    config = transformers.GPT2Config(vocab_size=64, n_embd=32, n_layer=1, n_head=4, n_positions=16)
    torch.manual_seed(0)
    model = transformers.GPT2LMHeadModel(config).eval()
    assert model.config.use_cache
    ids = {"input_ids": torch.randint(0, 64, (2, 8), generator=torch.Generator().manual_seed(0))}
    out = prune_channels(model, ids, ratio=0.5)
    pruned = out.model
    mlp = pruned.transformer.h[0].mlp
    assert mlp.c_fc.weight.shape == (32, 64) and mlp.c_fc.nf == 64 and mlp.c_proj.weight.shape == (64, 32)
    assert any("use_cache" in note for note in out.info["notes"])
    assert pruned.config.use_cache and model.config.use_cache, "the cache setting is restored"
    assert pruned(**ids).logits.shape == (2, 8, 64)
    torch.manual_seed(0)
    fresh = transformers.GPT2LMHeadModel(config).eval()
    assert torch.allclose(_replayed(fresh, pruned)(**ids).logits, pruned(**ids).logits, atol=1e-5)


def test_grouped_query_attention_keeps_its_heads_and_prunes_the_mlp_quickly():
    transformers = pytest.importorskip("transformers")
    config = transformers.LlamaConfig(
        vocab_size=64,
        hidden_size=32,
        num_hidden_layers=1,
        num_attention_heads=4,
        num_key_value_heads=2,
        intermediate_size=64,
    )
    torch.manual_seed(0)
    model = transformers.LlamaForCausalLM(config).eval()
    ids = {"input_ids": torch.randint(0, 64, (2, 8), generator=torch.Generator().manual_seed(0))}
    import time

    start = time.perf_counter()
    out = prune_channels(model, ids, ratio=0.5, head_ratio=0.5)
    assert time.perf_counter() - start < 20, "the coupling search through repeat_kv is not entered"
    assert "grouped-query attention" in out.skipped["model.layers.0.self_attn.q_proj"]
    mlp = out.model.model.layers[0].mlp
    assert mlp.gate_proj.out_features == mlp.up_proj.out_features == mlp.down_proj.in_features == 32
    assert out.model(**ids).logits.shape == (2, 8, 64)


def test_a_tied_copy_the_forward_never_reaches_follows_the_cut_member():
    class TwoTables(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.shared = nn.Embedding(64, 16)
            self.enc = nn.Embedding(64, 16)
            self.enc.weight = self.shared.weight
            self.fc1 = nn.Linear(16, 32)
            self.fc2 = nn.Linear(32, 16)
            self.out = nn.Linear(16, 4)

        def forward(self, ids: torch.Tensor) -> torch.Tensor:
            h = self.enc(ids)
            h = h + self.fc2(torch.relu(self.fc1(h)))
            return self.out(h.mean(dim=1))

    ids = torch.randint(0, 64, (2, 8), generator=torch.Generator().manual_seed(0))
    pruned = prune_channels(_seeded(TwoTables), ids, ratio=0.5).model
    assert pruned.enc.weight is pruned.shared.weight and pruned.shared.embedding_dim == 8
    replayed = _replayed(_seeded(TwoTables), pruned)
    assert replayed.enc.weight is replayed.shared.weight and torch.allclose(replayed(ids), pruned(ids))
