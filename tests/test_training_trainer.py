"""``s4d-hf train --backend trainer``: learns, writes a Hub-ready folder whose numbers can be reproduced, resumes
exactly, and scales the causal-LM loss correctly under gradient accumulation."""

import json

import pytest

from test_training_data import (
    TINY,
    logged_losses,
    make_level_npz,
    make_text,
    max_weight_difference,
    reevaluate_test_split,
    train_cli,
)

TASK = "time-series-classification"


def run_args(data, out, *extra):
    return ["--task", TASK, "--dataset", data, "--output-dir", out, "--backend", "trainer", *TINY, "--batch-size", 8,
            "--max-steps", 16, "--eval-steps", 8, "--dropout", 0.1, "--keep-checkpoints", *extra]


@pytest.fixture(scope="module")
def reference(tmp_path_factory):
    root = tmp_path_factory.mktemp("trainer")
    data = make_level_npz(root / "levels.npz", n=64)
    assert train_cli(*run_args(data, root / "full")) == 0
    return root, data


def test_trainer_learns_and_writes_a_hub_ready_folder(reference):
    root, data = reference
    out = root / "full"
    for name in ("config.json", "model.safetensors", "modeling_s4d.py", "README.md", "all_results.json",
                 "eval_results.json", "log_history.json", "training_args.json"):
        assert (out / name).is_file(), name
    assert not (out / "training_args.bin").exists()  # nothing pickled in the shipped folder
    losses = logged_losses(out)
    assert len(losses) == 4 and losses[-1] < 0.5 * losses[0], losses
    results = json.loads((out / "eval_results.json").read_text())
    again = reevaluate_test_split(out, data, TASK)
    assert again["test_accuracy"] == pytest.approx(results["test_accuracy"], abs=1e-9)
    assert again["test_loss"] == pytest.approx(results["test_loss"], rel=1e-4)
    card = (out / "README.md").read_text()
    assert "pipeline_tag: tabular-classification" in card and f"--dataset {data}" in card  # cards.TASKS
    assert f"value: {results['test_accuracy']}" in card
    config = json.loads((out / "config.json").read_text())
    assert config["id2label"] == {"0": "0", "1": "1"} and config["use_cache"] is True
    assert config["ssm_lr"] == 1e-3  # the S4D default, not --lr


def test_trainer_resume_equals_an_uninterrupted_run(reference):
    root, data = reference
    part = root / "part"
    assert train_cli(*run_args(data, part, "--interrupt-after-steps", 9)) == 130  # SIGINT after step 9
    assert not part.exists() and (root / "part-checkpoints" / "checkpoint-9").is_dir()
    assert train_cli(*run_args(data, part)) == 2  # checkpoints left: refuses to start over silently
    assert train_cli(*run_args(data, part, "--resume")) == 0
    # dropout 0.1: equal weights also prove that the RNG and the data position were restored
    full = root / "full-checkpoints" / "checkpoint-16" / "model.safetensors"
    assert max_weight_difference(full, root / "part-checkpoints" / "checkpoint-16" / "model.safetensors") == 0.0
    assert max_weight_difference(root / "full" / "model.safetensors", part / "model.safetensors") == 0.0


def test_causal_lm_gradient_accumulation_matches_a_larger_batch(tmp_path):
    """S4DForCausalLM takes Trainer's num_items_in_batch (its forward has **kwargs), so 2 accumulated batches of 4
    must give the same update as one batch of 8 (an unscaled mean loss would be off by 2x)."""
    text = make_text(tmp_path / "t.txt", n_bytes=4000)
    common = ["--task", "causal-lm", "--dataset", text, "--backend", "trainer", *TINY, "--block-size", 32,
              "--max-steps", 4, "--eval-steps", 4, "--warmup", 0, "--logging-steps", 1]
    assert train_cli(*common, "--output-dir", tmp_path / "ga", "--batch-size", 4, "--grad-accum", 2) == 0
    assert train_cli(*common, "--output-dir", tmp_path / "big", "--batch-size", 8) == 0
    # AdamW hides a constant loss scale in the weights; the logged loss and gradient norm show it
    logs = [[v for e in json.loads((tmp_path / run / "log_history.json").read_text())
             if "loss" in e for v in (e["loss"], e["grad_norm"])] for run in ("ga", "big")]
    assert len(logs[0]) == 8 and logs[0] == pytest.approx(logs[1], rel=1e-4)
    assert max_weight_difference(tmp_path / "ga" / "model.safetensors", tmp_path / "big" / "model.safetensors") < 1e-5
    results = json.loads((tmp_path / "big" / "eval_results.json").read_text())
    assert results["test_perplexity"] == pytest.approx(2.718281828 ** results["test_loss"], rel=1e-6)
    assert (tmp_path / "big" / "tokenizer_config.json").is_file()
    assert json.loads((tmp_path / "big" / "config.json").read_text())["use_cache"] is True


def test_early_stopping(tmp_path):
    """lr 0: the eval metric never improves after the first evaluation, so patience 2 stops at the third."""
    data = make_level_npz(tmp_path / "levels.npz", n=40)
    out = tmp_path / "out"
    assert train_cli("--task", TASK, "--dataset", data, "--output-dir", out, "--backend", "trainer", *TINY,
                     "--batch-size", 8, "--max-steps", 40, "--eval-steps", 4, "--patience", 2, "--lr", 0,
                     "--ssm-lr", 0) == 0
    assert json.loads((out / "all_results.json").read_text())["global_step"] == 12
