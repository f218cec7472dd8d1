"""Turn a finished ``s4d-hf train`` folder into a shipped checkpoint: :func:`release`, what ``s4d-hf release FOLDER``
runs (:mod:`s4d_hf.cli.release`).

It measures everything the card states, with the commands the card names:

1. the test metrics, with :func:`s4d_hf.hub.evaluation.evaluate_folder` (what ``s4d-hf evaluate FOLDER`` prints);
2. a same-split classic baseline (:mod:`s4d_hf.training.baselines`; ``s4d-hf release FOLDER --baseline-only``
   prints it alone);
3. plots: training curve (from ``log_history.json``), confusion matrix (classification), the first layer's
   eigenvalues dt·A;
4. further evaluations given with ``--extra KIND[:ARG]`` (audio: ``real`` = the recorded digits, ``unseen`` =
   spoken-digits-unseen, ``families`` = accuracy per voice family on the test split and spoken-digits-unseen,
   ``rate:HZ`` = clips at another sampling rate, once with the processor's ``rate`` policy and once resampled);
5. when the folder holds ``transformer_baseline.json`` (written by ``s4d-hf baseline FOLDER``,
   :mod:`s4d_hf.training.transformer_baseline`): a three-way table S4D | same-size Transformer | classic baseline
   with the metric, non-embedding parameters, training wall time and peak memory. That file must be a full-budget
   run (not ``--max-steps``) of this very run (its recorded S4D command equals training_args.json's), else release
   refuses it;

then renders README.md with :func:`s4d_hf.hub.cards.write_model_card`, and writes the numbers to ``release.json``.
The folder changes all at once (:func:`s4d_hf.staging.staged_folder`): a release that fails leaves it as it was.
The hardware and the known limitations a card states come from the built-in datasets' registry
(:mod:`s4d_hf.training.data.builtin`).
"""

import json
from pathlib import Path

import numpy as np

from s4d_hf.hub import plots
from s4d_hf.hub.cards import card_task, write_model_card
from s4d_hf.hub.evaluation import (
    evaluate_folder,
    note,
    predict_logits,
    run_splits,
    scores,
)
from s4d_hf.hub.remote_code import make_portable
from s4d_hf.staging import staged_folder
from s4d_hf.training.baselines import run_baseline
from s4d_hf.training.data.builtin import REGISTRY, RELEASE_HARDWARE
from s4d_hf.training.data.builtin.spoken_digits import speakers_of_test_clips
from s4d_hf.training.data.core import CLASSIFICATION_TASKS, data_seed
from s4d_hf.training.data.hf_datasets import hf_dataset_options
from s4d_hf.training.data.loading import load_dataset_spec
from s4d_hf.training.transformer_baseline import OUTPUT_NAME as TRANSFORMER_BASELINE

def baseline(folder) -> dict:
    """The classic baseline for the run's task on the run's own splits (fit on train+eval, scored on test)."""
    run_args, splits = run_splits(folder)
    note(f"fitting and scoring the baseline for {run_args['task']}")
    return run_baseline(run_args["task"], baseline_splits(run_args, splits))


def baseline_splits(run_args: dict, splits):
    """The splits the classic baseline is fit on: the run's, without a built-in's augmentation options (crops,
    balance: see ``BuiltinDataset.augmentation_options``), so the baseline sees the data as recorded."""
    entry = REGISTRY.get(run_args["dataset"])
    options = dict(run_args.get("dataset_option") or {})
    dropped = sorted(k for k in options if entry is not None and k in entry.augmentation_options)
    if not dropped:
        return splits
    note(f"the baseline is fit without the augmentation option(s) {', '.join(dropped)}")
    return load_dataset_spec(run_args["dataset"], run_args["task"], seed=data_seed(run_args),
                             builtin_options={k: v for k, v in options.items() if k not in dropped},
                             dataset_args=hf_dataset_options(run_args))


def _history(folder: Path, metric: str) -> list[dict]:
    path = folder / "log_history.json"
    rows = json.loads(path.read_text()) if path.is_file() else []
    out = []
    for row in rows:
        step = row.get("step")
        if step is None:
            continue
        entry = {"step": step}
        if "loss" in row:
            entry["loss"] = row["loss"]
        if f"eval_{metric}" in row:
            entry["eval_metric"] = row[f"eval_{metric}"]
        if len(entry) > 1:
            out.append(entry)
    return out


def release(folder, extras: list[str] = (), dataset_id: str | None = None, methods=None) -> dict:
    """Measure ``folder`` (test metrics, baseline, further evaluations), then write its plots, card and
    release.json, all at once; returns the card's ``info``."""
    folder = Path(folder)
    run_args, splits = run_splits(folder)
    if not run_args.get("command"):
        raise ValueError(f"{folder}/training_args.json has no 'command'; retrain with this version of s4d-hf")
    task = run_args["task"]
    transformer = transformer_baseline_info(folder, run_args)  # refused before anything is measured
    check_extras(run_args, extras)
    metrics, logits = _test_metrics(folder, task, run_args, splits)
    note(f"fitting and scoring the baseline for {task}")
    base = run_baseline(task, baseline_splits(run_args, splits))
    extra_results = []
    for kind in extras:
        note(f"further evaluation --extra {kind}")
        extra_results += _extra(folder, kind, (run_args, splits), logits)
    comparisons = _method_comparisons(methods, run_args["dataset"]) if methods else []
    info = _card_info(folder, run_args, splits, metrics, base, extra_results, comparisons, dataset_id)
    if transformer is not None:
        transformer["s4d"]["hardware"] = info["hardware"]
        info["transformer_baseline"] = transformer
    with staged_folder(folder, copy_of=folder) as staging:  # the folder changes only once everything is written
        note("plotting")
        info["plots"] = _draw_plots(staging, task, splits, logits)
        note(f"writing {folder / 'README.md'} and release.json")
        make_portable(staging)  # the current code copies, every head's auto_map and the folder's custom pipeline
        write_model_card(staging, info)
        (staging / "release.json").write_text(json.dumps(info, indent=2, sort_keys=True, default=str) + "\n")
    return info


def main_metric(task: str) -> str:
    """The metric a card compares with the baseline."""
    return {"time-series-regression": "rmse", "causal-lm": "bits_per_byte"}.get(task, "accuracy")


def _test_metrics(folder: Path, task: str, run_args: dict, splits) -> tuple[dict, np.ndarray | None]:
    """(test metrics, the test logits of a classifier (None otherwise), for its confusion matrix)."""
    if task in CLASSIFICATION_TASKS:  # one pass over the test split gives the metrics and the confusion matrix
        logits = predict_logits(folder, task, splits, splits.test)
        return scores(task, logits, np.asarray([ex["labels"] for ex in splits.test])), logits
    return evaluate_folder(folder, run=(run_args, splits)), None


def _draw_plots(folder: Path, task: str, splits, logits: np.ndarray | None) -> list[dict]:
    """The training curve, the confusion matrix (classification) and the eigenvalues, drawn into ``folder``."""
    from transformers import AutoModel

    plot_list = []
    curve_metric = "loss" if task == "causal-lm" else main_metric(task)
    history = _history(folder, curve_metric)
    if history:
        plots.plot_training_curve(history, folder / "training_curve.png", metric_name=f"eval {curve_metric}")
        plot_list.append({"file": "training_curve.png", "caption": "Training loss and the eval-split metric"})
    if logits is not None:
        names = [splits.id2label[i] for i in range(len(splits.id2label))]
        labels = np.asarray([ex["labels"] for ex in splits.test])
        plots.plot_confusion_matrix(labels, logits.argmax(-1), folder / "confusion_matrix.png", names)
        plot_list.append({"file": "confusion_matrix.png", "caption": "Confusion matrix on the test split"})
    plots.plot_eigenvalues(AutoModel.from_pretrained(folder), folder / "eigenvalues.png")
    plot_list.append({"file": "eigenvalues.png", "caption": "First layer's trained dt·A (continuous) and Ā"})
    return plot_list


def _card_info(folder: Path, run_args: dict, splits, metrics: dict, base: dict, extra_results: list,
               comparisons: list, dataset_id: str | None) -> dict:
    """The card ``info`` (schema: :mod:`s4d_hf.hub.cards`) of a released folder; ``plots`` is filled in later."""
    task, dataset, metric = run_args["task"], run_args["dataset"], main_metric(run_args["task"])
    results = json.loads((folder / "all_results.json").read_text())
    minutes = results.get("train_runtime", 0) / 60
    builtin = REGISTRY.get(dataset)
    limitations = list(builtin.limitations) if builtin is not None and builtin.limitations else [
        f"Trained and tested on {dataset} only ({len(splits.test)} test examples); other data is untested."]
    return {
        "model_name": folder.name,
        "task": card_task(task),
        "dataset": {
            "id": dataset_id or dataset,
            "name": dataset,
            "description": splits.description or dataset,
            "source": _source(run_args),
            "license": splits.license or "unknown",
            "splits": {"train": f"{len(splits.train)} examples", "eval": f"{len(splits.eval)} examples "
                       "(model selection)", "test": f"{len(splits.test)} examples"},
            **({"citation": splits.citation} if splits.citation else {}),
        },
        "metrics": metrics,
        "baseline": {"name": base["name"], "metric": metric, "value": base[metric],
                     "command": f"s4d-hf release {folder.as_posix()} --baseline-only",
                     "description": "fit on the train and eval splits, scored on the same test split"},
        "command": run_args["command"],
        "training_time": f"{minutes:.0f} min ({results.get('global_step', '?')} optimizer steps)",
        # where the run says it trained (all_results.json's training_device, since the runs record it); the
        # shipped CPU checkpoints predate that field
        "hardware": results.get("training_device") or RELEASE_HARDWARE,
        "limitations": limitations,
        "plots": [],
        "extra_results": extra_results,
        "method_comparisons": comparisons,
        "evaluate_folder": folder.as_posix(),
        "repo_id": f"<user>/{folder.resolve().name}",  # the card is rendered in a staging copy with another name
    }


def _duration(seconds: float) -> str:
    return f"{seconds:.0f} s" if seconds < 120 else f"{seconds / 60:.0f} min"


def _memory(results: dict) -> str | None:
    """``peak_memory_bytes`` of all_results.json / transformer_baseline.json as text, with what was measured."""
    if not isinstance(results.get("peak_memory_bytes"), int):
        return None
    return f"{results['peak_memory_bytes'] / 2**20:.0f} MiB ({results.get('peak_memory_measure', 'peak memory')})"


def transformer_baseline_info(folder: Path, run_args: dict) -> dict | None:
    """The card's ``transformer_baseline`` entry (schema: :mod:`s4d_hf.hub.cards`) from the folder's
    transformer_baseline.json; None without the file. Refuses (ValueError) a shortened run or one made for another
    training run of this folder."""
    path = folder / TRANSFORMER_BASELINE
    if not path.is_file():
        return None
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
        s4d, transformer, metric = data["s4d"], data["transformer"], main_metric(run_args["task"])
        value = data["test_metrics"][metric]
    except (ValueError, KeyError, TypeError) as e:
        raise ValueError(f"{path}: not a transformer_baseline.json written by `s4d-hf baseline` ({type(e).__name__}: "
                         f"{e}); rerun s4d-hf baseline {folder.as_posix()}") from None
    if data.get("shortened"):
        raise ValueError(f"{path}: a shortened run ({data.get('optimizer_steps')} of {s4d.get('optimizer_steps')} "
                         f"optimizer steps, --max-steps); rerun `s4d-hf baseline {folder.as_posix()}` without "
                         "--max-steps, or remove the file")
    if s4d.get("command") != run_args.get("command"):
        raise ValueError(f"{path}: made for another training run of this folder ({s4d.get('command')!r}); rerun "
                         f"`s4d-hf baseline {folder.as_posix()}`, or remove the file")
    results = json.loads((folder / "all_results.json").read_text())
    optimizer = data["optimizer"]
    return {
        "name": f"{transformer['architecture'].split(' ')[0]}, {transformer['n_layers']} "
                f"layer{'s' if transformer['n_layers'] != 1 else ''}, width "
                f"{transformer['hidden_size']}, FFN {transformer['intermediate_size']}, "
                f"{transformer['num_attention_heads']} heads",
        "metric": metric, "value": value, "params": transformer["non_embedding_parameters"],
        "training_time": _duration(data["train_runtime"]), "peak_memory": _memory(data),
        "hardware": data["hardware"], "command": data["command"],
        "description": f"{transformer['architecture']}; the S4D run's budget ({data['optimizer_steps']} optimizer "
                       f"steps of batch {data['batch_size']}), AdamW at lr {optimizer['lr']:g} with "
                       f"{optimizer['warmup_steps']} warmup steps and cosine decay, the checkpoint picked on the "
                       "eval split as the S4D run did; the same test split and metric code as S4D's numbers",
        "s4d": {"params": s4d["non_embedding_parameters"],
                "training_time": _duration(results["train_runtime"]) if "train_runtime" in results else None,
                "peak_memory": _memory(results)},
    }


def _source(run_args: dict) -> str:
    spec = run_args["dataset"]
    options = run_args.get("dataset_option") or {}
    text = REGISTRY[spec].description if spec in REGISTRY else f"user data: {spec}"
    if options:
        text += " Options: " + ", ".join(f"{k}={v}" for k, v in sorted(options.items())) + "."
    return text


METHOD_NAMES = {"ptd": "S4D-LegS vs S4-PTD initialisation", "spt": "from scratch vs self-pretraining (SPT) first"}


def _method_comparisons(path, dataset: str) -> list[dict]:
    """The rows of ``benchmarks/methods.py``'s results file for this dataset, formatted for the card."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"--methods {path}: no such file (write it with benchmarks/methods.py)")
    rows = [r for r in json.loads(path.read_text())["rows"] if r["dataset"] == dataset]
    out = []
    for row in rows:
        arms = [f"{arm}: {v['mean']:.4g} ± {v['std']:.2g}" for arm, v in row["arms"].items()]
        steps = f"{row['steps']}" + (f" (after {row['spt_steps']} SPT steps)" if "spt_steps" in row else "")
        out.append({"name": METHOD_NAMES[row["method"]], "metric": row["metric"], "arms": " / ".join(arms),
                    "steps": steps, "seeds": len(row["seeds"]), "model": row["model"],
                    "command": f"python benchmarks/methods.py {row['method']} --datasets {dataset}"})
    return out


def check_extras(run_args: dict, extras) -> None:
    """Refuse ``--extra`` kinds the run's dataset cannot give (before anything is measured)."""
    if "families" in extras and run_args.get("dataset") != "spoken-digits":
        raise ValueError(f"--extra families: only for spoken-digits runs; this run was trained on "
                         f"{run_args.get('dataset')!r}")


def _extra(folder: Path, kind: str, run: tuple, test_logits: np.ndarray | None) -> list[dict]:
    """Further audio evaluations (one or more card rows): the real recorded digits, a second set of unseen voices,
    accuracy per voice family (from ``test_logits``, the card's test pass) and clips at another sampling rate."""
    if kind == "families":
        return _accuracy_by_family(folder, *run, test_logits)
    return [_one_extra(folder, kind, run)]


def _one_extra(folder: Path, kind: str, run: tuple) -> dict:
    if kind == "real":
        metrics = evaluate_folder(folder, dataset="spoken-digits-real")
        return {"name": "Real recorded digits (spoken-digits-real)",
                "description": "Allison Smith's digit prompts 0-9 from Debian asterisk-core-sounds-en-wav, 8 kHz, one "
                               "speaker, 10 clips: `s4d-hf evaluate FOLDER --dataset spoken-digits-real`",
                "metrics": metrics}
    if kind == "unseen":
        metrics = evaluate_folder(folder, dataset="spoken-digits-unseen")
        return {"name": "Unseen voices (spoken-digits-unseen)",
                "description": "the digits synthesised in espeak-ng voice families and an accent that no "
                               "spoken-digits split uses, 100 clips per digit: `s4d-hf evaluate FOLDER --dataset "
                               "spoken-digits-unseen`",
                "metrics": metrics}
    if kind.startswith("rate:"):
        hz = int(kind.split(":", 1)[1])
        by_rate = evaluate_folder(folder, sampling_rate=hz, rate_policy="rate", run=run)
        by_resampling = evaluate_folder(folder, sampling_rate=hz, rate_policy="resample", run=run)
        return {"name": f"Test clips at {hz} Hz",
                "description": f"the test clips resampled to {hz} Hz, then fed either with the S4D step-size change "
                               f"(rate policy: dt scaled by model_rate/{hz}, no resampling) or resampled back by "
                               f"the processor: `s4d-hf evaluate FOLDER --sampling-rate {hz} --rate-policy "
                               "rate|resample`",
                "metrics": {**{f"{k} (rate change)": v for k, v in by_rate.items()},
                            **{f"{k} (resampling)": v for k, v in by_resampling.items()}}}
    raise ValueError(f"--extra must be 'real', 'unseen', 'families' or 'rate:HZ'; got {kind!r}")


def _accuracy_by_family(folder: Path, run_args: dict, splits, test_logits: np.ndarray) -> list[dict]:
    """Accuracy per voice family of a spoken-digits run, on its test split (``test_logits``, the card's test pass)
    and on spoken-digits-unseen: which kinds of voice the model has not learnt."""
    seed = data_seed(run_args)
    unseen = load_dataset_spec("spoken-digits-unseen", run_args["task"], seed=seed)
    results = []
    for dataset, examples, logits, options, what in (
            ("spoken-digits", splits.test, test_logits, run_args.get("dataset_option") or {}, "the test split"),
            ("spoken-digits-unseen", unseen.test, predict_logits(folder, run_args["task"], unseen, unseen.test), {},
             "spoken-digits-unseen")):
        speakers = np.asarray(speakers_of_test_clips(dataset, seed, **options))
        correct = logits.argmax(-1) == np.asarray([ex["labels"] for ex in examples])
        by_family = {f"accuracy {name} ({int((speakers == name).sum())} clips)":
                     float(correct[speakers == name].mean()) for name in np.unique(speakers)}
        results.append({"name": f"Accuracy by voice family: {dataset}",
                        "description": f"{what} by voice family: `s4d-hf release FOLDER --extra families`",
                        "metrics": dict(sorted(by_family.items(), key=lambda item: item[1]))})
    return results
