"""``s4d-hf train`` deletes or replaces only what it can prove it created (issue 13, folders).

A folder is a run's own when it carries the run marker (``.s4d-hf-run.json``, written into every work and output
folder a run creates) or is empty. Anything else is refused before anything is created, with one line naming the
folder and the flag; ``--overwrite`` replaces a run's own folder, never a foreign one; a failing run leaves the file
system as it found it. Each case checks that every pre-existing file in the sandbox is byte-identical afterwards and
that nothing new is left behind.
"""

import json

import pytest

from conftest import file_tree
from test_training_data import TINY, make_level_npz, train_cli

from s4d_hf.training.folders import RUN_MARKER


COMMON = ["--task", "time-series-classification", *TINY, "--max-steps", 2, "--batch-size", 8]


snapshot = file_tree  # conftest.py: path -> sha256 of the bytes


def assert_unchanged(root, before):
    after = snapshot(root)
    assert sorted(set(after) - set(before)) == [], "left behind"
    assert sorted(set(before) - set(after)) == [], "removed"
    changed = [k for k in before if before[k] != after[k]]
    assert changed == [], "changed"


def foreign(folder, **files):
    folder.mkdir(parents=True)
    for name, text in (files or {"thesis.tex": "my own work", "sub/data.bin": "\x00\x01"}).items():
        (folder / name).parent.mkdir(parents=True, exist_ok=True)
        (folder / name).write_text(text)
    return folder


def refused(tmp_path, capsys, *args, names):
    """The command exits 2 with one stderr line naming ``names``; the sandbox is untouched."""
    before = snapshot(tmp_path)
    assert train_cli(*COMMON, *args) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "Traceback" not in err, err
    for name in names:
        assert str(name) in err, err
    assert_unchanged(tmp_path, before)
    return err


def make_training_fail(monkeypatch):
    """Training that fails after the folders were set up (every bad flag value is refused before that)."""
    import s4d_hf.training.trainer_backend as backend

    def fail(job):
        raise ValueError("batch_size: a failure in the middle of training")

    monkeypatch.setattr(backend, "train", fail)


@pytest.fixture
def failing_training(monkeypatch):
    make_training_fail(monkeypatch)


def fails_while_running(capsys, *args):
    """The run fails after its folders were set up: exit code 1 and one line naming the error."""
    assert train_cli(*args) == 1
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "batch_size" in err, err


@pytest.fixture
def data(tmp_path):
    return make_level_npz(tmp_path / "levels.npz", n=20)


@pytest.mark.parametrize("extra", [[], ["--overwrite"], ["--resume"], ["--overwrite", "--keep-checkpoints"]])
def test_foreign_checkpoint_dir_is_refused(tmp_path, capsys, data, extra):
    mine = foreign(tmp_path / "mine")
    err = refused(tmp_path, capsys, "--dataset", data, "--output-dir", tmp_path / "out", "--checkpoint-dir", mine,
                  *extra, names=[mine, "--checkpoint-dir"])
    assert "did not write" in err


def test_foreign_checkpoint_dir_that_looks_like_checkpoints_is_refused(tmp_path, capsys, data):
    """checkpoint-<n> sub-folders are no proof: only the marker is."""
    mine = foreign(tmp_path / "mine", **{"checkpoint-3/notes.txt": "not a checkpoint"})
    refused(tmp_path, capsys, "--dataset", data, "--output-dir", tmp_path / "out", "--checkpoint-dir", mine,
            "--overwrite", names=[mine, "--checkpoint-dir"])


@pytest.mark.parametrize("extra", [[], ["--overwrite"]])
def test_foreign_default_checkpoint_folder_is_refused(tmp_path, capsys, data, extra):
    mine = foreign(tmp_path / "out-checkpoints")
    refused(tmp_path, capsys, "--dataset", data, "--output-dir", tmp_path / "out", *extra,
            names=[mine, "--checkpoint-dir"])


def test_foreign_output_dir_is_refused_even_with_overwrite(tmp_path, capsys, data):
    mine = foreign(tmp_path / "out")
    err = refused(tmp_path, capsys, "--dataset", data, "--output-dir", mine, "--overwrite",
                  names=[mine, "--output-dir"])
    assert "not written by s4d-hf train" in err


def test_output_dir_with_a_foreign_marker_kind_is_refused(tmp_path, capsys, data):
    """A run's checkpoint folder given as --output-dir is not an output folder."""
    out = tmp_path / "out"
    out.mkdir()
    (out / RUN_MARKER).write_text(json.dumps({"created_by": "s4d-hf train", "kind": "checkpoints"}))
    refused(tmp_path, capsys, "--dataset", data, "--output-dir", out, "--overwrite", names=[out, "--output-dir"])


def test_checkpoint_dir_inside_output_dir_is_refused(tmp_path, capsys, data):
    refused(tmp_path, capsys, "--dataset", data, "--output-dir", tmp_path / "out", "--checkpoint-dir",
            tmp_path / "out" / "ckpt", names=["--checkpoint-dir", "--output-dir"])


def test_own_output_folder_is_replaced_by_overwrite(tmp_path, capsys, data):
    out = tmp_path / "out"
    assert train_cli(*COMMON, "--dataset", data, "--output-dir", out) == 0
    assert json.loads((out / RUN_MARKER).read_text())["kind"] == "output"
    assert not (tmp_path / "out-checkpoints").exists()  # the run's own work folder, removed at the end
    capsys.readouterr()
    assert train_cli(*COMMON, "--dataset", data, "--output-dir", out) == 2  # not without --overwrite
    assert "--overwrite" in capsys.readouterr().err
    before = snapshot(tmp_path)
    assert train_cli(*COMMON, "--dataset", data, "--output-dir", out, "--overwrite", "--seed", 1) == 0
    after = snapshot(tmp_path)
    assert set(after) == set(before)  # the same files: no checkpoints, temporary or set-aside folders left
    assert json.loads((out / "training_args.json").read_text())["seed"] == 1
    assert after["levels.npz"] == before["levels.npz"]


def test_foreign_files_in_an_own_output_folder_make_it_foreign(tmp_path, capsys, data):
    """The marker is what counts; a folder with a marker of another program is foreign."""
    out = foreign(tmp_path / "out", **{RUN_MARKER: json.dumps({"created_by": "someone else"})})
    refused(tmp_path, capsys, "--dataset", data, "--output-dir", out, "--overwrite", names=[out])


def test_empty_checkpoint_dir_is_used_and_a_failing_run_leaves_it_empty(tmp_path, capsys, data, failing_training):
    empty = tmp_path / "ckpt"
    empty.mkdir()
    before = snapshot(tmp_path)
    fails_while_running(capsys, *COMMON, "--dataset", data, "--output-dir", tmp_path / "out", "--checkpoint-dir",
                        empty)
    assert_unchanged(tmp_path, before)


def test_failing_run_leaves_no_folder(tmp_path, capsys, data, failing_training):
    before = snapshot(tmp_path)
    fails_while_running(capsys, *COMMON, "--dataset", data, "--output-dir", tmp_path / "new" / "out")
    assert_unchanged(tmp_path, before)  # no out-checkpoints/, not even the new parent folder


def test_bad_data_file_leaves_no_folder(tmp_path):
    whole = make_level_npz(tmp_path / "whole.npz", n=20).read_bytes()
    (tmp_path / "cut.npz").write_bytes(whole[: len(whole) // 2])
    (tmp_path / "whole.npz").unlink()
    before = snapshot(tmp_path)
    assert train_cli(*COMMON, "--dataset", tmp_path / "cut.npz", "--output-dir", tmp_path / "out") == 2
    assert_unchanged(tmp_path, before)


def test_overwrite_of_own_checkpoints_is_undone_when_the_run_fails(tmp_path, capsys, data, monkeypatch):
    out = tmp_path / "out"
    assert train_cli(*COMMON, "--dataset", data, "--output-dir", out, "--interrupt-after-steps", 1) == 130
    work = tmp_path / "out-checkpoints"
    assert (work / RUN_MARKER).is_file() and (work / "checkpoint-1").is_dir() and not out.exists()
    before = snapshot(tmp_path)
    make_training_fail(monkeypatch)
    capsys.readouterr()  # the first run's interruption lines
    fails_while_running(capsys, *COMMON, "--dataset", data, "--output-dir", out, "--overwrite")
    assert_unchanged(tmp_path, before)  # the earlier run's checkpoints are back, byte for byte


def test_overwrite_replaces_own_checkpoints_and_resume_uses_them(tmp_path, data):
    out = tmp_path / "out"
    work = tmp_path / "out-checkpoints"
    assert train_cli(*COMMON, "--dataset", data, "--output-dir", out, "--interrupt-after-steps", 1) == 130
    assert train_cli(*COMMON, "--dataset", data, "--output-dir", out, "--resume", "--keep-checkpoints") == 0
    assert (work / RUN_MARKER).is_file() and out.is_dir()
    assert train_cli(*COMMON, "--dataset", data, "--output-dir", out, "--overwrite") == 0
    assert not work.exists() and sorted(p.name for p in tmp_path.iterdir()) == ["levels.npz", "out"]


def test_empty_output_dir_is_used_without_overwrite(tmp_path, data):
    (tmp_path / "out").mkdir()
    assert train_cli(*COMMON, "--dataset", data, "--output-dir", tmp_path / "out") == 0
    assert (tmp_path / "out" / "config.json").is_file() and (tmp_path / "out" / RUN_MARKER).is_file()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["levels.npz", "out"]
