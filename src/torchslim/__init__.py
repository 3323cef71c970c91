"""torchslim: make trained PyTorch models really smaller, faster and cheaper in energy.

Quick start::

    import torchslim as ts
    model = ts.models.build_model("fmnist-cnn")
    data = ts.data.load_splits("fashion-mnist")
    result = ts.compress(model, data, recipe="finetune")
    print(result.report)
    result.save("runs/x")
"""

from torchslim import data, deploy, distillation, graph, io, measure, models, pruning, quantization, train
from torchslim.api import CompressionResult, analyze, compress
from torchslim.core import (
    ConfigError,
    Context,
    DataSplits,
    Recipe,
    Step,
    Targets,
    TechniqueConfig,
    TorchSlimError,
)
from torchslim.io import load, save
from torchslim.lottery import lottery
from torchslim.search import Target

__version__ = "0.1.0"

__all__ = [
    "CompressionResult",
    "ConfigError",
    "Context",
    "DataSplits",
    "Recipe",
    "Step",
    "Target",
    "Targets",
    "TechniqueConfig",
    "TorchSlimError",
    "__version__",
    "analyze",
    "compress",
    "data",
    "deploy",
    "distillation",
    "graph",
    "io",
    "load",
    "lottery",
    "measure",
    "models",
    "pruning",
    "quantization",
    "save",
    "train",
]
