"""scripts/code_metrics.py counts what it says on a small tree built for it."""

import importlib.util
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def load_metrics():
    spec = importlib.util.spec_from_file_location("code_metrics", ROOT / "scripts" / "code_metrics.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules["code_metrics"] = module
    spec.loader.exec_module(module)
    return module


def body(n: int) -> str:
    return "".join(f"    x{i} = {i}\n" for i in range(n))


def test_metrics_count_a_small_tree(write):
    src = {
        "src/torchslim/__init__.py": "",
        "src/torchslim/big/__init__.py": "x = 1\n" * 501,
        "src/torchslim/train/long.py": (
            "def long_one():\n"
            + body(60)
            + "\n\ndef explained():\n    # long: a table of cases\n"
            + body(60)
            + "\n\ndef short():\n"
            + body(3)
        ),
        "src/torchslim/quantization/technique.py": (
            "from torchslim.train import TrainConfig\n\n\n"
            "def handler(config):\n    return TrainConfig(epochs=config.epochs, lr=1e-3)\n\n\n"
            "def fine():\n    return TrainConfig(epochs=1, lr=1e-3)\n\n\n"
            "def helper(epochs):\n    return TrainConfig(epochs=epochs)\n\n\n"
            "x = len(1)  # type: ignore\ny = len(1)  # type: ignore[arg-type]  # on purpose\n"
        ),
        "src/torchslim/quantization/config.py": (
            "import dataclasses\nfrom typing import ClassVar\n\n\n"
            "class TechniqueConfig:\n    name: ClassVar[str] = ''\n\n\n"
            "@dataclasses.dataclass\nclass Base(TechniqueConfig):\n    a: int = 1\n    b: int = 2\n\n\n"
            "@dataclasses.dataclass\nclass Quantize(Base):\n    c: int = 3\n    renamed: ClassVar[dict] = {}\n"
        ),
        "src/torchslim/measure/peek.py": (
            "from torchslim.quantization.technique import _hidden\n\n\n"
            "def f(m):\n    return getattr(m, 'weight_q', None)\n"
        ),
    }
    root = write(src)
    text = "\n".join(load_metrics().metrics(root))
    assert "source files over 500 lines: 1\n    big/__init__.py 501" in text
    # def line + 60 body lines = 61 > 60; the one with a `# long:` reason is counted raw only
    assert "functions over 60 lines without '# long:' reason: 1 (raw: 2)" in text
    assert "type: ignore comments: 2 (without code and reason: 1)" in text
    assert "(measure/io/report/deploy, tests/test_layering.py rule): 2" in text
    assert "(every package): 1" in text
    assert "TrainConfig( built from copied config.x fields: 1\n    quantization/technique.py:5" in text
    assert "(copies passed on): 2\n    quantization/technique.py:5\n    quantization/technique.py:13" in text
    assert "fields of the largest config dataclass: 3 (Quantize)" in text
