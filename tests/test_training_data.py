"""s4d-hf train's data side: user-path formats, non-leaking deterministic splits, normalisation from train only,
the collator, and the offline metric modules. Also the small generated datasets the other training tests use."""

import json
import math
import os

import numpy as np
import pytest
import torch

from s4d_hf.training.collate import S4DDataCollator
from s4d_hf.training.data import (
    BYTE_VOCAB_SIZE,
    check_splits,
    fit_normalization,
    load_dataset_spec,
    normalize_splits,
    split_indices,
    text_to_ids,
)


# ---------------------------------------------------------------------------------------------------------------
# Generated datasets (used by the other test_training_* files too)
# ---------------------------------------------------------------------------------------------------------------

def make_level_npz(path, n=64, length=16, channels=2, classes=2, seed=0, **extra):
    """Classes differ by the level of channel 0 (+ noise): a tiny S4D learns it in a few dozen steps."""
    rng = np.random.default_rng(seed)
    y = np.arange(n) % classes
    X = 0.7 * rng.standard_normal((n, length, channels))
    X[:, :, 0] += (y[:, None] - (classes - 1) / 2) * 1.5
    np.savez(path, X=X.astype(np.float32), y=y, **extra)
    return path


def make_regression_npz(path, n=64, length=16, seed=0):
    """Target = 40 + 10 * (level of the series), far from 0 and 1 so that an unscaled head would be visibly wrong."""
    rng = np.random.default_rng(seed)
    level = rng.uniform(-1, 1, n)
    X = level[:, None, None] + 0.3 * rng.standard_normal((n, length, 1))
    np.savez(path, X=X.astype(np.float32), y=(40 + 10 * level).astype(np.float32))
    return path


def make_text(path, n_bytes=6000, seed=0):
    rng = np.random.default_rng(seed)
    words = ["to be", "or not", "that is", "the question", "whether", "tis nobler", "in the mind"]
    text = " ".join(words[i] for i in rng.integers(0, len(words), n_bytes // 5))
    path.write_text(text[:n_bytes] + "\n")
    return path


# ---------------------------------------------------------------------------------------------------------------
# Splits
# ---------------------------------------------------------------------------------------------------------------

def test_split_indices_are_disjoint_complete_deterministic_and_stratified():
    labels = np.repeat([0, 1, 2], [30, 20, 10])
    parts = split_indices(60, (0.1, 0.1), seed=3, stratify=labels)
    assert sorted(np.concatenate(parts).tolist()) == list(range(60))  # every example exactly once
    again = split_indices(60, (0.1, 0.1), seed=3, stratify=labels)
    assert all(np.array_equal(a, b) for a, b in zip(parts, again))
    other = split_indices(60, (0.1, 0.1), seed=4, stratify=labels)
    assert not all(np.array_equal(a, b) for a, b in zip(parts, other))
    for part in parts[:2]:  # every class is represented in eval and test, in proportion
        assert np.bincount(labels[part], minlength=3).tolist() == [3, 2, 1]


def test_groups_never_straddle_two_splits():
    groups = np.repeat(np.arange(12), 5)  # e.g. 12 speakers with 5 clips each
    parts = split_indices(60, (0.2, 0.2), seed=0, groups=groups)
    owners = [set(groups[p].tolist()) for p in parts]
    assert owners[0].isdisjoint(owners[1]) and owners[0].isdisjoint(owners[2]) and owners[1].isdisjoint(owners[2])
    assert sum(len(p) for p in parts) == 60


def test_npz_without_test_split_is_carved_and_with_test_split_is_kept(tmp_path):
    path = make_level_npz(tmp_path / "a.npz", n=50, classes=2)
    splits = load_dataset_spec(str(path), "time-series-classification", seed=0)
    assert (len(splits.train), len(splits.eval), len(splits.test)) == (40, 5, 5)
    X = np.load(path)["X"]
    seen = [ex["input_values"].tobytes() for s in (splits.train, splits.eval, splits.test) for ex in s]
    assert len(set(seen)) == 50 and set(seen) == {x.tobytes() for x in X}  # no example lost or duplicated
    assert splits.id2label == {0: "0", 1: "1"} and splits.input_dim == 2

    rng = np.random.default_rng(1)
    Xt = rng.standard_normal((7, 16, 2)).astype(np.float32)
    np.savez(tmp_path / "b.npz", X=X, y=np.arange(50) % 2, X_test=Xt, y_test=np.arange(7) % 2)
    splits = load_dataset_spec(str(tmp_path / "b.npz"), "time-series-classification", seed=0)
    assert len(splits.test) == 7 and all(np.array_equal(e["input_values"], x) for e, x in zip(splits.test, Xt))
    assert (len(splits.train), len(splits.eval)) == (45, 5)


def test_npz_lengths_string_labels_and_groups(tmp_path):
    X = np.zeros((6, 10, 1), np.float32)
    lengths = np.array([3, 10, 5, 7, 2, 9])
    names = np.array(["walk", "run", "walk", "sit", "run", "sit"])
    np.savez(tmp_path / "v.npz", X=X, y=names, lengths=lengths, groups=np.array([0, 0, 1, 1, 2, 2]))
    splits = load_dataset_spec(str(tmp_path / "v.npz"), "time-series-classification", seed=0)
    assert splits.id2label == {0: "run", 1: "sit", 2: "walk"}  # sorted class names
    got = sorted(len(ex["input_values"]) for s in (splits.train, splits.eval, splits.test) for ex in s)
    assert got == sorted(lengths.tolist())
    assert all(len(s) == 2 for s in (splits.train, splits.eval, splits.test))  # one group (2 examples) each


def test_audio_and_image_folders(tmp_path):
    soundfile = pytest.importorskip("soundfile")
    Image = pytest.importorskip("PIL.Image")
    rng = np.random.default_rng(0)
    for label in ("no", "yes"):
        (tmp_path / "audio" / label).mkdir(parents=True)
        (tmp_path / "img" / label).mkdir(parents=True)
        for i in range(5):
            soundfile.write(tmp_path / "audio" / label / f"{i}.wav", rng.uniform(-0.5, 0.5, 80 + i), 8000,
                            subtype="FLOAT")
            Image.fromarray(rng.integers(0, 256, (4, 3), dtype=np.uint8)).save(tmp_path / "img" / label / f"{i}.png")
    audio = load_dataset_spec(str(tmp_path / "audio"), "audio-classification")
    assert audio.sampling_rate == 8000 and audio.input_dim == 1 and audio.id2label == {0: "no", 1: "yes"}
    assert len(audio.train) + len(audio.eval) + len(audio.test) == 10
    first = soundfile.read(tmp_path / "audio" / "no" / "0.wav", dtype="float32")[0]
    all_audio = [ex["input_values"][:, 0] for s in (audio.train, audio.eval, audio.test) for ex in s]
    assert any(len(a) == len(first) and np.array_equal(a, first) for a in all_audio)

    images = load_dataset_spec(str(tmp_path / "img"), "image-classification")
    assert images.image_size == (4, 3) and images.input_dim == 1
    pixels = np.asarray(Image.open(tmp_path / "img" / "yes" / "4.png"), dtype=np.float32).reshape(12, 1) / 255
    assert any(np.array_equal(ex["input_values"], pixels) for s in (images.train, images.eval, images.test) for ex in s)
    resized = load_dataset_spec(str(tmp_path / "img"), "image-classification", image_size=(8, 6))
    assert resized.image_size == (8, 6) and resized.train[0]["input_values"].shape == (48, 1)


def test_csv_wide_format(tmp_path):
    rows = ["label,split,t0,t1,t2,t3"]
    for i in range(12):
        values = [str(i + k) for k in range(4 - i % 2)] + [""] * (i % 2)  # odd rows are one step shorter
        rows.append(f"{'ab'[i % 2]},{'test' if i >= 10 else 'train'}," + ",".join(values))
    (tmp_path / "s.csv").write_text("\n".join(rows) + "\n")
    splits = load_dataset_spec(str(tmp_path / "s.csv"), "time-series-classification")
    assert splits.id2label == {0: "a", 1: "b"} and len(splits.test) == 2
    assert [ex["input_values"][:, 0].tolist() for ex in splits.test] == [[10, 11, 12, 13], [11, 12, 13]]
    (tmp_path / "bad.csv").write_text("label,t0,t1,t2\na,1,,3\n")
    with pytest.raises(ValueError, match="line 2"):
        load_dataset_spec(str(tmp_path / "bad.csv"), "time-series-classification")


def test_text_file_is_cut_into_contiguous_byt5_chunks(tmp_path):
    from transformers import ByT5Tokenizer

    text = "Fair is foul, and foul is fair: hover through the fog and filthy air. " * 30
    (tmp_path / "t.txt").write_text(text)
    splits = load_dataset_spec(str(tmp_path / "t.txt"), "causal-lm", block_size=64)
    assert splits.vocab_size == BYTE_VOCAB_SIZE == len(ByT5Tokenizer(extra_ids=0))
    ids = np.concatenate([ex["input_ids"] for s in (splits.train, splits.eval, splits.test) for ex in s])
    assert np.array_equal(ids, text_to_ids(text))  # train, eval, test are consecutive pieces of the text, in order
    assert all(len(ex["input_ids"]) == 64 for ex in splits.train[:-1])  # the last chunk of a split may be shorter
    assert text_to_ids("Ab").tolist() == ByT5Tokenizer(extra_ids=0)("Ab").input_ids[:-1]  # without the </s>


# ---------------------------------------------------------------------------------------------------------------
# Normalisation, checks, collator
# ---------------------------------------------------------------------------------------------------------------

def test_time_series_normalisation_uses_the_train_split_only(tmp_path):
    splits = load_dataset_spec(str(make_level_npz(tmp_path / "a.npz", n=40)), "time-series-classification")
    stats = fit_normalization("time-series-classification", splits.train)
    train = np.concatenate([ex["input_values"] for ex in splits.train]).astype(np.float64)
    everything = np.concatenate([ex["input_values"] for s in (splits.train, splits.eval, splits.test) for ex in s])
    np.testing.assert_allclose(stats["mean"], train.mean(0), rtol=1e-6)
    np.testing.assert_allclose(stats["std"], train.std(0), rtol=1e-6)
    assert not np.allclose(stats["mean"], everything.mean(0), rtol=1e-6, atol=0)
    normalized, _ = normalize_splits("time-series-classification", splits)
    x = splits.test[0]["input_values"]
    np.testing.assert_allclose(normalized.test[0]["input_values"], (x - train.mean(0)) / train.std(0), rtol=1e-5)


def test_audio_is_normalised_per_clip():
    from s4d_hf.training.data import normalize_input

    x = np.random.default_rng(0).uniform(-0.2, 0.6, (100, 1)).astype(np.float32)
    y = normalize_input("audio-classification", x, {})
    np.testing.assert_allclose([y.mean(), y.std()], [0.0, 1.0], atol=1e-5)


def test_check_splits_names_the_problem(tmp_path):
    splits = load_dataset_spec(str(make_level_npz(tmp_path / "a.npz", n=20)), "time-series-classification")
    splits.test[1] = {"input_values": splits.test[1]["input_values"]}
    with pytest.raises(ValueError, match="test example 1: labels missing"):
        check_splits("time-series-classification", splits)
    splits.test[1] = {"input_values": np.zeros((5, 3), np.float32), "labels": 0}
    with pytest.raises(ValueError, match="input_dim mismatch: 3 channels.*input_dim=2"):
        check_splits("time-series-classification", splits)
    splits.test[1] = {"input_values": np.zeros((5, 2), np.float32), "labels": 2}
    with pytest.raises(ValueError, match="label/num_labels mismatch: label 2 .*num_labels=2"):
        check_splits("time-series-classification", splits)
    splits.test[1] = {"input_values": np.full((5, 2), np.nan, np.float32), "labels": 0}
    with pytest.raises(ValueError, match="NaN"):
        check_splits("time-series-classification", splits)
    splits.test = []
    with pytest.raises(ValueError, match="empty dataset: the test split"):
        check_splits("time-series-classification", splits)


def test_collator_pads_masks_and_padding_does_not_change_the_logits():
    from s4d_hf import S4DConfig, S4DForSequenceClassification

    rng = np.random.default_rng(0)
    examples = [{"input_values": rng.standard_normal((n, 2)).astype(np.float32), "labels": i % 2}
                for i, n in enumerate((5, 9, 3))]
    batch = S4DDataCollator("time-series-classification")(examples)
    assert batch["input_values"].shape == (3, 9, 2) and batch["labels"].dtype == torch.long
    assert batch["attention_mask"].sum(1).tolist() == [5, 9, 3]
    assert torch.all(batch["input_values"][0, 5:] == 0)
    model = S4DForSequenceClassification(S4DConfig(input_dim=2, d_model=8, n_layers=2, d_state=4, num_labels=2)).eval()
    with torch.no_grad():
        padded = model(**{k: v for k, v in batch.items() if k != "labels"}).logits
        alone = torch.cat([model(input_values=torch.from_numpy(ex["input_values"])[None]).logits for ex in examples])
    torch.testing.assert_close(padded, alone, atol=1e-5, rtol=1e-5)

    lm = S4DDataCollator("causal-lm")([{"input_ids": np.array([5, 6, 7])}, {"input_ids": np.array([8])}])
    assert lm["input_ids"].tolist() == [[5, 6, 7], [8, 0, 0]]
    assert lm["labels"].tolist() == [[5, 6, 7], [8, -100, -100]]
    reg = S4DDataCollator("time-series-regression")([{"input_values": np.zeros((2, 1)), "labels": 1.5}])
    assert reg["labels"].dtype == torch.float32


# ---------------------------------------------------------------------------------------------------------------
# Offline metrics
# ---------------------------------------------------------------------------------------------------------------

def test_local_metric_modules_load_offline_and_match_brute_force(monkeypatch, tmp_path):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.chdir(tmp_path)  # evaluate resolves bare names against the CWD: the package path must not need it
    from s4d_hf.training.task_metrics import load_metric

    pred, ref = np.array([0, 1, 1, 2, 2, 2, 0]), np.array([0, 1, 2, 2, 2, 1, 1])
    assert load_metric("accuracy").compute(predictions=pred, references=ref)["accuracy"] == pytest.approx(4 / 7)
    # F1 = 2TP / (2TP + FP + FN) per class, (TP, FP, FN): 0 (1, 1, 0) -> 2/3, 1 (1, 1, 2) -> 2/5, 2 (2, 1, 1) -> 2/3
    f1 = load_metric("f1").compute(predictions=pred, references=ref, num_labels=3)["f1"]
    assert f1 == pytest.approx((2 / 3 + 2 / 5 + 2 / 3) / 3)
    p, r = np.array([1.0, 2.0, 4.0]), np.array([1.5, 2.0, 1.0])
    assert load_metric("mse").compute(predictions=p, references=r)["mse"] == pytest.approx((0.25 + 9) / 3)
    assert load_metric("mae").compute(predictions=p, references=r)["mae"] == pytest.approx(3.5 / 3)
    assert load_metric("rmse").compute(predictions=p, references=r)["rmse"] == pytest.approx(math.sqrt(9.25 / 3))
    with pytest.raises(ValueError, match="no local metric 'bleu'"):
        load_metric("bleu")


def test_metric_modules_are_package_data():
    """pyproject.toml ships metrics/*/*.py (a wheel without them would fail offline at the first evaluation)."""
    tomllib = pytest.importorskip("tomllib")  # Python 3.11+

    root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    with open(os.path.join(root, "pyproject.toml"), "rb") as f:
        package_data = tomllib.load(f)["tool"]["setuptools"]["package-data"]
    assert "metrics/*/*.py" in package_data["s4d_hf.training"]


# ---------------------------------------------------------------------------------------------------------------
# Running the command in-process (used by the other test_training_* files)
# ---------------------------------------------------------------------------------------------------------------

TINY = ["--d-model", "16", "--n-layers", "1", "--d-state", "8", "--logging-steps", "4", "--no-progress"]


def train_cli(*args) -> int:
    """``s4d-hf train ARGS`` in this process, with a fresh accelerate state (it is a per-process singleton)."""
    from accelerate.state import AcceleratorState

    from s4d_hf import train

    AcceleratorState._reset_state(reset_partial_state=True)
    try:
        return train.main([str(a) for a in args])
    finally:
        AcceleratorState._reset_state(reset_partial_state=True)


def logged_losses(folder) -> list[float]:
    import json

    return [e["loss"] for e in json.loads((folder / "log_history.json").read_text()) if "loss" in e]


def model_weights(path) -> dict:
    from safetensors.numpy import load_file

    return load_file(str(path))


def max_weight_difference(a, b) -> float:
    a, b = model_weights(a), model_weights(b)
    assert a.keys() == b.keys()
    return max(float(np.abs(a[k].astype(np.float64) - b[k]).max()) for k in a)


def reevaluate_test_split(folder, dataset, task, seed=0) -> dict:
    """Independent check of a finished run: reload the folder, rebuild the test split from the dataset file with
    the same seed and normalisation, and recompute the metrics with numpy."""
    from transformers import AutoModelForSequenceClassification

    import s4d_hf  # noqa: F401  (registers S4D)

    splits, _ = normalize_splits(task, load_dataset_spec(str(dataset), task, seed=seed))
    model = AutoModelForSequenceClassification.from_pretrained(str(folder)).eval()
    batch = S4DDataCollator(task)(splits.test)
    with torch.no_grad():
        out = model(input_values=batch["input_values"], attention_mask=batch["attention_mask"]).logits
    labels = batch["labels"].numpy()
    if task == "time-series-regression":
        pred = out.numpy().reshape(labels.shape)
        return {"test_rmse": float(np.sqrt(np.mean((pred.astype(np.float64) - labels) ** 2))), "predictions": pred}
    loss = torch.nn.functional.cross_entropy(out, batch["labels"]).item()
    return {"test_accuracy": float((out.argmax(-1).numpy() == labels).mean()), "test_loss": loss}


def test_builtin_names_dispatch_to_the_builtin_registry(monkeypatch, tmp_path):
    """The agreed interface with s4d_hf.training.data.builtin: BUILTIN_DATASETS (name -> description) and
    load_builtin(name, task, seed=0, **options) -> DatasetSplits; --dataset-option KEY=VALUE reaches the loader."""
    import json

    from s4d_hf.training.data import DatasetSplits, builtin

    calls = []

    def load_builtin(name, task, seed=0, **options):
        calls.append((name, task, seed, options))
        rng = np.random.default_rng(seed)
        make = lambda n: [{"input_values": rng.standard_normal((12, 1)).astype(np.float32) + (i % 2), "labels": i % 2}
                          for i in range(n)]  # noqa: E731
        return DatasetSplits(train=make(24), eval=make(6), test=make(6), id2label={0: "off", 1: "on"}, input_dim=1,
                             description="a fake built-in", license="CC0-1.0", citation="nobody 2026")

    monkeypatch.setitem(builtin.BUILTIN_DATASETS, "FakeSet", "a fake built-in")
    monkeypatch.setattr(builtin, "load_builtin", load_builtin)

    out = tmp_path / "out"
    assert train_cli("--task", "time-series-classification", "--dataset", "FakeSet", "--dataset-option", "size=3",
                     "--dataset-option", "voices=all", "--seed", 5, "--output-dir", out, *TINY, "--max-steps", 3) == 0
    assert calls == [("FakeSet", "time-series-classification", 5, {"size": 3, "voices": "all"})]
    card = (out / "README.md").read_text()
    assert "a fake built-in" in card and "CC0-1.0" in card and "nobody 2026" in card
    assert json.loads((out / "config.json").read_text())["id2label"] == {"0": "off", "1": "on"}
    assert train_cli("--task", "time-series-classification", "--dataset", "fakeset", "--output-dir", tmp_path / "x",
                     *TINY, "--max-steps", 3) == 2  # names are exact; the error lists the built-ins


def test_fashion_mnist_builtin_trains_and_saves_its_image_processor(tmp_path):
    """The real built-in loader (Debian dataset-fashion-mnist): [0, 1] pixels, square images without image_size."""
    import json

    from s4d_hf.training.data.builtin import fashion_mnist

    if not os.path.isdir(fashion_mnist.FASHION_MNIST_DIR):
        pytest.skip("needs Debian's dataset-fashion-mnist")
    out = tmp_path / "fm"
    assert train_cli("--task", "image-classification", "--dataset", "fashion-mnist", "--dataset-option",
                     "image_size=7", "--dataset-option", "max_train_samples=64", "--dataset-option",
                     "max_eval_samples=16", "--dataset-option", "max_test_samples=16", "--output-dir", out, *TINY,
                     "--batch-size", 16, "--max-steps", 4) == 0
    preprocessor = json.loads((out / "preprocessor_config.json").read_text())
    assert preprocessor["size"] == {"height": 7, "width": 7} and preprocessor["do_grayscale"] is True
    assert "Zalando" in (out / "README.md").read_text()
    from s4d_hf.hub.evaluation import evaluate_folder  # the folder's own image processor on the run's test split

    run = json.loads((out / "all_results.json").read_text())
    assert abs(evaluate_folder(out)["accuracy"] - run["test_accuracy"]) <= 2 / 16  # 8-bit PIL input vs float
    assert train_cli("--task", "image-classification", "--dataset", "fashion-mnist", "--image-size", "7x7",
                     "--output-dir", tmp_path / "x", *TINY, "--max-steps", 4) == 2  # built-ins: --dataset-option


def test_data_seed_fixes_the_splits_while_seed_changes_the_init(tmp_path):
    from s4d_hf.hub.evaluation import run_splits

    data = make_level_npz(tmp_path / "levels.npz", n=64)  # no test split: carved out with the data seed
    common = ["--task", "time-series-classification", "--dataset", data, *TINY, "--max-steps", "1"]
    runs = {"seed0": [], "seed1-data0": ["--seed", "1", "--data-seed", "0"], "seed1": ["--seed", "1"]}
    for name, extra in runs.items():
        assert train_cli(*common, "--output-dir", tmp_path / name, *extra) == 0

    def test_inputs(name):
        return np.stack([ex["input_values"] for ex in run_splits(tmp_path / name)[1].test])

    np.testing.assert_array_equal(test_inputs("seed1-data0"), test_inputs("seed0"))
    assert test_inputs("seed1").shape != test_inputs("seed0").shape or not np.array_equal(
        test_inputs("seed1"), test_inputs("seed0"))
    args = json.loads((tmp_path / "seed1-data0" / "training_args.json").read_text())
    assert (args["seed"], args["data_seed"]) == (1, 0)
    weights = [tmp_path / name / "model.safetensors" for name in ("seed0", "seed1-data0")]
    assert max_weight_difference(*weights) > 1e-3  # another init


# ---------------------------------------------------------------------------------------------------------------
# Built-in datasets through the 🤗 Datasets path (issue 16): the loader's examples, bit for bit
# ---------------------------------------------------------------------------------------------------------------

def assert_same_examples(before, after, where):
    """Same count, order, keys, dtypes, shapes, bytes and label types (a built-in's list vs the 🤗 split)."""
    after = list(after)
    assert len(before) == len(after), (where, len(before), len(after))
    for i, (x, y) in enumerate(zip(before, after)):
        assert x.keys() == y.keys(), (where, i, sorted(x), sorted(y))
        for key in x:
            a, b = np.asarray(x[key]), np.asarray(y[key])
            assert (a.dtype, a.shape) == (b.dtype, b.shape) and a.tobytes() == b.tobytes(), (where, i, key)
            if key == "labels":
                assert type(x[key]) is type(y[key]), (where, i, type(x[key]), type(y[key]))


def assert_builtin_goes_through_datasets(name, task, options):
    """``load_dataset_spec(NAME)`` (the training path) against what it returned before issue 16: the built-in
    loader's lists (``load_builtin``; images with their square size). Every split is a ``datasets.Dataset``; raw and
    normalised examples (train-split statistics included) are bitwise the loader's. A split the loader itself builds
    lazily (shakespeare's blocks, spoken-digits' freshly augmented train clips) is compared only by its length."""
    from datasets import Dataset

    from s4d_hf.training.data import builtin, with_image_size
    from s4d_hf.training.data.core import is_lazy

    try:
        before = builtin.load_builtin(name, task, seed=0, **options)
        before = with_image_size(before) if task == "image-classification" else before
    except builtin.DatasetNotInstalledError as error:
        pytest.skip(f"data not installed: {error}")
    after = load_dataset_spec(name, task, seed=0, builtin_options=dict(options))
    for field in ("id2label", "input_dim", "vocab_size", "sampling_rate", "image_size", "description", "license",
                  "citation"):
        assert getattr(before, field) == getattr(after, field), field
    fresh = {s for s in ("train", "eval", "test") if is_lazy(getattr(before, s)) and task != "causal-lm"}
    for split in ("train", "eval", "test"):
        assert isinstance(getattr(after, split), Dataset), split
        if split in fresh:  # augmented afresh on every access: nothing to compare but the count
            assert len(getattr(after, split)) == len(getattr(before, split))
            continue
        assert_same_examples(getattr(before, split), getattr(after, split), split)
    if not len(before.train):
        return
    check_splits(task, after)
    (old, old_stats), (new, new_stats) = normalize_splits(task, before), normalize_splits(task, after)
    assert old_stats.keys() == new_stats.keys()
    assert all(old_stats[k].tobytes() == new_stats[k].tobytes() for k in old_stats)
    for split in ("train", "eval", "test"):
        if split not in fresh:
            assert_same_examples(getattr(old, split), getattr(new, split), f"normalised {split}")


@pytest.mark.parametrize("name, task, options", [
    ("plaid", "time-series-classification", {"downsample": 4}),
    ("tecator", "time-series-regression", {}),
    ("fashion-mnist", "image-classification", {"image_size": 7, "max_train_samples": 3000, "max_eval_samples": 500,
                                               "max_test_samples": 500}),
    ("spoken-digits", "audio-classification", {"n_per_class": 5, "augment": "false"}),
    ("spoken-digits", "audio-classification", {"n_per_class": 5}),
    ("spoken-digits-real", "audio-classification", {}),
    ("shakespeare", "causal-lm", {"context": 512, "max_train_samples": 300}),
])
def test_builtin_datasets_are_datasets_objects_with_the_loaders_examples(name, task, options):
    if name.startswith("spoken-digits") and name != "spoken-digits-real":
        import shutil

        if shutil.which("espeak-ng") is None or shutil.which("flite") is None:
            pytest.skip("needs espeak-ng and flite")
    assert_builtin_goes_through_datasets(name, task, options)


def _fake_builtin(monkeypatch, task, splits):
    from s4d_hf.training.data import builtin

    monkeypatch.setitem(builtin.BUILTIN_DATASETS, "FakeSet", "a fake built-in")
    monkeypatch.setattr(builtin, "load_builtin", lambda name, task=None, seed=0, **options: splits)


@pytest.mark.parametrize("task", ["time-series-classification", "time-series-regression", "image-classification",
                                  "audio-classification"])
def test_builtin_adapter_keeps_channels_vector_targets_and_variable_lengths(monkeypatch, task):
    """Layouts no shipped built-in has: 3 channels (RGB pixels, stereo audio, multivariate series, stored as one list
    of C per step), variable lengths, two regression targets per example."""
    from datasets import Dataset

    from s4d_hf.training.data import DatasetSplits

    rng = np.random.default_rng(0)
    image = task == "image-classification"

    def example(i):
        x = rng.random((12 if image else 5 + i % 4, 3), dtype=np.float32)
        y = rng.standard_normal(2).astype(np.float32) if task == "time-series-regression" else i % 3
        return {"input_values": x if image else (2 * x - 1), "labels": y}

    splits = DatasetSplits(train=[example(i) for i in range(9)], eval=[example(i) for i in range(3)],
                           test=[example(i) for i in range(4)], input_dim=3, image_size=(4, 3) if image else None,
                           sampling_rate=8000 if task == "audio-classification" else None,
                           id2label=None if task == "time-series-regression" else {0: "a", 1: "b", 2: "c"})
    _fake_builtin(monkeypatch, task, splits)
    after = load_dataset_spec("FakeSet", task, seed=0)
    for split in ("train", "eval", "test"):
        assert isinstance(getattr(after, split), Dataset)
        assert_same_examples(getattr(splits, split), getattr(after, split), split)
    assert (after.input_dim, after.image_size, after.id2label) == (3, splits.image_size, splits.id2label)


def test_a_builtin_trains_to_the_same_weights_and_metrics_as_through_its_lists(monkeypatch, tmp_path):
    """Training on tecator through the 🤗 path gives bitwise the weights and test metrics of the same run on the
    loader's lists (the path before issue 16, restored here by skipping the conversion)."""
    from s4d_hf.training.data import builtin, loading

    try:
        builtin.load_builtin("tecator")
    except builtin.DatasetNotInstalledError as error:
        pytest.skip(f"data not installed: {error}")
    run = ["--task", "time-series-regression", "--dataset", "tecator", *TINY, "--max-steps", 3, "--batch-size", 16]
    assert train_cli(*run, "--output-dir", tmp_path / "datasets") == 0
    with monkeypatch.context() as patch:
        patch.setattr(loading, "_through_datasets", lambda name, task, seed, raw: raw)
        assert train_cli(*run, "--output-dir", tmp_path / "lists") == 0
    assert max_weight_difference(tmp_path / "datasets" / "model.safetensors",
                                 tmp_path / "lists" / "model.safetensors") == 0.0
    results = [json.loads((tmp_path / name / "all_results.json").read_text()) for name in ("datasets", "lists")]
    assert {k: v for k, v in results[0].items() if k.startswith("test_") and "runtime" not in k and "per_second" not in k} \
        == {k: v for k, v in results[1].items() if k.startswith("test_") and "runtime" not in k and "per_second" not in k}
