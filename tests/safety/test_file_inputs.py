"""Hostile and broken files: artifact manifests, weights, report.json, recipes.

Each case is checked through the Python API (the exact typed error class, a message naming the
culprit) and through the command line (one `error:` line, exit 2, nothing written, the same class
under ``--debug``)."""

from __future__ import annotations

import json
import pickle
import random
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
import torch
from safetensors.torch import load_file, save_file
from tests.cli_helpers import run_cli
from tests.safety.conftest import assert_clean_failure, snapshot

from torchslim.cli.main import main
from torchslim.core.errors import (
    ArtifactError,
    ConfigError,
    InputTooLargeError,
    ManifestError,
    NonFiniteWeightsError,
    UnknownNameError,
    UnsafeInputError,
)
from torchslim.core.recipe import Recipe
from torchslim.io import load, load_weights, read_report

MANIFEST = "torchslim.json"


def _edit(change: Callable[[dict[str, Any]], Any]) -> Callable[[Path], None]:
    def apply(directory: Path) -> None:
        path = directory / MANIFEST
        manifest = json.loads(path.read_text())
        result = change(manifest)
        path.write_text(json.dumps(manifest if result is None else result))

    return apply


def _raw(data: bytes) -> Callable[[Path], None]:
    return lambda directory: (directory / MANIFEST).write_bytes(data)


def _codec(key: str, **fields: Any) -> Callable[[Path], None]:
    return _edit(lambda m: m["codecs"][key].update(fields))


def _weights(change: Callable[[dict[str, torch.Tensor]], None]) -> Callable[[Path], None]:
    def apply(directory: Path) -> None:
        tensors = load_file(str(directory / "model.safetensors"))
        change(tensors)
        save_file(tensors, str(directory / "model.safetensors"), metadata={"format": "pt"})

    return apply


def _nan(t: dict[str, torch.Tensor]) -> None:
    t["fc.fc1.bias"][3] = float("nan")


def _inf(t: dict[str, torch.Tensor]) -> None:
    t["features.conv1.bias"][0] = float("inf")


def _deep(levels: int) -> Any:
    node: Any = 0
    for _ in range(levels):
        node = [node]
    return node


C1 = "features.conv1.weight"
F3 = "classifier.weight"
PRUNE = {"kind": "prune_channels", "version": 1, "ops": [{"cut": [["features.conv1", "x", "out", 0]]}]}

# (id, damage, exact class, culprit named in the message)
MANIFESTS = [
    ("not json", _raw(b"{not json"), ManifestError, "torchslim.json"),
    ("not utf-8", _raw(b'{"format": "\xff\xfe"}'), ManifestError, "UTF-8"),
    ("empty", _raw(b""), ManifestError, "torchslim.json"),
    ("a list", _edit(lambda m: [m]), ManifestError, "not a torchslim manifest"),
    ("other format", _edit(lambda m: m.update(format="zip")), ManifestError, "not a torchslim manifest"),
    ("format_version 2", _edit(lambda m: m.update(format_version=2)), ManifestError, "format_version"),
    ("NaN constant", _raw(b'{"format": "torchslim-artifact", "format_version": NaN}'), ManifestError, "NaN"),
    ("nested 100 deep", _edit(lambda m: m.update(config={"x": _deep(100)})), ManifestError, "nested"),
    ("plan a string", _edit(lambda m: m.update(plan="prune")), ManifestError, "'plan'"),
    ("plan entry a number", _edit(lambda m: m.update(plan=[3])), ManifestError, "plan entry 0"),
    ("plan entry without kind", _edit(lambda m: m.update(plan=[{"ops": []}])), ManifestError, "plan entry 0"),
    ("plan kind unknown", _edit(lambda m: m.update(plan=[{"kind": "shrinkify"}])), ArtifactError, "shrinkify"),
    (
        "plan idxs 0-3000000000",
        _edit(lambda m: m.update(plan=[{**PRUNE, "ops": [{**PRUNE["ops"][0], "idxs": "0-3000000000"}]}])),
        InputTooLargeError,
        "0-3000000000",
    ),
    (
        "plan idxs reversed",
        _edit(lambda m: m.update(plan=[{**PRUNE, "ops": [{**PRUNE["ops"][0], "idxs": "9-2"}]}])),
        InputTooLargeError,
        "9-2",
    ),
    (
        "plan idxs letters",
        _edit(lambda m: m.update(plan=[{**PRUNE, "ops": [{**PRUNE["ops"][0], "idxs": "a-b"}]}])),
        ManifestError,
        "a-b",
    ),
    (
        "plan idxs list out of range",
        _edit(lambda m: m.update(plan=[{**PRUNE, "ops": [{**PRUNE["ops"][0], "idxs": [0, 10**8]}]}])),
        ManifestError,
        "idxs",
    ),
    (
        "plan idxs a dict",
        _edit(lambda m: m.update(plan=[{**PRUNE, "ops": [{**PRUNE["ops"][0], "idxs": {"a": 1}}]}])),
        ManifestError,
        "idxs",
    ),
    ("plan huge integer", _edit(lambda m: m.update(plan=[{"kind": "fold_bn", "n": 10**12}])), InputTooLargeError, "n"),
    (
        "plan 10001 entries",
        _edit(lambda m: m.update(plan=[{"kind": "fold_bn"}] * 10_001)),
        InputTooLargeError,
        "plan",
    ),
    ("tensors a list", _edit(lambda m: m.update(tensors=[1])), ManifestError, "'tensors'"),
    ("tensors entry a string", _edit(lambda m: m.update(tensors={"fc": "x"})), ManifestError, "tensors['fc']"),
    ("tensors names no layer", _edit(lambda m: m.update(tensors={"no.such": {}})), ManifestError, "no.such"),
    ("tensors on a plain layer", _edit(lambda m: m.update(tensors={"fc.fc1": {}})), ArtifactError, "fc.fc1"),
    ("codecs a string", _edit(lambda m: m.update(codecs="dense")), ManifestError, "'codecs'"),
    ("codec entry a list", _edit(lambda m: m["codecs"].update({C1: [1]})), ManifestError, C1),
    ("codec dtype load", _codec(C1, dtype="load"), ManifestError, "load"),
    ("codec dtype __class__", _codec(C1, dtype="__class__"), ManifestError, "__class__"),
    ("codec dtype a number", _codec(C1, dtype=7), ManifestError, "dtype"),
    ("codec dtype mismatch", _codec(C1, dtype="int64"), ManifestError, C1),
    ("codec kind zip", _codec(C1, codec="zip"), ManifestError, "zip"),
    ("codec shape abc", _codec(C1, shape="abc"), ManifestError, "shape"),
    ("codec shape negative", _codec(C1, shape=[-6, 1, 5, 5]), ManifestError, "shape"),
    ("codec shape 32768x32768", _codec(C1, shape=[32768, 32768]), InputTooLargeError, "32768"),
    ("codec shape of another tensor", _codec(C1, shape=[16, 6, 5, 5]), ManifestError, "does not fit"),
    ("codec shape 9 dims", _codec(C1, shape=[1] * 9), ManifestError, "shape"),
    ("index codec shape 32768x32768", _codec(F3, shape=[32768, 32768]), InputTooLargeError, "32768"),
    (
        "codec unknown tensor",
        _edit(lambda m: m["codecs"].update({"ghost.weight": m["codecs"][C1]})),
        ManifestError,
        "ghost",
    ),
    ("spec a list", _edit(lambda m: m.update(spec=["lenet5"])), ManifestError, "'spec'"),
    ("spec name a number", _edit(lambda m: m.update(spec={"name": 5})), ManifestError, "spec"),
    ("spec unknown model", _edit(lambda m: m["spec"].update(name="resnet9000")), ManifestError, "resnet9000"),
    (
        "spec num_classes 3e7",
        _edit(lambda m: m["spec"]["kwargs"].update(num_classes=3e7)),
        ManifestError,
        "num_classes",
    ),
    (
        "spec num_classes 30000000",
        _edit(lambda m: m["spec"]["kwargs"].update(num_classes=30_000_000)),
        InputTooLargeError,
        "num_classes",
    ),
    (
        "spec num_classes text",
        _edit(lambda m: m["spec"]["kwargs"].update(num_classes="ten")),
        ManifestError,
        "num_classes",
    ),
    ("spec unknown kwarg", _edit(lambda m: m["spec"]["kwargs"].update(depth=3)), ManifestError, "depth"),
    (
        "spec channels 10**6",
        _edit(lambda m: m.update(spec={"name": "fmnist-cnn", "kwargs": {"channels": [10**6, 8]}})),
        InputTooLargeError,
        "channels",
    ),
    ("spec null", _edit(lambda m: m.update(spec=None)), ArtifactError, "user-defined"),
    ("weights missing", lambda d: (d / "model.safetensors").unlink(), ArtifactError, "model.safetensors"),
    ("weights garbage", lambda d: (d / "model.safetensors").write_bytes(b"\x00" * 99), ArtifactError, "safetensors"),
    ("weights NaN", _weights(_nan), NonFiniteWeightsError, "fc.fc1.bias"),
    ("weights Inf", _weights(_inf), NonFiniteWeightsError, "features.conv1.bias"),
    (
        "weights wrong shape",
        _weights(lambda t: t.update({"fc.fc1.bias": torch.zeros(7)})),
        ArtifactError,
        "fc.fc1.bias",
    ),
    ("manifest missing", lambda d: (d / MANIFEST).unlink(), ArtifactError, "torchslim.json"),
]


@pytest.mark.parametrize(("name", "damage", "cls", "culprit"), MANIFESTS, ids=[c[0] for c in MANIFESTS])
def test_damaged_artifacts(name, damage, cls, culprit, artifact, tmp_path, capsys):
    damage(artifact)
    with pytest.raises(cls) as info:
        load(artifact)
    assert type(info.value) is cls
    assert culprit.lower() in str(info.value).lower()
    before = snapshot(tmp_path)
    args = ["export", str(artifact), "--onnx", str(tmp_path / "m.onnx")]
    code, _, err = run_cli(args, capsys)
    assert_clean_failure(code, err, culprit)
    with pytest.raises(cls):
        main([*args, "--debug"])
    assert snapshot(tmp_path) == before


def test_nonfinite_artifact_loads_when_allowed(artifact, capsys, tmp_path):
    _weights(_nan)(artifact)
    model = load(artifact, allow_nonfinite=True)
    assert torch.isnan(model.get_parameter("fc.fc1.bias")).any()
    code, out, err = run_cli(["analyze", str(artifact), "--json", "--repeats", "1", "--allow-nonfinite"], capsys)
    assert code == 0, err
    assert json.loads(out)["params"] > 0


def test_int_weights_cast_is_reported(tmp_path):
    model = torch.nn.Linear(3, 2)
    path = tmp_path / "w.safetensors"
    save_file({"weight": torch.ones(2, 3, dtype=torch.int32), "bias": torch.zeros(2)}, str(path))
    from torchslim.io.weights import report_casts

    with pytest.warns(UserWarning, match=r"weight \(int32 -> float32\)"):
        assert report_casts(model, load_weights(path), source=str(path)) == ["weight (int32 -> float32)"]


REPORTS = [
    ("not json", b"{bad", "report.json"),
    ("not utf-8", b'{"model": "\xff"}', "UTF-8"),
    ("empty", b"", "report.json"),
    ("a list", b"[1, 2]", "JSON object"),
    ("a string", b'"report"', "JSON object"),
    ("steps a string", b'{"steps": "all"}', "steps"),
    ("steps of numbers", b'{"steps": [1]}', "steps[0]"),
    ("before a list", b'{"before": [1]}', "before"),
    ("notes a number", b'{"notes": 5}', "notes"),
    ("model a number", b'{"model": 5}', "model"),
    ("NaN constant", b'{"before": {"params": NaN}}', "NaN"),
    ("nested 100 deep", json.dumps({"after": {"x": _deep(100)}}).encode(), "nested"),
]


@pytest.mark.parametrize(("name", "data", "culprit"), REPORTS, ids=[c[0] for c in REPORTS])
def test_malformed_reports(name, data, culprit, tmp_path, capsys):
    (tmp_path / "a").mkdir()
    (tmp_path / "a" / "report.json").write_bytes(data)
    with pytest.raises(ArtifactError) as info:
        read_report(tmp_path / "a")
    assert type(info.value) is ArtifactError and culprit.lower() in str(info.value).lower()
    before = snapshot(tmp_path)
    code, _, err = run_cli(["report", str(tmp_path / "a")], capsys)
    assert_clean_failure(code, err, culprit)
    with pytest.raises(ArtifactError):
        main(["report", str(tmp_path / "a"), "--debug"])
    assert snapshot(tmp_path) == before


def test_report_of_wrong_shape_inside_is_typed(tmp_path, capsys):
    (tmp_path / "a").mkdir()
    (tmp_path / "a" / "report.json").write_text('{"before": {"params": "many", "layers": 3}, "after": {"bytes": []}}')
    code, _, err = run_cli(["report", str(tmp_path / "a")], capsys)
    assert code in (0, 2) and "Traceback" not in err


ALIAS_BOMB = 'a: &a ["lol","lol","lol","lol","lol","lol","lol","lol","lol"]\n' + "".join(
    f"{c}: &{c} [*{p},*{p},*{p},*{p},*{p},*{p},*{p},*{p},*{p}]\n" for p, c in zip("abcdefgh", "bcdefghi", strict=True)
)
FT = "version: 1\nsteps:\n  - technique: finetune\n"

RECIPES = [
    ("not utf-8", b"steps:\n  - technique: \xff\xfe\n", ConfigError, "UTF-8"),
    ("alias bomb", ALIAS_BOMB.encode(), InputTooLargeError, "alias"),
    ("self alias", b"steps: &s [*s]\n", ConfigError, "self-referencing"),
    ("python tag", b"steps: !!python/object/apply:os.system ['echo hi']\n", ConfigError, "tags"),
    ("too big", b"# x\n" * 300_000, InputTooLargeError, "limit"),
    ("nested 200 deep", b"steps: " + b"[" * 200 + b"]" * 200 + b"\n", InputTooLargeError, "nested"),
    ("steps a string", b"steps: finetune\n", ConfigError, "steps"),
    ("empty", b"", ConfigError, "steps"),
    ("unknown technique", b"steps:\n  - technique: prunee\n", UnknownNameError, "prunee"),
    ("unknown top key", b"stepz: []\n", ConfigError, "stepz"),
    ("config a number", (FT + "    config: 3\n").encode(), ConfigError, "config"),
    ("technique a list", b"steps:\n  - technique: [a, b]\n", ConfigError, "technique"),
    ("version 2", b"version: 2\nsteps:\n  - technique: finetune\n", ConfigError, "version"),
    ("bad syntax", b"steps: [\n", ConfigError, "YAML"),
    ("no technique", b"steps:\n  - config: {}\n", ConfigError, "technique"),
    ("unknown step key", (FT + "    confg: {}\n").encode(), ConfigError, "confg"),
    ("a plain number", b"42\n", ConfigError, "int"),
]


@pytest.mark.parametrize(("name", "data", "cls", "culprit"), RECIPES, ids=[c[0] for c in RECIPES])
def test_bad_recipe_files(name, data, cls, culprit, tmp_path, capsys):
    path = tmp_path / "r.yaml"
    path.write_bytes(data)
    with pytest.raises(cls) as info:
        Recipe.from_file(path)
    assert type(info.value) is cls and culprit.lower() in str(info.value).lower()
    assert "r.yaml" in str(info.value)
    before = snapshot(tmp_path)
    args = ["compress", "lenet-300-100", "--data", "fashion-mnist", "--recipe", str(path), "--out", str(tmp_path / "o")]
    code, _, err = run_cli(args, capsys)
    assert_clean_failure(code, err, culprit)
    with pytest.raises(cls):
        main([*args, "--debug"])
    assert snapshot(tmp_path) == before


class Payload:
    def __reduce__(self):
        return (print, ("payload ran",))


def _zip_garbage(path: Path) -> None:
    import zipfile

    with zipfile.ZipFile(path, "w") as archive:
        archive.writestr("archive/data.pkl", b"\x80\x02garbage")


WEIGHTS = [
    ("random bytes .pt", "w.pt", lambda p: p.write_bytes(random.Random(2).randbytes(1024)), ArtifactError, "w.pt"),
    ("opcode soup .pt", "w.pt", lambda p: p.write_bytes(bytes(range(256)) * 4), UnsafeInputError, "w.pt"),
    ("empty .pt", "w.pt", lambda p: p.write_bytes(b""), ArtifactError, "w.pt"),
    (
        "random bytes .safetensors",
        "w.safetensors",
        lambda p: p.write_bytes(b"\x07" * 64),
        ArtifactError,
        "w.safetensors",
    ),
    ("zip garbage .pt", "w.pt", _zip_garbage, ArtifactError, "w.pt"),
    ("pickle payload", "w.pt", lambda p: torch.save({"x": Payload()}, p), UnsafeInputError, "w.pt"),
    ("raw pickle", "w.pth", lambda p: p.write_bytes(pickle.dumps(Payload())), UnsafeInputError, "w.pth"),
    ("unknown suffix", "w.txt", lambda p: p.write_text("x"), ArtifactError, ".txt"),
    ("a list of tensors", "w.pt", lambda p: torch.save([torch.zeros(1)], p), ArtifactError, "state_dict"),
    (
        "NaN safetensors",
        "w.safetensors",
        lambda p: save_file({"a": torch.tensor([float("nan")])}, str(p)),
        NonFiniteWeightsError,
        "'a'",
    ),
    ("Inf .pt", "w.pt", lambda p: torch.save({"b": torch.tensor([float("-inf")])}, p), NonFiniteWeightsError, "'b'"),
]


@pytest.mark.parametrize(("name", "filename", "write", "cls", "culprit"), WEIGHTS, ids=[c[0] for c in WEIGHTS])
def test_bad_weights_files(name, filename, write, cls, culprit, tmp_path, capsys):
    path = tmp_path / filename
    write(path)
    with pytest.raises(cls) as info:
        load_weights(path)
    assert type(info.value) is cls and culprit.lower() in str(info.value).lower()
    before = snapshot(tmp_path)
    args = ["export", "lenet-300-100", "--weights", str(path), "--onnx", str(tmp_path / "m.onnx")]
    code, out, err = run_cli(args, capsys)
    assert_clean_failure(code, err, culprit)
    assert "payload ran" not in out + err
    with pytest.raises(cls):
        main([*args, "--debug"])
    assert snapshot(tmp_path) == before
