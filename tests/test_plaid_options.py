"""PLAID loader options (features, log_floor, balance, crops) on small .ts files written here: each option's effect
against values computed by hand from the written numbers, and each bad value's one-line error (loader and CLI).
The loader keeps the current as read; downsample/features become the splits' series_transform, which training
(normalize_splits) and the saved processor both apply: the last test checks that they agree."""

import math

import numpy as np
import pytest

from s4d_hf.hub.release import baseline_splits
from s4d_hf.processing import S4DTimeSeriesProcessor
from s4d_hf.processing.timeseries_processing_s4d import transform_series
from s4d_hf.training.baselines import nearest_neighbour
from s4d_hf.training.data.builtin import load_builtin
from s4d_hf.training.data.core import normalize_splits
from s4d_hf.training.data.loading import load_dataset_spec
from s4d_hf.training.output import save_processor

# (values, label) of the training and test series; class 0 has 6 training series, class 1 has 3, class 2 has 2.
TRAIN = [([0.99, -0.99, 0.0, 0.5], 0), ([1.0, 2.0, 3.0], 0), ([4.0, 4.0, 4.0, 4.0, 4.0], 0), ([0.1, 0.2], 0),
         ([5.0, -5.0, 5.0], 0), ([0.3, 0.1, 0.3], 0), ([9.0, 1.0], 1), ([2.0, 2.0, 1.0], 1), ([0.02, 0.0], 1),
         ([7.0, 0.7, 0.07], 2), ([3.0, 6.0], 2)]
TEST = [([0.99, -0.99, 0.0, 0.5], 1), ([30.0, 10.0, 20.0], 2)]


def write_plaid(folder):
    folder.mkdir(parents=True, exist_ok=True)
    for split, rows in (("TRAIN", TRAIN), ("TEST", TEST)):
        lines = ["@problemName PLAID", "@timeStamps false", "@classLabel true 0 1 2", "@data"]
        lines += [",".join(map(str, x)) + f":{y}" for x, y in rows]
        (folder / f"PLAID_{split}.ts").write_text("\n".join(lines) + "\n")
    return folder


def inputs(splits, split: str, i: int) -> np.ndarray:
    """Example i of a split as the model gets it before normalisation (the splits' series_transform applied)."""
    return transform_series(getattr(splits, split)[i]["input_values"], **splits.series_transform).astype(np.float32)


def test_features_give_one_channel_each_in_the_order_asked(tmp_path):
    splits = load_builtin("plaid", data_dir=write_plaid(tmp_path), eval_fraction=0,
                          features="log,raw,standardized,log_rms", log_floor=0.01)
    assert splits.input_dim == 4
    assert splits.test[0]["input_values"].shape == (4, 1)  # the current as read
    x = inputs(splits, "test", 0)  # 0.99, -0.99, 0, 0.5
    assert x.shape == (4, 4) and x.dtype == np.float32
    # log: sign(x) * ln(1 + |x| / 0.01): 0.99 -> ln(100)
    np.testing.assert_allclose(x[:, 0], [math.log(100), -math.log(100), 0.0, math.log(51)], rtol=1e-6)
    np.testing.assert_allclose(x[:, 1], [0.99, -0.99, 0.0, 0.5], rtol=1e-6)
    mean = (0.99 - 0.99 + 0.0 + 0.5) / 4
    std = math.sqrt(sum((v - mean) ** 2 for v in (0.99, -0.99, 0.0, 0.5)) / 4)
    np.testing.assert_allclose(x[:, 2], [(v - mean) / std for v in (0.99, -0.99, 0.0, 0.5)], rtol=1e-5)
    rms = math.sqrt((0.99 ** 2 * 2 + 0.5 ** 2) / 4)
    np.testing.assert_allclose(x[:, 3], [math.log(rms + 0.01)] * 4, rtol=1e-6)
    # a constant series standardises to zeros (no division by zero); log_floor changes the log's scale
    constant = load_builtin("plaid", data_dir=tmp_path, eval_fraction=0, features="standardized")
    assert np.array_equal(inputs(constant, "train", 2), np.zeros((5, 1), np.float32))
    scaled = load_builtin("plaid", data_dir=tmp_path, features="log", log_floor=1.0)
    np.testing.assert_allclose(inputs(scaled, "test", 1)[:, 0], np.log1p([30.0, 10.0, 20.0]), rtol=1e-6)


def test_features_apply_after_downsampling_and_the_default_is_the_raw_current(tmp_path):
    write_plaid(tmp_path)
    default = load_builtin("plaid", data_dir=tmp_path)
    assert default.input_dim == 1
    np.testing.assert_allclose(inputs(default, "test", 1)[:, 0], [30.0, 10.0, 20.0])
    pooled = load_builtin("plaid", data_dir=tmp_path, downsample=2, features="log", log_floor=1.0)
    np.testing.assert_allclose(inputs(pooled, "test", 1)[:, 0], np.log1p([20.0, 20.0]), rtol=1e-6)
    # the default log_floor is 1e-5: ln(1 + 30 / 1e-5)
    default_log = load_builtin("plaid", data_dir=tmp_path, features="log")
    np.testing.assert_allclose(inputs(default_log, "test", 1)[0, 0], math.log1p(3e6), rtol=1e-6)


def test_balance_repeats_smaller_classes_in_train_only(tmp_path):
    write_plaid(tmp_path)
    plain = load_builtin("plaid", data_dir=tmp_path, eval_fraction=0, seed=3)
    balanced = load_builtin("plaid", data_dir=tmp_path, eval_fraction=0, seed=3, balance="true")
    assert [e["labels"] for e in plain.train] == [y for _, y in TRAIN]
    assert np.bincount([e["labels"] for e in balanced.train]).tolist() == [6, 6, 6]
    # class 1 (3 series) twice over, class 2 (2 series) three times over: every series, no other
    copies = {}
    for e in balanced.train:
        key = tuple(e["input_values"][:, 0].round(4))
        copies[key] = copies.get(key, 0) + 1
    expected = {tuple(np.float32(x).round(4)): {0: 1, 1: 2, 2: 3}[y] for x, y in TRAIN}
    assert copies == expected
    assert [e["labels"] for e in balanced.test] == [y for _, y in TEST]
    # one series of each class held out: 5, 2 and 1 left -> class 1 gets a seeded remainder of one (2 + 2 + 1)
    held = load_builtin("plaid", data_dir=tmp_path, eval_fraction=0.2, balance=True)
    assert np.bincount([e["labels"] for e in held.train]).tolist() == [5, 5, 5]
    unbalanced = load_builtin("plaid", data_dir=tmp_path, eval_fraction=0.2)
    assert [e["input_values"].tolist() for e in held.eval] == [e["input_values"].tolist() for e in unbalanced.eval]
    assert len(held.eval) == 3


def test_crops_add_random_windows_of_each_training_series(tmp_path):
    write_plaid(tmp_path)
    plain = load_builtin("plaid", data_dir=tmp_path, eval_fraction=0)
    cropped = load_builtin("plaid", data_dir=tmp_path, eval_fraction=0, crops=3, crop_fraction=0.5)
    n = len(TRAIN)
    assert len(cropped.train) == 4 * n
    for e, original in zip(cropped.train[:n], plain.train):  # the series themselves come first, unchanged
        assert np.array_equal(e["input_values"], original["input_values"])
    lengths = set()
    for k, e in enumerate(cropped.train[n:]):
        source, label = TRAIN[k % n]
        window = [float(v) for v in e["input_values"][:, 0]]
        whole = [float(np.float32(v)) for v in source]
        assert e["labels"] == label and math.ceil(len(whole) / 2) <= len(window) <= len(whole)
        assert any(whole[i:i + len(window)] == window for i in range(len(whole) - len(window) + 1)), (window, whole)
        lengths.add((k % n, len(window)))
    assert len(lengths) > n  # windows of different lengths, not copies
    assert all(np.array_equal(a["input_values"], b["input_values"]) for a, b in zip(cropped.test, plain.test))
    # features are computed on each window: a standardised window has mean 0 and std 1 of its own
    shaped = load_builtin("plaid", data_dir=tmp_path, eval_fraction=0, crops=3, features="standardized,raw")
    for i in range(n, len(shaped.train)):
        x = inputs(shaped, "train", i)
        if np.ptp(x[:, 1]) > 0:
            assert abs(x[:, 0].mean()) < 1e-5 and abs(x[:, 0].std() - 1) < 1e-4
    again = load_builtin("plaid", data_dir=tmp_path, eval_fraction=0, crops=3, crop_fraction=0.5)
    assert all(np.array_equal(a["input_values"], b["input_values"]) for a, b in zip(again.train, cropped.train))


def test_training_inputs_equal_the_saved_processor_on_the_current_as_recorded(tmp_path):
    write_plaid(tmp_path / "data")
    options = {"data_dir": str(tmp_path / "data"), "eval_fraction": "0", "downsample": "2",
               "features": "log,standardized,log_rms", "log_floor": "0.01"}
    # the training path (built-ins go through 🤗 Datasets) keeps the transform and the channel count
    raw = load_dataset_spec("plaid", "time-series-classification", seed=0, builtin_options=options)
    assert raw.input_dim == 3 and raw.series_transform["series_features"] == ["log", "standardized", "log_rms"]
    trained, stats = normalize_splits("time-series-classification", raw)  # what training feeds the model
    save_processor(tmp_path / "model", "time-series-classification", trained, stats)
    processor = S4DTimeSeriesProcessor.from_pretrained(tmp_path / "model")
    assert (processor.downsample, processor.series_features, processor.log_floor, processor.feature_size) == \
        (2, ["log", "standardized", "log_rms"], 0.01, 3)
    for (values, _), ex in zip(TEST, trained.test):  # a user passes the list of numbers of the file
        got = processor(values, return_tensors="np")["input_values"][0]
        assert got.shape == (math.ceil(len(values) / 2), 3)
        np.testing.assert_allclose(got, ex["input_values"], rtol=1e-5, atol=1e-6)
    # the training inputs are normalised: mean 0 over the train split's steps
    assert abs(np.concatenate([ex["input_values"] for ex in trained.train]).mean(0)).max() < 1e-5
    with pytest.raises(ValueError, match="one channel"):
        processor(np.zeros((8, 3)))


@pytest.mark.parametrize("options, message", [
    ({"features": "log,loud"}, r"option features='log,loud': expected distinct names among \('raw', 'log'"),
    ({"features": "log,log"}, "option features='log,log': expected distinct names"),
    ({"features": ""}, "option features='': expected distinct names"),
    ({"log_floor": 0}, "option log_floor=0: expected a number > 0"),
    ({"log_floor": "tiny"}, "option log_floor='tiny': expected a number > 0"),
    ({"log_floor": "inf"}, "option log_floor='inf': expected a number > 0"),
    ({"log_floor": "nan"}, "option log_floor='nan': expected a number > 0"),
    ({"balance": "maybe"}, "option balance='maybe': expected true or false"),
    ({"crops": -1}, "option crops=-1: expected an integer >= 0"),
    ({"crops": 1.5}, "option crops=1.5: expected an integer"),
    ({"crop_fraction": 0}, r"option crop_fraction=0: expected a number in \(0, 1\]"),
    ({"crop_fraction": 1.5}, r"option crop_fraction=1\.5: expected a number in \(0, 1\]"),
    ({"crop_fraction": "half"}, r"option crop_fraction='half': expected a number in \(0, 1\]"),
])
def test_bad_option_values_are_refused_with_the_option_named(tmp_path, options, message):
    with pytest.raises(ValueError, match=message):
        load_builtin("plaid", data_dir=write_plaid(tmp_path), **options)


def test_the_cli_refuses_a_bad_feature_name_in_one_line(tmp_path, capsys):
    from s4d_hf_cli import main

    write_plaid(tmp_path / "data")
    rc = main(["train", "--task", "time-series-classification", "--dataset", "plaid", "--dataset-option",
               f"data_dir={tmp_path / 'data'}", "--dataset-option", "features=lg", "--output-dir",
               str(tmp_path / "out"), "--max-steps", "1"])
    err = capsys.readouterr().err.strip()
    assert rc == 2 and len(err.splitlines()) == 1 and "features='lg'" in err and "'log'" in err, err
    assert not (tmp_path / "out").exists()


def test_classic_baseline_sees_the_recorded_series_pooled_but_not_the_crops(tmp_path):
    write_plaid(tmp_path)
    options = {"data_dir": str(tmp_path), "eval_fraction": "0", "downsample": "2", "crops": "3", "features": "log"}
    run_args = {"dataset": "plaid", "task": "time-series-classification", "seed": 0, "dataset_option": options}
    splits = load_dataset_spec("plaid", "time-series-classification", seed=0, builtin_options=options)
    assert len(splits.train) == 4 * len(TRAIN)
    fit_on = baseline_splits(run_args, splits)
    assert len(fit_on.train) == len(TRAIN) and fit_on.series_transform == splits.series_transform
    # 1-NN by hand on the pooled raw current (windows of 2, resampled to the longest pooled training series: 3)
    def pool(x):  # means of windows of 2, the last one possibly shorter
        return np.array([np.mean(x[i:i + 2]) for i in range(0, len(x), 2)])

    pooled = [pool(x) for x, _ in TRAIN]
    test = [pool(x) for x, _ in TEST]
    grid = np.linspace(0, 1, 3)
    stretch = [np.interp(grid, np.linspace(0, 1, len(p)), p) for p in pooled]
    predicted = [TRAIN[int(np.argmin([((np.interp(grid, np.linspace(0, 1, len(t)), t) - s) ** 2).sum()
                                       for s in stretch]))][1] for t in test]
    expected = np.mean([p == y for p, (_, y) in zip(predicted, TEST)])
    assert nearest_neighbour(fit_on)["accuracy"] == pytest.approx(expected)
