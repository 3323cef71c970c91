"""Built-in datasets (Fashion-MNIST, scikit-learn digits, tweet sentiment) with disjoint,
deterministic, seeded train / calibration / validation / test splits. Nothing is downloaded at
run time; a missing file raises DataNotFoundError saying how to get it."""

from torchslim.data._splits import SPLITS
from torchslim.data.digits import digits
from torchslim.data.fashion_mnist import fashion_mnist
from torchslim.data.registry import ALIASES, DATASETS, DatasetInfo, dataset_info, load_splits
from torchslim.data.tweets import TextDataset, collate_text, tweets

__all__ = [
    "ALIASES",
    "DATASETS",
    "DatasetInfo",
    "SPLITS",
    "TextDataset",
    "collate_text",
    "dataset_info",
    "digits",
    "fashion_mnist",
    "load_splits",
    "tweets",
]
