"""Publish a folder trained outside s4d-hf: what ``s4d-hf release FOLDER --dataset SPEC --task TASK`` (or
``--info INFO.json``) runs for a folder without our ``training_args.json`` (:mod:`s4d_hf.cli.release`).

Such a folder is what a plain ``transformers.Trainer.save_model`` / ``model.save_pretrained`` writes: config.json and
model.safetensors, maybe ``training_args.bin`` (a pickle: never read here, and left out by ``s4d-hf push``), the
processor the user saved, maybe neither code files nor a full ``auto_map``. :func:`release_own_training`:

1. with ``dataset`` and ``task``: reads the dataset as ``s4d-hf train --dataset`` does (same readers, same column and
   split options, splits carved with seed 0 where the data has none) and measures the test metrics through the
   folder's own processor and model (:mod:`s4d_hf.hub.evaluation`, as ``release`` does for our folders), and the
   same-split classic baseline; the card's reproduce command is ``s4d-hf evaluate FOLDER --dataset SPEC --task TASK
   ...``, which prints the same numbers;
2. ``info``: card keys (schema: :mod:`s4d_hf.hub.cards`) that override the defaults, e.g. ``command`` (how the
   weights were trained), ``license``, ``limitations``, ``dataset`` (merged key by key). Alone (no ``dataset``), it
   must give ``task``, ``metrics`` and ``dataset``: the card then states them as given and says no command in s4d-hf
   recomputes them. With ``dataset``, ``metrics`` and ``baseline`` are measured and may not be given;
3. draws the plots (confusion matrix when measured, the first layer's eigenvalues), runs
   :func:`~s4d_hf.hub.remote_code.make_portable` (code files, every head's ``auto_map``, ``custom_pipelines``) and
   writes README.md and release.json, all at once (:func:`s4d_hf.staging.staged_folder`).

A folder without a processor is refused (:func:`check_processor`), with the one line naming the file and how to
save it: the processor holds what the weights were trained to expect (the time-series normalisation statistics,
the audio sampling rate, the image size), which only the user knows. A default one written here would make the
card's metrics and the published pipeline silently differ from the model as trained.
"""

from __future__ import annotations

import json
import shlex
from pathlib import Path

import numpy as np

from s4d_hf.hub.cards import PROCESSOR_FILES, TRAINING_TASK_TO_CARD, card_task, shown_folder, write_model_card
from s4d_hf.hub.evaluation import note
from s4d_hf.hub.release import _draw_plots, _test_metrics, main_metric
from s4d_hf.hub.remote_code import make_portable
from s4d_hf.staging import staged_folder
from s4d_hf.training.baselines import run_baseline
from s4d_hf.training.data.loading import load_dataset_spec

DEFAULT_COMMAND = ("not recorded: trained outside s4d-hf (transformers.Trainer / save_pretrained); give the training "
                   "command with `s4d-hf release --training-command`")
DATA_SEED = 0  # the seed of carved eval/test splits, as `s4d-hf train` uses by default

# task -> how to save the processor a folder lacks (the message of check_processor)
SAVE_PROCESSOR = {
    "audio-classification": "S4DFeatureExtractor(sampling_rate=HZ).save_pretrained(FOLDER)",
    "image-classification": "S4DImageProcessor(size={'height': H, 'width': W}).save_pretrained(FOLDER)",
    "time-series-classification": "S4DTimeSeriesProcessor(feature_size=C).fit(train_series).save_pretrained(FOLDER)",
    "time-series-regression": "S4DTimeSeriesProcessor(feature_size=C).fit(train_series).save_pretrained(FOLDER)",
    "causal-lm": "S4DByteTokenizer().save_pretrained(FOLDER)",
}


def check_processor(folder, task: str) -> None:
    """Refuse (ValueError, one line) a folder without a processor or tokenizer file."""
    folder = Path(folder)
    if not any((folder / name).is_file() for name in PROCESSOR_FILES):
        how = SAVE_PROCESSOR.get(task, "the processor's save_pretrained(FOLDER)")
        raise ValueError(f"{folder}: no processor (preprocessor_config.json or tokenizer_config.json): save the one "
                         f"the model was trained with, e.g. `from s4d_hf import ...; {how}`, then run release again")


def dataset_flags(dataset: str, task: str, dataset_args: dict | None) -> str:
    """``--dataset SPEC --task TASK --label-column-name ...``, shell-quoted, for the commands a card shows."""
    parts = ["--dataset", dataset, "--task", task]
    for name, value in sorted((dataset_args or {}).items()):
        parts += ["--" + name.replace("_", "-"), str(value)]
    return " ".join(shlex.quote(str(p)) for p in parts)


def load_splits(dataset: str, task: str, dataset_args: dict | None = None):
    note(f"loading dataset {dataset}")
    return load_dataset_spec(dataset, task, seed=DATA_SEED, dataset_args=dict(dataset_args or {}))


def baseline_own(dataset: str, task: str, dataset_args: dict | None = None) -> dict:
    """The classic baseline for ``task`` on the dataset's splits (fit on train+eval, scored on test)."""
    splits = load_splits(dataset, task, dataset_args)
    note(f"fitting and scoring the baseline for {task}")
    return run_baseline(task, splits)


def release_own_training(folder, task: str | None = None, dataset: str | None = None,
                         dataset_args: dict | None = None, info: dict | None = None, dataset_id: str | None = None,
                         command: str | None = None) -> dict:
    """Measure (``dataset`` + ``task``) or take (``info``) the card's facts, make the folder portable and write
    README.md and release.json, all at once. Returns the card's ``info``. See the module docstring."""
    folder = Path(folder)
    given = dict(info or {})
    if dataset is None and not given:
        raise ValueError("give --dataset and --task (measured), or --info INFO.json (the card's facts)")
    if dataset is not None and task is None:
        raise ValueError("--dataset needs --task: the task to read the dataset as")
    task = task or _training_task(given.get("task"))
    check_processor(folder, task)
    logits, splits = None, None
    if dataset is not None:
        clash = sorted({"metrics", "baseline"} & set(given))
        if clash:
            raise ValueError(f"--info gives {clash}, which release measures with --dataset: drop them from the JSON, "
                             "or drop --dataset to state them as given")
        if "task" in given and given["task"] != card_task(task):
            raise ValueError(f"--info task {given['task']!r} differs from --task {task!r}")
        splits = load_splits(dataset, task, dataset_args)
        metrics, logits = _measure(folder, task, dataset, splits)
        note(f"fitting and scoring the baseline for {task}")
        base = run_baseline(task, splits)
        measured = _measured_info(folder, task, dataset, dataset_args, splits, metrics, base, dataset_id)
        info = {**measured, **given, "dataset": {**measured["dataset"], **(given.get("dataset") or {})}}
    else:
        info = {"baseline": None, "evaluate_command": None, **given}
        if dataset_id is not None and isinstance(info.get("dataset"), dict):
            info["dataset"] = {**info["dataset"], "id": dataset_id}
    info.setdefault("model_name", folder.resolve().name)
    info.setdefault("repo_id", f"<user>/{folder.resolve().name}")  # the folder's name, not its staging copy's
    info.setdefault("command", command or DEFAULT_COMMAND)
    if command is not None:
        info["command"] = command
    info.setdefault("limitations", [_limitation(info)])
    with staged_folder(folder, copy_of=folder) as staging:
        note("plotting")
        if "plots" not in given:
            info["plots"] = _draw_plots(staging, task, splits, logits)
        note(f"writing {folder / 'README.md'} and release.json")
        make_portable(staging)
        write_model_card(staging, info)
        (staging / "release.json").write_text(json.dumps(info, indent=2, sort_keys=True, default=str) + "\n")
    return info


def _training_task(card_value) -> str:
    """The ``--task`` of an info's card task (text-generation -> causal-lm)."""
    if not isinstance(card_value, str):
        raise ValueError("--info without --dataset must give 'task' (e.g. \"time-series-classification\"), "
                         "'metrics' and 'dataset'; see s4d_hf/hub/cards.py for the keys")
    return {card: task for task, card in TRAINING_TASK_TO_CARD.items()}.get(card_value, card_value)


def _measure(folder: Path, task: str, dataset: str, splits) -> tuple[dict, np.ndarray | None]:
    if not splits.test:
        raise ValueError(f"the test split of {dataset!r} is empty")
    return _test_metrics(folder, task, {"task": task, "dataset": dataset}, splits)


def _measured_info(folder: Path, task: str, dataset: str, dataset_args: dict | None, splits, metrics: dict,
                   base: dict, dataset_id: str | None) -> dict:
    metric = main_metric(task)
    flags = dataset_flags(dataset, task, dataset_args)
    shown = shown_folder(folder)
    options = ", ".join(f"{k}={v}" for k, v in sorted((dataset_args or {}).items()))
    return {
        "model_name": folder.resolve().name,
        "task": card_task(task),
        "dataset": {
            "id": dataset_id or Path(dataset).name or dataset,
            "name": Path(dataset).name or dataset,
            "description": splits.description or dataset,
            "source": f"user data: {dataset}" + (f" (options: {options})" if options else ""),
            "license": splits.license or "unknown",
            "splits": {"train": f"{len(splits.train)} examples (as s4d-hf reads the data; the model's own training "
                                "data is not recorded in the folder)",
                       "eval": f"{len(splits.eval)} examples",
                       "test": f"{len(splits.test)} examples"},
            **({"citation": splits.citation} if splits.citation else {}),
        },
        "metrics": metrics,
        "baseline": {"name": base["name"], "metric": metric, "value": base[metric],
                     "command": f"s4d-hf release {shlex.quote(shown)} {flags} --baseline-only",
                     "description": "fit on the train and eval splits, scored on the same test split"},
        "evaluate_folder": shown,
        "evaluate_command": f"s4d-hf evaluate {shlex.quote(shown)} {flags}",
        "summary": "Trained outside s4d-hf (a plain `transformers` training run); the metrics below were measured "
                   "on the test split by `s4d-hf release` through this folder's own processor and model.",
    }


def _limitation(info: dict) -> str:
    dataset = info.get("dataset") or {}
    test = (dataset.get("splits") or {}).get(info.get("test_split", "test"), "")
    return (f"Trained outside s4d-hf; tested on {dataset.get('name', 'its own data')} only"
            + (f" ({test})" if test else "") + "; other data is untested.")
