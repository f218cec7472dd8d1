"""`s4d-hf baseline FOLDER`: a same-size Transformer trained with the S4D run's data and budget, evaluated with the
card's metric code, written to transformer_baseline.json, and shown by `s4d-hf release` as a three-way table."""

import json
import mmap
import re
import shutil
from pathlib import Path

import numpy as np
import pytest
import torch

from test_training_data import TINY, make_level_npz, make_regression_npz, make_text, train_cli

from conftest import file_tree
from s4d_hf import S4DConfig, S4DForCausalLM, S4DForSequenceClassification
from s4d_hf.cli import main as cli
from s4d_hf.hub.evaluation import evaluate_folder, run_splits
from s4d_hf.hub.release import transformer_baseline_info
from s4d_hf.training.data.core import normalize_splits
from s4d_hf.training.job import PeakMemory
from s4d_hf.training.task_metrics import TaskMetrics
from s4d_hf.training.transformer_baseline import (
    PARAMETER_BAND,
    build_transformer,
    evaluate_split,
    non_embedding_parameters,
    size_transformer,
)

ROOT = Path(__file__).resolve().parent.parent
FIELDS = {"task", "test_metrics", "eval_metrics", "selection", "transformer", "s4d", "parameter_ratio",
          "optimizer_steps", "shortened", "batch_size", "grad_accum", "optimizer", "train_runtime",
          "peak_memory_bytes", "peak_memory_measure", "device", "hardware", "versions", "command", "log_history"}

MEMORY = r"\| \d+ MiB \((CPU peak RSS growth|CUDA torch\.cuda\.max_memory_allocated)\) \|"


def last_json(capsys) -> dict:
    return json.loads(capsys.readouterr().out.strip().splitlines()[-1])


# -- sizing ----------------------------------------------------------------------------------------------------------

def bert_count(h: int, inter: int, layers: int, outputs: int) -> int:
    """Non-embedding parameters of the encoder baseline, by hand: per layer Q, K, V, O (h x h + h each), two
    LayerNorms, the FFN (h x inter + inter, inter x h + h); then the head (h x outputs + outputs)."""
    return layers * (4 * (h * h + h) + 2 * 2 * h + (h * inter + inter) + (inter * h + h)) + h * outputs + outputs


def llama_count(h: int, inter: int, layers: int) -> int:
    """Non-embedding parameters of the decoder baseline: per layer Q, K, V, O (no bias), gate/up/down, two RMSNorm
    weights; the final RMSNorm; the LM head is tied to the token embedding."""
    return layers * (4 * h * h + 3 * h * inter + 2 * h) + h


@pytest.mark.parametrize("name", ["s4d-tecator", "s4d-plaid", "s4d-fashion-mnist", "s4d-spoken-digits",
                                  "s4d-shakespeare"])
def test_the_transformer_of_every_shipped_task_is_within_the_band_of_s4ds_non_embedding_count(name):
    config = S4DConfig.from_pretrained(ROOT / "checkpoints" / name)
    if config.vocab_size:
        s4d = S4DForCausalLM(config)
        s4d_count = sum(p.numel() for p in s4d.parameters()) - config.vocab_size * config.d_model  # tied embedding
        task, model_args = "causal-lm", {"vocab_size": config.vocab_size}
    else:
        s4d = S4DForSequenceClassification(config)
        s4d_count = sum(p.numel() for p in s4d.parameters()) - (config.input_dim + 1) * config.d_model  # input_proj
        task = "time-series-regression" if config.problem_type == "regression" else "time-series-classification"
        model_args = {"input_dim": config.input_dim, "num_labels": config.num_labels}
    assert non_embedding_parameters(s4d) == s4d_count
    hidden, inter, count = size_transformer(task, s4d_count, config.n_layers, **model_args)
    assert abs(count / s4d_count - 1) <= PARAMETER_BAND
    assert abs(count / s4d_count - 1) <= 0.05  # the FFN width closes the gap
    model = build_transformer(task, hidden, inter, config.n_layers, max_length=32, **model_args)
    expected = (llama_count(hidden, inter, config.n_layers) if task == "causal-lm"
                else bert_count(hidden, inter, config.n_layers, config.num_labels))
    assert non_embedding_parameters(model) == count == expected
    assert hidden % 8 == 0 and 2 * hidden <= inter * (1.5 if task == "causal-lm" else 1) <= 6 * hidden


# -- the command on tiny runs ----------------------------------------------------------------------------------------

@pytest.fixture(scope="module")
def runs(tmp_path_factory):
    """Tiny S4D runs of the three kinds of head: classification, regression, causal LM (16 optimizer steps)."""
    tmp = tmp_path_factory.mktemp("transformer_baseline")
    common = [*TINY, "--batch-size", 8, "--max-steps", 16]
    folders = {}
    for kind, data_args in {
        "classification": ["--task", "time-series-classification", "--dataset",
                           make_level_npz(tmp / "levels.npz", n=64), "--eval-steps", 8],
        "regression": ["--task", "time-series-regression", "--dataset", make_regression_npz(tmp / "reg.npz")],
        "causal-lm": ["--task", "causal-lm", "--dataset", make_text(tmp / "text.txt"), "--block-size", 64,
                      "--eval-steps", 8],
    }.items():
        folders[kind] = tmp / kind
        assert train_cli(*data_args, "--output-dir", folders[kind], *common) == 0
    return folders


@pytest.mark.parametrize("kind", ["classification", "regression", "causal-lm"])
def test_a_smoke_run_writes_the_json_with_every_field_and_no_weights(runs, kind, capsys):
    folder = runs[kind]
    before = file_tree(folder)
    assert cli(["baseline", str(folder), "--max-steps", "2"]) == 0
    summary = last_json(capsys)
    after = file_tree(folder)
    assert set(after) - set(before) == {"transformer_baseline.json"}  # no weights, nothing else changed
    assert all(after[k] == v for k, v in before.items())
    result = json.loads((folder / "transformer_baseline.json").read_text())
    assert FIELDS <= set(result)
    run_args = json.loads((folder / "training_args.json").read_text())
    s4d_results = json.loads((folder / "all_results.json").read_text())
    assert (result["optimizer_steps"], result["shortened"]) == (2, True)
    assert (result["batch_size"], result["s4d"]["optimizer_steps"]) == (run_args["batch_size"], 16)
    assert result["s4d"]["command"] == run_args["command"]
    assert result["command"] == f"s4d-hf baseline {folder} --max-steps 2"
    assert result["device"] == ("cuda" if torch.cuda.is_available() else "cpu")
    assert result["peak_memory_bytes"] >= 0 and result["train_runtime"] > 0
    # the same metrics as S4D's card, from the same code (the test_* metrics of the run minus its loss)
    s4d_metrics = {k[len("test_"):] for k in s4d_results if k.startswith("test_") and k != "test_loss"}
    assert set(result["test_metrics"]) == set(summary["test_metrics"]) == s4d_metrics
    ratio = result["transformer"]["non_embedding_parameters"] / result["s4d"]["non_embedding_parameters"]
    assert abs(ratio - 1) <= PARAMETER_BAND and ratio == pytest.approx(result["parameter_ratio"])
    # the selected checkpoint is the best on the eval split, and its eval metrics are recomputed after restoring it
    metric = result["selection"]["metric"]
    logged = [row[f"eval_{metric}"] for row in result["log_history"]]
    best = (min if metric in ("rmse", "loss") else max)(logged)
    assert result["eval_metrics"][metric] == pytest.approx(best, rel=1e-5)


def test_the_baselines_evaluation_reproduces_s4d_hf_evaluate_on_the_s4d_model(runs):
    """evaluate_split is the card's metric code: given the folder's own S4D model it prints what `s4d-hf evaluate`
    prints (classification, regression in the targets' units, and the LM's bits per byte)."""
    for kind in ("classification", "regression", "causal-lm"):
        folder = runs[kind]
        run_args, raw = run_splits(folder)
        task = run_args["task"]
        splits, _ = normalize_splits(task, raw)
        if task == "causal-lm":
            model = S4DForCausalLM.from_pretrained(folder).eval()
            full = [i for i, ex in enumerate(splits.test) if len(ex["input_ids"]) == 64]
            assert full == list(range(len(full)))  # evaluate_folder stacks the windows: the full-length ones
            ours = evaluate_split(model, task, splits.test[: len(full)], TaskMetrics(task))
            theirs = evaluate_folder(folder, max_samples=len(full))
        else:
            model = S4DForSequenceClassification.from_pretrained(folder).eval()
            ours = evaluate_split(model, task, splits.test, TaskMetrics(task, num_labels=model.config.num_labels))
            theirs = evaluate_folder(folder)
        assert set(theirs) <= set(ours)
        for name, value in theirs.items():
            assert ours[name] == pytest.approx(value, rel=1e-5, abs=1e-9), (kind, name)


def test_the_transformer_learns_and_reports_regression_in_the_targets_units(runs, capsys):
    folder = runs["regression"]
    assert cli(["baseline", str(folder), "--lr", "1e-2", "--output", str(folder.parent / "reg.json")]) == 0
    result = json.loads((folder.parent / "reg.json").read_text())
    _, raw = run_splits(folder)
    spread = float(np.std([ex["labels"] for ex in raw.test]))  # the rmse of predicting the test mean
    assert spread > 2
    assert result["optimizer_steps"] == 16 and not result["shortened"]
    assert result["test_metrics"]["rmse"] < 0.5 * spread  # learnt, and in the targets' units (not standardised)
    assert result["optimizer"]["lr"] == 1e-2


def test_s4d_training_records_its_peak_memory(runs):
    results = json.loads((runs["classification"] / "all_results.json").read_text())
    assert isinstance(results["peak_memory_bytes"], int) and results["peak_memory_bytes"] >= 0
    assert results["peak_memory_measure"].startswith(("CPU peak RSS growth", "CUDA"))


@pytest.mark.skipif(torch.cuda.is_available(), reason="the CPU measure")
def test_peak_memory_sees_an_allocation_that_is_freed_again():
    # Fresh pages from the kernel: a tensor could reuse a free, already resident region of the heap that earlier
    # tests left behind, and then the process's RSS would truly not grow.
    memory = PeakMemory()
    block = mmap.mmap(-1, 64 * 2**20)
    for offset in range(0, len(block), 4096):
        block[offset] = 1  # written: resident
    block.close()
    peak = memory.measure()
    assert peak["peak_memory_bytes"] >= 60 * 2**20, peak
    assert PeakMemory().measure()["peak_memory_bytes"] < 60 * 2**20  # a new measure starts from now


# -- the card ----------------------------------------------------------------------------------------------------------

def test_release_shows_the_three_way_table_only_with_a_full_budget_json(runs, tmp_path, capsys):
    folder = tmp_path / "cls"
    shutil.copytree(runs["classification"], folder)
    (folder / "transformer_baseline.json").unlink(missing_ok=True)
    run_args = json.loads((folder / "training_args.json").read_text())
    assert transformer_baseline_info(folder, run_args) is None
    assert cli(["release", str(folder)]) == 0
    assert "same-size Transformer" not in (folder / "README.md").read_text()  # as before: no file, no table

    assert cli(["baseline", str(folder), "--max-steps", "2"]) == 0
    capsys.readouterr()
    assert cli(["release", str(folder)]) == 2  # a shortened run is refused
    assert "--max-steps" in capsys.readouterr().err

    assert cli(["baseline", str(folder)]) == 0
    result = json.loads((folder / "transformer_baseline.json").read_text())
    assert cli(["release", str(folder)]) == 0
    card = (folder / "README.md").read_text()
    release = json.loads((folder / "release.json").read_text())
    rows = [line for line in card.splitlines() if line.startswith("| ")]
    s4d = next(r for r in rows if r.startswith("| **S4D (this model)** |"))
    transformer = next(r for r in rows if r.startswith("| same-size Transformer ("))
    classic = next(r for r in rows if r.startswith("| classic baseline: 1-NN"))
    accuracy = lambda v: f"{v:.4g}"  # noqa: E731 - the card's number format
    assert f"{result['s4d']['non_embedding_parameters']:,}" in s4d
    assert f"| {accuracy(release['metrics']['accuracy'])} |" in s4d
    assert re.search(MEMORY, s4d)  # S4D's own training recorded its peak memory
    assert f"{result['transformer']['non_embedding_parameters']:,}" in transformer
    assert f"| {accuracy(result['test_metrics']['accuracy'])} |" in transformer
    assert re.search(MEMORY, transformer) and result["hardware"] in transformer
    assert f"| {accuracy(release['baseline']['value'])} |" in classic
    assert f"s4d-hf baseline {folder}" in card
    assert release["transformer_baseline"]["value"] == result["test_metrics"]["accuracy"]

    stale = json.loads((folder / "transformer_baseline.json").read_text())
    stale["s4d"]["command"] = "s4d-hf train --another-run"
    (folder / "transformer_baseline.json").write_text(json.dumps(stale))
    with pytest.raises(ValueError, match="another training run"):
        transformer_baseline_info(folder, run_args)


# -- bad input -------------------------------------------------------------------------------------------------------

def edited(folder, name, **changes):
    path = folder / name
    path.write_text(json.dumps({**json.loads(path.read_text()), **changes}))


BAD = [
    ("missing folder", lambda f, t: [str(t / "nowhere")], "no such folder"),
    ("no training_args.json", lambda f, t: [str(t)], "training_args.json"),
    ("zero lr", lambda f, t: [str(f), "--lr", "0"], "--lr"),
    ("zero max-steps", lambda f, t: [str(f), "--max-steps", "0"], "--max-steps"),
    ("output in a missing folder", lambda f, t: [str(f), "--output", str(t / "no" / "x.json")], "--output"),
    ("output is a folder", lambda f, t: [str(f), "--output", str(t)], "--output"),
]


def exit_code(args) -> int:
    """``s4d-hf baseline ARGS`` in this process: its exit code (argparse's refusals included)."""
    try:
        return cli(["baseline", *args])
    except SystemExit as e:  # argparse refuses a flag value
        return e.code


@pytest.mark.parametrize("args, pattern", [row[1:] for row in BAD], ids=[row[0] for row in BAD])
def test_bad_arguments_are_one_line_usage_errors(runs, tmp_path, capsys, args, pattern):
    folder = runs["classification"]
    before = file_tree(folder)
    assert exit_code(args(folder, tmp_path)) == 2
    err = capsys.readouterr().err
    assert pattern in err and len(err.strip().splitlines()) == 1, err
    assert file_tree(folder) == before


@pytest.mark.parametrize("change, pattern", [
    (("training_args.json", {"task": "self-pretraining"}), "has no Transformer baseline"),
    (("all_results.json", {"global_step": 0}), "global_step"),
], ids=["a task without a baseline", "no optimizer steps"])
def test_a_folder_it_cannot_use_is_refused_before_any_work(runs, tmp_path, capsys, change, pattern):
    folder = tmp_path / "run"
    shutil.copytree(runs["classification"], folder)
    (folder / "transformer_baseline.json").unlink(missing_ok=True)
    edited(folder, change[0], **change[1])
    assert exit_code([str(folder)]) == 2
    err = capsys.readouterr().err
    assert pattern in err and len(err.strip().splitlines()) == 1, err
    assert not (folder / "transformer_baseline.json").exists()
