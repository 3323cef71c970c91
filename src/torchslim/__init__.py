"""torchslim: make trained PyTorch models really smaller, faster and cheaper in energy."""

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

__version__ = "0.1.0"

__all__ = [
    "ConfigError", "Context", "DataSplits", "Recipe", "Step", "Targets", "TechniqueConfig",
    "TorchSlimError", "__version__",
]
