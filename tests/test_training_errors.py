"""Bad input to ``s4d-hf train`` is refused before training, with exit code 2, a message naming the problem, and
nothing written to disk."""

import numpy as np
import pytest

from test_training_data import TINY, make_level_npz, train_cli


def refuse(tmp_path, capsys, *args, match):
    out = tmp_path / "out"
    assert train_cli("--output-dir", out, *TINY, "--max-steps", 2, *args) == 2
    err = capsys.readouterr().err
    assert match in err, err
    assert not out.exists() and not (tmp_path / "out-checkpoints").exists()


def test_unknown_task_is_an_argument_error(tmp_path, capsys):
    with pytest.raises(SystemExit) as exit_info:
        train_cli("--task", "translation", "--dataset", "x", "--output-dir", tmp_path / "out")
    assert exit_info.value.code == 2 and "invalid choice: 'translation'" in capsys.readouterr().err


def test_unknown_dataset(tmp_path, capsys):
    refuse(tmp_path, capsys, "--task", "time-series-classification", "--dataset", "no-such-set",
           match="--dataset 'no-such-set' is neither a built-in dataset")


def test_labels_missing(tmp_path, capsys):
    np.savez(tmp_path / "x.npz", X=np.zeros((10, 8, 1), np.float32))
    refuse(tmp_path, capsys, "--task", "time-series-classification", "--dataset", tmp_path / "x.npz",
           match="labels missing")
    (tmp_path / "flat").mkdir()
    (tmp_path / "flat" / "a.wav").write_bytes(b"")
    refuse(tmp_path, capsys, "--task", "audio-classification", "--dataset", tmp_path / "flat",
           match="labels missing: expected one sub-folder per class")


def test_label_outside_num_labels(tmp_path, capsys):
    np.savez(tmp_path / "x.npz", X=np.zeros((10, 8, 1), np.float32), y=np.arange(10) % 3,
             label_names=np.array(["a", "b"]))
    refuse(tmp_path, capsys, "--task", "time-series-classification", "--dataset", tmp_path / "x.npz",
           match="label 2 is out of range for 2 label_names (num_labels=2)")


def test_regression_targets_are_not_class_labels(tmp_path, capsys):
    np.savez(tmp_path / "x.npz", X=np.zeros((10, 8, 1), np.float32), y=np.linspace(0, 1, 10))
    refuse(tmp_path, capsys, "--task", "time-series-classification", "--dataset", tmp_path / "x.npz",
           match="use --task time-series-regression")


def test_empty_dataset(tmp_path, capsys):
    np.savez(tmp_path / "x.npz", X=np.zeros((0, 8, 1), np.float32), y=np.zeros(0, np.int64))
    refuse(tmp_path, capsys, "--task", "time-series-classification", "--dataset", tmp_path / "x.npz",
           match="empty dataset: the train split has no examples")
    (tmp_path / "e.csv").write_text("label,t0,t1\n")
    refuse(tmp_path, capsys, "--task", "time-series-classification", "--dataset", tmp_path / "e.csv",
           match="empty dataset")


def test_float_images_must_be_in_0_1(tmp_path, capsys):
    """8-bit integer images are divided by 255 on reading; float images must already be in [0, 1]."""
    np.savez(tmp_path / "x.npz", X=np.random.default_rng(0).uniform(0, 255, (10, 4, 4)), y=np.arange(10) % 2)
    refuse(tmp_path, capsys, "--task", "image-classification", "--dataset", tmp_path / "x.npz",
           match="image pixels must be in [0, 1]")


def test_nan_inputs(tmp_path, capsys):
    X = np.zeros((10, 8, 1), np.float32)
    X[3, 2] = np.nan
    np.savez(tmp_path / "x.npz", X=X, y=np.arange(10) % 2)
    refuse(tmp_path, capsys, "--task", "time-series-classification", "--dataset", tmp_path / "x.npz",
           match="contain NaN")


def test_pretrained_model_that_does_not_fit_the_data(tmp_path, capsys):
    from s4d_hf import S4DConfig, S4DForSequenceClassification

    data = make_level_npz(tmp_path / "levels.npz", n=20, channels=2, classes=2)
    S4DForSequenceClassification(S4DConfig(input_dim=3, d_model=8, n_layers=1, d_state=4, num_labels=2)) \
        .save_pretrained(tmp_path / "three-channels")
    common = ["--task", "time-series-classification", "--dataset", data, "--no-progress", "--max-steps", 2]
    assert train_cli(*common, "--output-dir", tmp_path / "out", "--model", tmp_path / "three-channels") == 2
    assert "input_dim mismatch: --model" in capsys.readouterr().err
    S4DForSequenceClassification(S4DConfig(input_dim=2, d_model=8, n_layers=1, d_state=4, num_labels=5)) \
        .save_pretrained(tmp_path / "five-labels")
    assert train_cli(*common, "--output-dir", tmp_path / "out", "--model", tmp_path / "five-labels") == 2
    assert "label/num_labels mismatch: --model" in capsys.readouterr().err
    assert train_cli(*common, "--output-dir", tmp_path / "out", "--model", tmp_path / "five-labels",
                     "--d-model", 16) == 2
    assert "--d-model cannot be combined with --model" in capsys.readouterr().err
    assert not (tmp_path / "out").exists()
    # --reset-head: a new 2-class head on the pretrained backbone
    assert train_cli(*common, "--output-dir", tmp_path / "out", "--model", tmp_path / "five-labels",
                     "--reset-head", "--batch-size", 8) == 0
    import json

    assert json.loads((tmp_path / "out" / "config.json").read_text())["id2label"] == {"0": "0", "1": "1"}


def test_task_and_data_that_do_not_match(tmp_path, capsys):
    data = make_level_npz(tmp_path / "levels.npz", n=20)
    refuse(tmp_path, capsys, "--task", "causal-lm", "--dataset", data, match="causal-lm reads a plain .txt file")
    refuse(tmp_path, capsys, "--task", "audio-classification", "--dataset", data,
           match="audio needs the sampling rate")
    (tmp_path / "t.txt").write_text("hello " * 100)
    refuse(tmp_path, capsys, "--task", "causal-lm", "--dataset", tmp_path / "t.txt", "--bidirectional",
           match="--bidirectional cannot train a causal language model")


def test_existing_output_is_not_overwritten_by_accident(tmp_path, capsys):
    data = make_level_npz(tmp_path / "levels.npz", n=20)
    (tmp_path / "out").mkdir()
    (tmp_path / "out" / "keep.txt").write_text("mine")
    assert train_cli("--task", "time-series-classification", "--dataset", data, "--output-dir", tmp_path / "out",
                     *TINY, "--max-steps", 2) == 2
    assert "already exists" in capsys.readouterr().err
    assert (tmp_path / "out" / "keep.txt").read_text() == "mine"


def test_cli_entry_point_lists_train():
    from s4d_hf.cli import build_parser

    args = build_parser().parse_args(["train", "--task", "causal-lm", "--dataset", "x.txt", "--output-dir", "o"])
    assert args._module == "s4d_hf.cli.train" and args.backend == "trainer" and args.lr == 1e-2
