"""Recompute a checkpoint's test metrics from the folder alone (what ``s4d-hf evaluate FOLDER`` runs, see
:mod:`s4d_hf.cli.evaluate`).

The folder's ``training_args.json`` names the dataset, its options and the seed the run used; the test split is
re-made from that, in raw units (waveforms, pixels, raw series, text bytes), and goes through the folder's OWN
processor and model, exactly as a user of the Hub folder would run it. The last line printed is a JSON object
keyed by the card's model-index metric types, e.g. ``{"accuracy": 0.912, "f1": 0.907}``.

Options for further evaluations (reported separately in cards, never in the model-index):

* ``--dataset SPEC [--dataset-option K=V]``: another test set (e.g. ``spoken-digits-real``);
* ``--sampling-rate HZ`` (audio): resample the test clips to HZ first, then let the processor handle the rate
  change with its ``rate_policy`` (``--rate-policy rate|resample`` overrides it).

The metrics are computed by :class:`s4d_hf.training.task_metrics.TaskMetrics`, the implementation training uses.
Progress goes to stderr (:func:`note`, :func:`progress`): a tqdm bar on a terminal, plain lines in a log file.
"""

import contextlib
import json
import sys
import time
from pathlib import Path

import numpy as np

from s4d_hf.processing.feature_extraction_s4d import resample
from s4d_hf.training.data.core import data_seed, take
from s4d_hf.training.data.hf_datasets import hf_dataset_options
from s4d_hf.training.data.loading import load_dataset_spec
from s4d_hf.training.task_metrics import TaskMetrics

BATCH = 32
RUN_KEYS = ("task", "dataset")  # what training_args.json must name to re-make the test split
PLAIN_PROGRESS_EVERY = 15.0  # seconds between two progress lines when stderr is not a terminal


def note(message: str) -> None:
    """One line about the current phase on stderr, e.g. ``s4d-hf: loading the test split of tecator``."""
    print(f"s4d-hf: {message}", file=sys.stderr, flush=True)


@contextlib.contextmanager
def progress(total: int, description: str, unit: str = "examples"):
    """Yields ``update(n)`` for a loop over ``total`` items. On a terminal, a tqdm bar on stderr; otherwise (a log
    file) plain lines without escape codes: the start, at most one every :data:`PLAIN_PROGRESS_EVERY` seconds, and
    the end with the time taken."""
    if sys.stderr.isatty():
        from tqdm import tqdm

        with tqdm(total=total, desc=f"s4d-hf: {description}", unit=f" {unit}", file=sys.stderr, leave=False,
                  dynamic_ncols=True) as bar:
            yield bar.update
        return
    start = last = time.monotonic()
    done = 0
    note(f"{description}: 0/{total} {unit}")

    def update(n: int = 1) -> None:
        nonlocal done, last
        done += n
        now = time.monotonic()
        if now - last >= PLAIN_PROGRESS_EVERY and done < total:
            note(f"{description}: {done}/{total} {unit}")
            last = now

    yield update
    note(f"{description}: {done}/{total} {unit} in {time.monotonic() - start:.1f} s")


@contextlib.contextmanager
def plain_output_when_logged():
    """While stderr is not a terminal, turn off transformers' and huggingface_hub's own progress bars (a tqdm bar
    written to a log file is a run of carriage returns); the previous settings are restored after."""
    if sys.stderr.isatty():
        yield
        return
    from huggingface_hub.utils import disable_progress_bars
    from transformers.utils import logging

    transformers_bars = logging.is_progress_bar_enabled()
    logging.disable_progress_bar()
    try:
        with disable_progress_bars():  # re-enables on exit what it disabled
            yield
    finally:
        if transformers_bars:
            logging.enable_progress_bar()


def evaluate_folder(folder, dataset: str | None = None, dataset_options: dict | None = None, split: str = "test",
                    sampling_rate: int | None = None, rate_policy: str | None = None,
                    max_samples: int | None = None, run: tuple | None = None, task: str | None = None,
                    dataset_args: dict | None = None) -> dict[str, float]:
    """Metrics of the saved model + processor on the run's test split (or ``dataset``). See the module docstring.

    run: the folder's ``run_splits(folder)`` when the caller already has it (the run's own data is not reloaded).
    task: with ``dataset``, for a folder trained outside s4d-hf (no training_args.json): the task to read
    ``dataset`` as (its splits carved with seed 0, as ``s4d-hf train`` does by default).
    dataset_args: with ``dataset``, its 🤗 dataset options (:data:`~s4d_hf.training.data.HF_DATASET_ARGS`).
    """
    folder = Path(folder)
    if max_samples is not None and max_samples < 1:
        raise ValueError(f"max_samples must be a positive integer (or None for all); got {max_samples}")
    if dataset is None:
        run_args, splits = run if run is not None else run_splits(folder)
    else:
        run_args = {"task": task, "dataset": dataset} if task is not None else read_run_args(folder)
        note(f"loading dataset {dataset}")
        splits = load_dataset_spec(dataset, run_args["task"], seed=data_seed(run_args),
                                   builtin_options=dict(dataset_options or {}), dataset_args=dataset_args)
    task = run_args["task"]
    examples = take(getattr(splits, split), 0, max_samples)
    if not examples:
        raise ValueError(f"the {split} split of {dataset or run_args['dataset']!r} is empty")
    if task == "causal-lm":
        return _language_model(folder, examples)
    predictions = predict_logits(folder, task, splits, examples, sampling_rate, rate_policy)
    return scores(task, predictions, np.asarray([ex["labels"] for ex in examples]))


def scores(task: str, predictions: np.ndarray, labels: np.ndarray) -> dict[str, float]:
    """Test metrics from the model's outputs (N, K): mse/mae/rmse (regression, original units) or accuracy/macro F1
    over the K classes, computed by :class:`~s4d_hf.training.task_metrics.TaskMetrics`."""
    return TaskMetrics(task, num_labels=predictions.shape[-1])(predictions, labels)


def read_run_args(folder) -> dict:
    """The folder's training_args.json (what ``s4d-hf train`` ran)."""
    path = Path(folder) / "training_args.json"
    if not path.is_file():
        raise FileNotFoundError(f"{folder} has no training_args.json: this needs a folder written by s4d-hf train")
    try:
        run_args = json.loads(path.read_text(encoding="utf-8"))
    except ValueError as e:  # also UnicodeDecodeError
        raise ValueError(f"{path}: not valid JSON ({' '.join(str(e).split())})") from None
    if not isinstance(run_args, dict):
        raise ValueError(f"{path}: expected a JSON object (the arguments of s4d-hf train), got "
                         f"{type(run_args).__name__}")
    missing = [key for key in RUN_KEYS if not isinstance(run_args.get(key), str)]
    if missing:
        raise ValueError(f"{path}: expected the keys {list(RUN_KEYS)} as strings; missing or wrong: {missing}")
    return run_args


def run_splits(folder) -> tuple[dict, object]:
    """(training_args.json, the run's DatasetSplits in raw units) of a folder written by ``s4d-hf train``."""
    run_args = read_run_args(folder)
    note(f"loading dataset {run_args['dataset']} (the splits of the run)")
    extra = {k: (tuple(run_args[k]) if k == "image_size" else run_args[k])
             for k in ("block_size", "image_size") if run_args.get(k)}
    splits = load_dataset_spec(run_args["dataset"], run_args["task"], seed=data_seed(run_args),
                               builtin_options=dict(run_args.get("dataset_option") or {}),
                               dataset_args=hf_dataset_options(run_args), **extra)
    return run_args, splits


def predict_logits(folder, task: str, splits, examples, sampling_rate=None, rate_policy=None) -> np.ndarray:
    """Raw examples -> the folder's processor -> the folder's model -> logits / outputs (N, K) as numpy."""
    import torch
    from transformers import AutoFeatureExtractor, AutoImageProcessor, AutoModelForSequenceClassification

    note(f"loading the model and processor of {folder}")
    model = AutoModelForSequenceClassification.from_pretrained(folder).eval()
    if task == "image-classification":
        processor = AutoImageProcessor.from_pretrained(folder)
    else:
        processor = AutoFeatureExtractor.from_pretrained(folder)
    if rate_policy is not None:
        processor.rate_policy = rate_policy
    outputs = []
    with progress(len(examples), "scoring") as update:
        for start in range(0, len(examples), BATCH):
            batch = list(take(examples, start, start + BATCH))
            if task == "image-classification":
                inputs = processor(images=[_image(ex, splits) for ex in batch], return_tensors="pt")
            elif task == "audio-classification":
                rate = splits.sampling_rate
                waves = [np.asarray(ex["input_values"], dtype=np.float32).reshape(-1) for ex in batch]
                if sampling_rate is not None and sampling_rate != rate:
                    waves, rate = [resample(w, rate, sampling_rate) for w in waves], sampling_rate
                inputs = processor(waves, sampling_rate=rate, return_tensors="pt")
            else:
                inputs = processor([np.asarray(ex["input_values"]) for ex in batch], return_tensors="pt")
            with torch.no_grad():
                outputs.append(model(**inputs).logits.float().numpy())
            update(len(batch))
    return np.concatenate(outputs)


def _image(example, splits):
    """A built-in/folder image example (L, C) in [0, 1] back to the PIL image a user would have."""
    from PIL import Image

    height, width = splits.image_size
    pixels = np.asarray(example["input_values"], dtype=np.float64).reshape(height, width, -1)
    pixels = np.round(np.clip(pixels, 0, 1) * 255).astype(np.uint8)
    return Image.fromarray(pixels[..., 0] if pixels.shape[-1] == 1 else pixels)


def _language_model(folder: Path, examples) -> dict[str, float]:
    """Mean next-byte cross-entropy over the test windows -> perplexity and bits per byte."""
    import torch
    from transformers import AutoModelForCausalLM

    note(f"loading the model of {folder}")
    model = AutoModelForCausalLM.from_pretrained(folder).eval()
    total, count = 0.0, 0
    with progress(len(examples), "scoring", unit="windows") as update:
        for start in range(0, len(examples), BATCH):
            ids = torch.as_tensor(np.stack([ex["input_ids"] for ex in take(examples, start, start + BATCH)]))
            with torch.no_grad():
                logits = model(ids).logits[:, :-1].float()
            loss = torch.nn.functional.cross_entropy(logits.reshape(-1, logits.shape[-1]), ids[:, 1:].reshape(-1),
                                                     reduction="sum")
            total, count = total + loss.item(), count + ids[:, 1:].numel()
            update(len(ids))
    metrics = TaskMetrics("causal-lm").from_loss(total / count)
    return {"bits_per_byte": metrics["bits_per_byte"], "perplexity": metrics["perplexity"]}  # the cards' order
