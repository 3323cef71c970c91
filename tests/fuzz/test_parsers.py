"""Fuzzing every parser with hypothesis: recipe YAML, the artifact manifest, report.json, CLI arguments.

Every input must end in a result or one of torchslim's typed errors (a subclass of
:class:`~torchslim.core.errors.TorchSlimError`); the command line must exit 0 or 2, never with an
internal error. Each parser gets a smoke run of SMOKE inputs in the fast suite and a full run of
FULL inputs under the ``fuzz`` marker (``pytest -m fuzz tests/fuzz``).
"""

from __future__ import annotations

import contextlib
import io
import json
import shutil
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import Any
from unittest import mock

import pytest
import yaml
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from tests.safety.conftest import make_artifact

import torchslim  # noqa: F401  (registers techniques and plan replays)
from torchslim.cli.main import main
from torchslim.core.errors import TorchSlimError
from torchslim.core.recipe import Recipe
from torchslim.io import load, read_report

SMOKE = 200
FULL = 10_000

scalars = (
    st.none()
    | st.booleans()
    | st.integers(min_value=-(2**40), max_value=2**40)
    | st.floats(allow_nan=False)
    | st.text(max_size=12)
)
json_values = st.recursive(
    scalars,
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=8), inner, max_size=4),
    max_leaves=20,
)


def fuzz(body: Callable[[Any], None], strategy: st.SearchStrategy[Any], examples: int) -> int:
    """Run `body` on `examples` inputs drawn from `strategy`; return how many ran."""
    count = [0]

    @settings(
        max_examples=examples,
        deadline=None,
        database=None,
        derandomize=examples <= SMOKE,
        suppress_health_check=list(HealthCheck),
    )
    @given(strategy)
    def run(value: Any) -> None:
        count[0] += 1
        body(value)

    run()
    return count[0]


def typed_only(call: Callable[[], Any]) -> None:
    with contextlib.suppress(TorchSlimError):
        call()


# ---- recipe YAML ------------------------------------------------------------------------------

TECHNIQUES = ["finetune", "channel_pruning", "magnitude_pruning", "quantize", "distill", "nope"]
CONFIG_KEYS = ["train", "lr", "epochs", "ratio", "sparsity", "weights", "bits", "activations", "granularity"]
step = st.fixed_dictionaries(
    {"technique": st.sampled_from(TECHNIQUES) | st.text(max_size=6) | json_values},
    optional={
        "config": st.dictionaries(st.sampled_from(CONFIG_KEYS) | st.text(max_size=6), json_values, max_size=4)
        | json_values,
        "targets": st.dictionaries(st.sampled_from(["names", "types", "exclude", "x"]), json_values, max_size=3)
        | json_values,
    },
)
recipe_docs = st.one_of(
    st.text(max_size=200),
    st.builds(lambda s, v: yaml.safe_dump({"version": v, "steps": s}), st.lists(step, max_size=3), json_values),
    st.builds(lambda s: yaml.safe_dump({"steps": s}), st.lists(step, min_size=1, max_size=3)),
    json_values.map(yaml.safe_dump),
    st.binary(max_size=120).map(lambda b: b.decode("latin-1")),
)


def recipe_body(text: str) -> None:
    typed_only(lambda: Recipe.from_yaml(text))


# ---- the artifact manifest --------------------------------------------------------------------

REPLAYS = ["drop_layers", "fold_batchnorm", "prune_channels", "quantize", "other"]
MANIFEST_KEYS = ["spec", "plan", "tensors", "codecs", "config", "format", "format_version"]
plan_entry = st.fixed_dictionaries(
    {"kind": st.sampled_from(REPLAYS)},
    optional={
        "ops": st.lists(
            st.dictionaries(
                st.sampled_from(["module", "pruner", "fn", "dim", "idxs", "cut", "param"]), json_values, max_size=5
            ),
            max_size=3,
        ),
        "idxs": st.text(alphabet="0123456789-,", max_size=16) | json_values,
        "version": json_values,
        "pairs": json_values,
        "layers": json_values,
    },
)
codec_entry = st.fixed_dictionaries(
    {},
    optional={
        "codec": st.sampled_from(["bitmask", "index", "dense"]) | json_values,
        "shape": st.lists(st.integers(-2, 40_000), max_size=5) | json_values,
        "dtype": st.sampled_from(["float32", "int8", "load", "__class__"]) | json_values,
    },
)
KEYS = ["features.conv1.weight", "classifier.weight", "fc.fc1.bias", "ghost"]
mutation = st.one_of(
    st.tuples(st.just("top"), st.sampled_from(MANIFEST_KEYS), json_values),
    st.tuples(st.just("plan"), st.lists(plan_entry, max_size=3), st.none()),
    st.tuples(st.just("codec"), st.sampled_from(KEYS), codec_entry),
    st.tuples(st.just("spec"), st.sampled_from(["num_classes", "channels", "name", "x"]), json_values),
    st.tuples(st.just("tensors"), st.sampled_from([*KEYS, "fc", "features.conv1", ""]), json_values),
)


class Manifests:
    def __init__(self, base: Path) -> None:
        self.base = base
        self.manifest = json.loads((base / "torchslim.json").read_text())
        self.work = Path(tempfile.mkdtemp(prefix="fuzz-manifest-"))
        shutil.copy(base / "model.safetensors", self.work / "model.safetensors")

    def __call__(self, changes: list[tuple[str, Any, Any]]) -> None:
        manifest = json.loads(json.dumps(self.manifest))
        for kind, key, value in changes:
            if kind == "top":
                manifest[key] = value
            elif kind == "plan":
                manifest["plan"] = key
            elif kind == "codec" and isinstance(manifest.get("codecs"), dict):
                old = manifest["codecs"].get(key)
                manifest["codecs"][key] = {**(old if isinstance(old, dict) else {}), **value}
            elif kind == "spec" and isinstance(manifest.get("spec"), dict):
                if key == "name":
                    manifest["spec"]["name"] = value
                else:
                    manifest["spec"].setdefault("kwargs", {})
                    if isinstance(manifest["spec"]["kwargs"], dict):
                        manifest["spec"]["kwargs"][key] = value
            elif kind == "tensors":
                manifest["tensors"] = {key: value}
        (self.work / "torchslim.json").write_text(json.dumps(manifest))
        typed_only(lambda: load(self.work))


# ---- report.json ------------------------------------------------------------------------------

REPORT_KEYS = ["model", "dataset", "before", "after", "steps", "notes", "techniques", "x"]
report_docs = st.one_of(
    json_values.map(lambda v: json.dumps(v).encode()),
    st.dictionaries(st.sampled_from(REPORT_KEYS), json_values, max_size=6).map(lambda v: json.dumps(v).encode()),
    st.binary(max_size=80),
)


def run_cli(args: list[str]) -> tuple[int, str]:
    err = io.StringIO()
    with contextlib.redirect_stdout(io.StringIO()), contextlib.redirect_stderr(err):
        try:
            main(args)
            code = 0
        except SystemExit as exc:
            code = exc.code if isinstance(exc.code, int) else 1
    return code, err.getvalue()


class Reports:
    def __init__(self) -> None:
        self.work = Path(tempfile.mkdtemp(prefix="fuzz-report-"))

    def __call__(self, data: bytes) -> None:
        (self.work / "report.json").write_bytes(data)
        typed_only(lambda: read_report(self.work))
        code, err = run_cli(["report", str(self.work)])
        assert code in (0, 2) and "Traceback" not in err, err


# ---- CLI arguments ----------------------------------------------------------------------------

COMMANDS = ["analyze", "train", "compress", "distill", "export", "report", "list", "demo", "frob", "--help"]
OPTIONS = [
    "--data", "--weights", "--out", "--recipe", "--onnx", "--train-samples", "--eval-samples", "--threads",
    "--epochs", "--lr", "--seed", "--batch-size", "--latency-batch",
    "--train-batch-size", "--force", "--num-classes", "--repeats", "--set", "--student",
    "--sensitivity", "--sparsities", "--json", "--quiet", "--checkpoint-every", "--opset", "--max-steps",
    "--temperature", "--alpha", "--feature", "--allow-nonfinite", "--bogus", "-x",
]  # fmt: skip
VALUES = ["0", "-1", "1", "3", "1e9", "nan", "x", "", "lenet-300-100", "fashion-mnist", "finetune", "out", "/", "."]
cli_args = st.tuples(
    st.sampled_from(COMMANDS),
    st.lists(st.sampled_from(OPTIONS) | st.sampled_from(VALUES) | st.text(max_size=6), max_size=8),
)


class Reached(TorchSlimError):
    """Raised where a command would start real work: its arguments were all accepted."""


def _reached(*_: Any, **__: Any) -> Any:
    raise Reached("arguments accepted")


class Commands:
    def __init__(self) -> None:
        self.work = Path(tempfile.mkdtemp(prefix="fuzz-cli-"))

    def __call__(self, parts: tuple[str, list[str]]) -> None:
        command, rest = parts
        with (
            mock.patch("torchslim.cli.resolve.resolve_model", _reached),
            mock.patch("torchslim.cli.resolve.resolve_data", _reached),
            mock.patch("torchslim.demo.run_demo", _reached),
            contextlib.chdir(self.work),
        ):
            code, err = run_cli([command, *rest])
        assert code in (0, 2) and "Traceback" not in err, (command, rest, err)
        leftovers = [p.name for p in self.work.iterdir()]
        assert leftovers == [], leftovers


@pytest.fixture(scope="module")
def fuzz_artifact(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return make_artifact(tmp_path_factory.mktemp("fuzz") / "lenet5")


def _targets(artifact: Path) -> dict[str, tuple[Callable[[Any], None], st.SearchStrategy[Any]]]:
    return {
        "recipe": (recipe_body, recipe_docs),
        "manifest": (Manifests(artifact), st.lists(mutation, min_size=1, max_size=3)),
        "report": (Reports(), report_docs),
        "cli": (Commands(), cli_args),
    }


PARSERS = ["recipe", "manifest", "report", "cli"]


@pytest.mark.parametrize("parser", PARSERS)
def test_fuzz_smoke(parser: str, fuzz_artifact: Path) -> None:
    body, strategy = _targets(fuzz_artifact)[parser]
    assert fuzz(body, strategy, SMOKE) >= SMOKE


@pytest.mark.fuzz
@pytest.mark.slow
@pytest.mark.parametrize("parser", PARSERS)
def test_fuzz_full(parser: str, fuzz_artifact: Path) -> None:
    body, strategy = _targets(fuzz_artifact)[parser]
    ran = fuzz(body, strategy, FULL)
    print(f"fuzz {parser}: {ran} inputs, 0 untyped exceptions")
    assert ran >= FULL
