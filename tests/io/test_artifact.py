import json
import os
import pickle
from pathlib import Path

import pytest
import torch
from torch import nn

from torchslim.core import ArtifactError
from torchslim.core.errors import UnsafeInputError
from torchslim.io import load, load_weights, read_manifest, save, write_json
from torchslim.io.atomic import atomic_path


def user_model():
    torch.manual_seed(0)
    return nn.Sequential(nn.Linear(8, 16), nn.ReLU(), nn.Linear(16, 3))


def test_user_model_round_trip(tmp_path):
    model = user_model()
    save(model, tmp_path / "a")
    assert sorted(p.name for p in (tmp_path / "a").iterdir()) == ["model.safetensors", "torchslim.json"]
    again = load(
        tmp_path / "a",
        model=user_model().apply(lambda m: m.reset_parameters() if hasattr(m, "reset_parameters") else None),
    )
    x = torch.randn(4, 8)
    assert torch.equal(model(x), again(x))


def test_user_model_without_architecture_needs_model(tmp_path):
    save(user_model(), tmp_path / "a")
    with pytest.raises(ArtifactError, match="user-defined architecture"):
        load(tmp_path / "a")


def test_overwrite_rules(tmp_path):
    (tmp_path / "notes").mkdir()
    (tmp_path / "notes" / "keep.txt").write_text("mine")
    with pytest.raises(ArtifactError, match="not a torchslim artifact"):
        save(user_model(), tmp_path / "notes")
    assert (tmp_path / "notes" / "keep.txt").read_text() == "mine"
    save(user_model(), tmp_path / "a")
    save(user_model(), tmp_path / "a")  # replacing an artifact is fine
    assert [p.name for p in tmp_path.iterdir() if p.name.startswith(".")] == []


def test_corrupt_safetensors(tmp_path):
    save(user_model(), tmp_path / "a")
    (tmp_path / "a" / "model.safetensors").write_bytes(b"\x00garbage" * 10)
    with pytest.raises(ArtifactError, match="not a valid safetensors file"):
        load(tmp_path / "a", model=user_model())


def test_missing_and_bad_manifest(tmp_path):
    with pytest.raises(ArtifactError, match="does not exist"):
        read_manifest(tmp_path / "nope")
    (tmp_path / "d").mkdir()
    with pytest.raises(ArtifactError, match="torchslim.json is missing"):
        read_manifest(tmp_path / "d")
    (tmp_path / "d" / "torchslim.json").write_text("{not json")
    with pytest.raises(ArtifactError, match="corrupt"):
        read_manifest(tmp_path / "d")


def test_shape_mismatch_is_clear(tmp_path):
    save(user_model(), tmp_path / "a")
    with pytest.raises(ArtifactError, match="do not fit the architecture"):
        load(tmp_path / "a", model=nn.Sequential(nn.Linear(8, 4), nn.ReLU(), nn.Linear(4, 3)))


class Payload:
    def __reduce__(self):
        return (os.system, (f"touch {MARKER}",))


MARKER = "/tmp/torchslim-pickle-payload-ran"


def test_pickle_payload_refused_and_never_runs(tmp_path):
    if os.path.exists(MARKER):
        os.remove(MARKER)
    path = tmp_path / "evil.pt"
    torch.save({"weight": torch.zeros(2), "x": Payload()}, path)
    with pytest.raises(UnsafeInputError, match="Refusing"):
        load_weights(path)
    assert not os.path.exists(MARKER)
    raw = tmp_path / "evil.pkl.bin"
    raw.write_bytes(pickle.dumps(Payload()))
    with pytest.raises((UnsafeInputError, ArtifactError)):
        load_weights(raw)
    assert not os.path.exists(MARKER)


def test_plain_state_dict_pt_loads(tmp_path):
    model = user_model()
    torch.save(model.state_dict(), tmp_path / "w.pt")
    state = load_weights(tmp_path / "w.pt")
    assert set(state) == set(model.state_dict())


def test_unknown_suffix(tmp_path):
    (tmp_path / "w.npz").write_bytes(b"")
    with pytest.raises(ArtifactError, match="unknown suffix"):
        load_weights(tmp_path / "w.npz")


def test_atomic_write_keeps_old_file_on_failure(tmp_path):
    target = tmp_path / "r.json"
    write_json(target, {"v": 1})
    with pytest.raises(RuntimeError):
        with atomic_path(target) as tmp:
            tmp.write_text("partial")
            raise RuntimeError("killed")
    assert json.loads(target.read_text()) == {"v": 1}
    assert [p.name for p in tmp_path.iterdir()] == ["r.json"]


def test_codecs_pick_smallest_and_round_trip():
    from torchslim.io.codecs import decode, encode, encoded_sizes

    torch.manual_seed(0)
    dense = torch.randn(64, 64)
    stored, meta = encode("w", dense)
    assert meta is None and torch.equal(stored["w"], dense)
    for keep in (0.5, 0.1, 0.005):
        t = dense * (torch.rand_like(dense) < keep)
        stored, meta = encode("w", t)
        sizes = encoded_sizes(t)
        stored_bytes = sum(v.numel() * v.element_size() for v in stored.values())
        assert stored_bytes == min(sizes.values())
        assert torch.equal(decode("w", stored, meta) if meta else stored["w"], t)
    assert encode("w", dense * (torch.rand_like(dense) < 0.1))[1]["codec"] == "bitmask"
    assert encode("w", dense * (torch.rand_like(dense) < 0.005))[1]["codec"] == "index"


def test_pruned_model_artifact_is_smaller_and_identical(tmp_path):
    from torch.nn.utils import prune

    model = user_model()
    dense_dir = save(model, tmp_path / "dense")
    pruned = user_model()
    prune.l1_unstructured(pruned[0], "weight", amount=0.9)
    prune.l1_unstructured(pruned[2], "weight", amount=0.9)
    save(pruned, tmp_path / "sparse")

    def size(d: Path) -> int:
        return sum(p.stat().st_size for p in Path(d).iterdir())

    assert size(tmp_path / "sparse") < size(dense_dir)
    again = load(tmp_path / "sparse", model=user_model())
    x = torch.randn(5, 8)
    assert torch.equal(again(x), pruned(x))
    assert hasattr(pruned[0], "weight_orig")  # saving never changes the caller's model


def test_manifest_is_compact_json_because_it_counts_toward_bytes_on_disk(tmp_path):
    save(user_model(), tmp_path / "a", config={"note": "x"})
    text = (tmp_path / "a" / "torchslim.json").read_text(encoding="utf-8")
    manifest = json.loads(text)
    assert text == json.dumps(manifest, separators=(",", ":")) + "\n"
    assert read_manifest(tmp_path / "a") == manifest


def test_artifact_files_get_the_usual_permissions(tmp_path):
    import stat

    old = os.umask(0o022)
    try:
        directory = save(user_model(), tmp_path / "a")
    finally:
        os.umask(old)
    assert stat.S_IMODE(directory.stat().st_mode) == 0o755
    for name in ("model.safetensors", "torchslim.json"):
        assert stat.S_IMODE((directory / name).stat().st_mode) == 0o644, name
