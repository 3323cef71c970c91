"""Built-in datasets (Fashion-MNIST, scikit-learn digits, tweet sentiment) with disjoint,
deterministic, seeded train / calibration / validation / test splits, and adapters for the user's
own data (image folders, numpy / CSV tables, text files, Hugging Face datasets read offline, Python
iterables; see docs/data.md).
Nothing is downloaded at run time; a missing file raises DataNotFoundError saying how to get it."""

from torchslim.data._splits import SPLITS
from torchslim.data.adapters import UNLABELLED, SampleSet, from_iterable, image_folder, table, text_lines
from torchslim.data.custom import (
    BUILTIN_PREPROCESS,
    ImagePreprocess,
    is_labelled,
    load_custom,
    preprocess_of,
    split_samples,
    split_sizes,
    with_pseudo_labels,
)
from torchslim.data.digits import digits
from torchslim.data.fashion_mnist import fashion_mnist
from torchslim.data.hf_datasets import hf_dataset
from torchslim.data.registry import ALIASES, DATASETS, DatasetInfo, dataset_info, load_splits
from torchslim.data.tweets import TextDataset, collate_text, tweets

__all__ = [
    "ALIASES",
    "BUILTIN_PREPROCESS",
    "DATASETS",
    "DatasetInfo",
    "ImagePreprocess",
    "SPLITS",
    "SampleSet",
    "TextDataset",
    "UNLABELLED",
    "collate_text",
    "dataset_info",
    "digits",
    "fashion_mnist",
    "from_iterable",
    "hf_dataset",
    "image_folder",
    "is_labelled",
    "load_custom",
    "load_splits",
    "preprocess_of",
    "split_samples",
    "split_sizes",
    "table",
    "text_lines",
    "tweets",
    "with_pseudo_labels",
]
