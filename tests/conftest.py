import os

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")

import pytest
import torch


@pytest.fixture(autouse=True)
def _restore_threads():
    threads = torch.get_num_threads()
    yield
    torch.set_num_threads(threads)


@pytest.fixture
def cli(capsys):
    """The command line in-process: ``cli([...]) -> (exit code, stdout, stderr)``."""
    from tests.cli_helpers import run_cli

    return lambda args: run_cli(args, capsys)
