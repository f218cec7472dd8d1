"""Data-parallel training on CPU: two processes (gloo) under ``accelerate launch --multi_gpu --num_processes 2``
(accelerate backend) or ``torchrun --nproc_per_node 2`` (Trainer backend) with batch 4 each must follow one process
with batch 8, step for step.

Why they can agree: every process draws the same permutation of the train split per epoch, Accelerate gives
process r the batches r, r+2, ... of it, and DDP averages the two batch-mean gradients, which equals the mean over
the 8 examples when both halves are full (the train split here is 56 = 7 x 8 examples). What is left is float32
rounding of the gradient all-reduce: measured 1.2e-7 after 12 AdamW steps (weights of magnitude up to ~20), so
the tolerance is 1e-5. Note ``--multi_gpu`` on a GPU-less machine: ``--cpu --num_processes 2`` runs ONE process.
"""

import json
import os
import socket
import subprocess
import sys

from test_training_data import make_level_npz, max_weight_difference, train_cli

COMMON = ["--task", "time-series-classification", "--d-model", "16", "--n-layers", "1", "--d-state", "8",
          "--max-steps", "12", "--eval-steps", "6", "--logging-steps", "3", "--no-progress"]
ENV = {**os.environ, "OMP_NUM_THREADS": "1", "HF_HUB_OFFLINE": "1"}


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_two_cpu_processes_match_one_process_with_the_same_global_batch(tmp_path):
    data = make_level_npz(tmp_path / "levels.npz", n=70)
    launch = [sys.executable, "-m", "accelerate.commands.launch", "--multi_gpu", "--num_processes", "2",
              "--num_machines", "1", "--mixed_precision", "no", "--dynamo_backend", "no",
              "--main_process_port", str(free_port()), "-m", "s4d_hf.train"]
    two = subprocess.run([*launch, *COMMON, "--backend", "accelerate", "--dataset", str(data), "--batch-size", "4",
                          "--output-dir", str(tmp_path / "two")], env=ENV, capture_output=True, text=True, timeout=300)
    assert two.returncode == 0, two.stdout[-3000:] + two.stderr[-3000:]
    assert "world_size=2 distributed_type=MULTI_CPU" in two.stdout
    assert json.loads((tmp_path / "two" / "all_results.json").read_text())["world_size"] == 2

    assert train_cli(*COMMON, "--backend", "accelerate", "--dataset", data, "--batch-size", 8,
                     "--output-dir", tmp_path / "one") == 0
    difference = max_weight_difference(tmp_path / "two" / "model.safetensors", tmp_path / "one" / "model.safetensors")
    assert difference < 1e-5, difference
    logs = [[e["loss"] for e in json.loads((tmp_path / run / "log_history.json").read_text()) if "loss" in e]
            for run in ("two", "one")]
    assert len(logs[0]) == 4 and all(abs(a - b) < 1e-5 for a, b in zip(*logs)), logs
    results = [json.loads((tmp_path / run / "eval_results.json").read_text()) for run in ("two", "one")]
    assert abs(results[0]["test_loss"] - results[1]["test_loss"]) < 1e-5  # 7 test examples: uneven shards gathered


def test_trainer_under_torchrun_matches_one_process(tmp_path):
    """The Trainer backend under torchrun: Trainer shards a seeded permutation the same way (measured 1.2e-7)."""
    data = make_level_npz(tmp_path / "levels.npz", n=70)
    args = [*COMMON, "--backend", "trainer", "--dataset", str(data), "--keep-checkpoints"]
    two = subprocess.run([sys.executable, "-m", "torch.distributed.run", "--nproc_per_node", "2", "--master_port",
                          str(free_port()), "-m", "s4d_hf.train", *args, "--batch-size", "4",
                          "--output-dir", str(tmp_path / "two")], env=ENV, capture_output=True, text=True, timeout=300)
    assert two.returncode == 0, two.stdout[-3000:] + two.stderr[-3000:]
    assert "backend=trainer world_size=2" in two.stdout
    assert train_cli(*args, "--batch-size", 8, "--output-dir", tmp_path / "one") == 0
    final = "checkpoint-12/model.safetensors"  # the last step (the exported model is the best checkpoint)
    difference = max_weight_difference(tmp_path / "two-checkpoints" / final, tmp_path / "one-checkpoints" / final)
    assert difference < 1e-5, difference
