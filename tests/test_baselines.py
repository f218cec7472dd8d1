"""The card baselines are real learners: they solve data they should solve and fail on data they cannot."""

from types import SimpleNamespace

import numpy as np
import pytest

from s4d_hf.training.baselines import run_baseline

rng = np.random.default_rng(0)


def sines(n, shuffle_labels=False, length=400):
    examples = []
    for i in range(n):
        label = i % 3
        t = np.linspace(0, 1, length + int(rng.integers(-20, 20)))
        wave = np.sin(2 * np.pi * 8 * (label + 1) * t) + 0.3 * rng.standard_normal(len(t))
        examples.append({"input_values": wave[:, None].astype(np.float32),
                         "labels": int(rng.integers(3)) if shuffle_labels else label})
    return examples


@pytest.mark.parametrize("task", ["time-series-classification", "image-classification", "audio-classification"])
def test_classification_baselines_learn_and_do_not_cheat(task):
    learnable = SimpleNamespace(train=sines(60), eval=sines(15), test=sines(30), id2label={0: "a", 1: "b", 2: "c"})
    assert run_baseline(task, learnable)["accuracy"] >= 0.9
    noise = SimpleNamespace(train=sines(60, True), eval=sines(15, True), test=sines(60, True),
                            id2label={0: "a", 1: "b", 2: "c"})
    assert run_baseline(task, noise)["accuracy"] < 0.6


def test_ridge_recovers_a_linear_target():
    def split(n):
        out = []
        for _ in range(n):
            x = rng.standard_normal((30, 1)).astype(np.float32)
            out.append({"input_values": x, "labels": float(3 * x[:10].sum() - 1)})
        return out

    result = run_baseline("time-series-regression", SimpleNamespace(train=split(200), eval=split(40), test=split(40)))
    assert result["rmse"] < 0.05


def test_trigram_predicts_repetitive_text_and_not_random_bytes():
    text = np.frombuffer(b"to be or not to be, that is the question. " * 40, np.uint8).astype(np.int64) + 3
    windows = [{"input_ids": w} for w in np.array_split(text, 20)]
    easy = run_baseline("causal-lm", SimpleNamespace(train=windows[:16], eval=windows[16:18], test=windows[18:]))
    assert easy["bits_per_byte"] < 1.0
    noise = [{"input_ids": rng.integers(3, 259, 200)} for _ in range(20)]
    hard = run_baseline("causal-lm", SimpleNamespace(train=noise[:16], eval=noise[16:18], test=noise[18:]))
    assert hard["bits_per_byte"] > 6.0


def test_unknown_task_is_refused():
    with pytest.raises(ValueError, match="task"):
        run_baseline("translation", SimpleNamespace())


def test_a_lazily_augmented_split_gives_the_same_baseline_every_time():
    """spoken-digits' train split draws fresh augmentation from torch's generator on every access: the baseline
    reads it under a fixed seed, and leaves the caller's generator where it was."""
    import dataclasses

    import datasets
    import torch

    from s4d_hf.training.data.core import DatasetSplits
    from s4d_hf.training.data.hf_datasets import _as_lazy_split

    clean = sines(40, length=300)

    def augment(batch):
        noise = torch.randn(len(batch["i"]), 280).numpy() * 2.0   # strong: the draw changes the fit
        return {"input_values": [clean[i]["input_values"][:280] + n[:, None] for i, n in zip(batch["i"], noise)],
                "labels": [clean[i]["labels"] for i in batch["i"]]}

    lazy = _as_lazy_split(datasets.Dataset.from_dict({"i": list(range(len(clean)))}).with_transform(augment))
    splits = DatasetSplits(train=lazy, eval=sines(10, length=300), test=sines(60, length=300),
                           id2label={0: "a", 1: "b", 2: "c"}, input_dim=1, sampling_rate=8000)
    torch.manual_seed(123)
    state = torch.random.get_rng_state()
    first = run_baseline("audio-classification", splits)
    assert torch.equal(torch.random.get_rng_state(), state)
    torch.manual_seed(7)
    assert run_baseline("audio-classification", dataclasses.replace(splits)) == first
    assert [float(x) for x in lazy[0]["input_values"][:3, 0]] != [float(x) for x in lazy[0]["input_values"][:3, 0]]
