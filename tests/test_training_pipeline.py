"""The saved folder serves inference on RAW inputs through its own processor and pipeline, and reproduces the
run's test metrics: the processor normalises exactly as training did (statistics from the train split). The
cross-entropy recomputed from the pipeline's scores is sensitive to any normalisation mismatch, unlike accuracy.
Needs ``s4d_hf.processing``; skipped without it."""

import json

import numpy as np
import pytest

pytest.importorskip("s4d_hf.processing")

from test_training_data import TINY, make_level_npz, train_cli  # noqa: E402

from s4d_hf.training.data import load_dataset_spec  # noqa: E402


def run(tmp_path, task, dataset, backend="accelerate", steps=16):
    out = tmp_path / "out"
    assert train_cli("--task", task, "--dataset", dataset, "--output-dir", out, "--backend", backend, *TINY,
                     "--batch-size", 8, "--max-steps", steps, "--eval-steps", 8) == 0
    return out, json.loads((out / "eval_results.json").read_text())


def check_pipeline_reproduces(task, out, results, raw, inputs):
    """Top-1 accuracy and the mean cross-entropy -log p(true label), from the pipeline's scores, against the run."""
    from transformers import pipeline

    # audio and time-series folders carry their pipeline (custom_pipelines), which transformers runs only with
    # trust_remote_code=True, also where s4d-hf is installed
    classify = pipeline(task, model=str(out), trust_remote_code=True)
    names = [raw.id2label[ex["labels"]] for ex in raw.test]
    outputs = [classify(x, top_k=len(raw.id2label)) for x in inputs]
    accuracy = float(np.mean([o[0]["label"] == name for o, name in zip(outputs, names)]))
    true_scores = [next(s["score"] for s in o if s["label"] == name) for o, name in zip(outputs, names)]
    loss = float(np.mean(-np.log(true_scores)))
    assert accuracy == pytest.approx(results["test_accuracy"], abs=1e-9)
    assert loss == pytest.approx(results["test_loss"], rel=1e-3)


def test_time_series_pipeline_reproduces_the_test_metrics(tmp_path):
    data = make_level_npz(tmp_path / "levels.npz", n=64)
    out, results = run(tmp_path, "time-series-classification", data, backend="trainer")
    assert (out / "preprocessor_config.json").is_file()
    raw = load_dataset_spec(str(data), "time-series-classification", seed=0)  # raw, unnormalised test series
    check_pipeline_reproduces("time-series-classification", out, results, raw, [ex["input_values"] for ex in raw.test])


def test_audio_classification_pipeline_reproduces_the_test_metrics(tmp_path):
    rng = np.random.default_rng(0)
    n, length = 64, 200
    y = np.arange(n) % 2
    t = np.arange(length) / 8000
    X = np.sin(2 * np.pi * np.where(y, 1200, 300)[:, None] * t) * rng.uniform(0.05, 0.5, (n, 1))
    X = (X + 0.01 * rng.standard_normal((n, length))).astype(np.float32)
    np.savez(tmp_path / "tones.npz", X=X, y=y, label_names=np.array(["low", "high"]), sampling_rate=8000)
    out, results = run(tmp_path, "audio-classification", tmp_path / "tones.npz", steps=24)
    raw = load_dataset_spec(str(tmp_path / "tones.npz"), "audio-classification", seed=0)
    check_pipeline_reproduces("audio-classification", out, results, raw,
                              [{"raw": ex["input_values"][:, 0], "sampling_rate": 8000} for ex in raw.test])


def test_image_classification_pipeline_reproduces_the_test_metrics(tmp_path):
    Image = pytest.importorskip("PIL.Image")
    rng = np.random.default_rng(0)
    for label, level in (("dark", 60), ("light", 190)):
        (tmp_path / "img" / label).mkdir(parents=True)
        for i in range(30):
            pixels = np.clip(level + 40 * rng.standard_normal((6, 5)), 0, 255).astype(np.uint8)
            Image.fromarray(pixels).save(tmp_path / "img" / label / f"{i}.png")
    out, results = run(tmp_path, "image-classification", tmp_path / "img", steps=24)
    raw = load_dataset_spec(str(tmp_path / "img"), "image-classification", seed=0)
    images = [Image.fromarray(np.round(ex["input_values"].reshape(6, 5) * 255).astype(np.uint8)) for ex in raw.test]
    check_pipeline_reproduces("image-classification", out, results, raw, images)
