"""``s4d-hf train --backend accelerate``: the plain Accelerator loop learns, writes a Hub-ready folder whose numbers
can be reproduced, resumes exactly, runs bf16 autocast with the SSM in float32, and saves regression heads in the
targets' own units."""

import json

import numpy as np
import pytest

from test_training_data import (
    TINY,
    logged_losses,
    make_level_npz,
    make_regression_npz,
    make_text,
    max_weight_difference,
    model_weights,
    reevaluate_test_split,
    train_cli,
)

TASK = "time-series-classification"


def run_args(data, out, *extra):
    return ["--task", TASK, "--dataset", data, "--output-dir", out, "--backend", "accelerate", *TINY,
            "--batch-size", 8, "--max-steps", 16, "--eval-steps", 8, "--dropout", 0.1, "--keep-checkpoints", *extra]


@pytest.fixture(scope="module")
def reference(tmp_path_factory):
    root = tmp_path_factory.mktemp("accelerate")
    data = make_level_npz(root / "levels.npz", n=64)
    assert train_cli(*run_args(data, root / "full")) == 0
    return root, data


def test_accelerate_learns_and_writes_a_hub_ready_folder(reference, capsys):
    root, data = reference
    out = root / "full"
    for name in ("config.json", "model.safetensors", "README.md", "all_results.json", "eval_results.json"):
        assert (out / name).is_file(), name
    losses = logged_losses(out)
    assert len(losses) == 4 and losses[-1] < 0.5 * losses[0], losses
    results = json.loads((out / "all_results.json").read_text())
    assert results["world_size"] == 1 and results["global_step"] == 16
    from transformers import AutoModelForSequenceClassification

    model = AutoModelForSequenceClassification.from_pretrained(str(out))
    assert results["num_parameters"] == sum(p.numel() for p in model.parameters())
    again = reevaluate_test_split(out, data, TASK)
    assert again["test_accuracy"] == pytest.approx(results["test_accuracy"], abs=1e-9)
    assert again["test_loss"] == pytest.approx(results["test_loss"], rel=1e-4)


def test_accelerate_resume_equals_an_uninterrupted_run(reference):
    root, data = reference
    part = root / "part"
    assert train_cli(*run_args(data, part, "--interrupt-after-steps", 9)) == 130
    assert not part.exists() and (root / "part-checkpoints" / "checkpoint-9").is_dir()
    assert train_cli(*run_args(data, part, "--resume")) == 0
    full = root / "full-checkpoints" / "checkpoint-16" / "model.safetensors"
    assert max_weight_difference(full, root / "part-checkpoints" / "checkpoint-16" / "model.safetensors") == 0.0
    assert max_weight_difference(root / "full" / "model.safetensors", part / "model.safetensors") == 0.0
    assert logged_losses(part) == logged_losses(root / "full")  # the logs match too


def test_bf16_autocast_keeps_the_ssm_in_float32_and_learns(tmp_path):
    data = make_level_npz(tmp_path / "levels.npz", n=64)
    assert train_cli(*run_args(data, tmp_path / "bf16", "--mixed-precision", "bf16")) == 0
    weights = model_weights(tmp_path / "bf16" / "model.safetensors")
    assert {str(w.dtype) for w in weights.values()} == {"float32"}
    losses = logged_losses(tmp_path / "bf16")
    assert losses[-1] < 0.5 * losses[0], losses


def test_regression_head_is_saved_in_the_targets_units(tmp_path):
    """Training uses standardised targets; the saved classifier has the scale folded back in, so the folder alone
    reproduces test_rmse and predicts around the targets' mean (40), not around 0."""
    data = make_regression_npz(tmp_path / "reg.npz", n=64)
    out = tmp_path / "reg"
    assert train_cli("--task", "time-series-regression", "--dataset", data, "--output-dir", out, "--backend",
                     "accelerate", *TINY, "--batch-size", 8, "--max-steps", 24, "--eval-steps", 12) == 0
    results = json.loads((out / "eval_results.json").read_text())
    again = reevaluate_test_split(out, data, "time-series-regression")
    assert again["test_rmse"] == pytest.approx(results["test_rmse"], rel=1e-4)
    y = np.load(data)["y"]
    assert abs(float(np.mean(again["predictions"])) - 40) < 5
    assert results["test_rmse"] < 0.7 * float(np.std(y))  # better than predicting the mean


def test_causal_lm_on_a_text_file(tmp_path):
    text = make_text(tmp_path / "t.txt", n_bytes=4000)
    out = tmp_path / "lm"
    assert train_cli("--task", "causal-lm", "--dataset", text, "--output-dir", out, "--backend", "accelerate", *TINY,
                     "--block-size", 32, "--batch-size", 8, "--max-steps", 12, "--eval-steps", 6) == 0
    results = json.loads((out / "eval_results.json").read_text())
    assert results["test_bits_per_byte"] == pytest.approx(results["test_loss"] / np.log(2), rel=1e-6)
    assert results["test_loss"] < np.log(259)  # better than uniform over the vocabulary
    losses = logged_losses(out)
    assert losses[-1] < losses[0]

    import s4d_hf  # noqa: F401
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    model = AutoModelForCausalLM.from_pretrained(str(out))
    tokenizer = AutoTokenizer.from_pretrained(str(out))
    ids = tokenizer("to be", add_special_tokens=False, return_tensors="pt").input_ids
    generated = model.generate(ids, max_new_tokens=5, do_sample=False)
    assert generated.shape == (1, ids.shape[1] + 5) and torch.equal(generated[:, : ids.shape[1]], ids)


def test_early_stopping(tmp_path):
    """lr 0: the eval metric never improves after the first evaluation, so patience 2 stops at the third."""
    data = make_level_npz(tmp_path / "levels.npz", n=40)
    out = tmp_path / "out"
    assert train_cli("--task", TASK, "--dataset", data, "--output-dir", out, "--backend", "accelerate", *TINY,
                     "--batch-size", 8, "--max-steps", 40, "--eval-steps", 4, "--patience", 2, "--lr", 0,
                     "--ssm-lr", 0) == 0
    assert json.loads((out / "all_results.json").read_text())["global_step"] == 12
