import hashlib
import os
import pathlib
import signal

import numpy as np
import pytest
import torch

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")

FIXTURES = pathlib.Path(__file__).parent / "fixtures"


def load_npz(name: str) -> dict[str, np.ndarray]:
    with np.load(FIXTURES / name) as data:
        return {k: data[k] for k in data.files}


@pytest.fixture(autouse=True)
def _seed():
    torch.manual_seed(0)
    np.random.seed(0)


@pytest.fixture
def fail_if_it_hangs():
    """Fail a test that runs longer than 60 s instead of letting it hang (a degenerate size looping forever)."""
    def hang(signum, frame):
        raise TimeoutError("hangs instead of raising")

    previous = signal.signal(signal.SIGALRM, hang)
    signal.alarm(60)
    yield
    signal.alarm(0)
    signal.signal(signal.SIGALRM, previous)


def file_tree(root) -> dict:
    """Every path under ``root`` -> the sha256 of a file's bytes ("dir" for a folder, the target for a link): taken
    before and after a command, it shows what the command changed, added or removed."""
    out = {}
    for dirpath, dirnames, filenames in os.walk(root):
        for name in dirnames + filenames:
            path = os.path.join(dirpath, name)
            rel = os.path.relpath(path, root)
            if os.path.islink(path):
                out[rel] = "link:" + os.readlink(path)
            elif os.path.isdir(path):
                out[rel] = "dir"
            else:
                with open(path, "rb") as f:
                    out[rel] = hashlib.sha256(f.read()).hexdigest()
    return out
