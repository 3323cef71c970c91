"""torchslim (bootstrap init; replaced once the packages land)."""
from torchslim.core import ConfigError, Context, DataSplits, Recipe, Step, Targets, TechniqueConfig, TorchSlimError
__version__ = "0.1.0"
