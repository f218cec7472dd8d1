"""Time series from the UCR archive, read from the ``.ts`` files inside the sktime 1.2.0 wheel (sktime itself is
never imported): ``plaid`` (appliance-current classification) and ``tecator`` (NIR spectra -> fat % regression)."""

from __future__ import annotations

import pathlib

import numpy as np

from ....processing.timeseries_processing_s4d import SERIES_FEATURES
from ..core import DatasetSplits, quantile_bins, stratified_split
from .common import PIP_HINTS, DatasetNotInstalledError, as_bool, as_dir, as_float, as_int, as_names, package_dir

PLAID_DESCRIPTION = (
    "PLAID appliance-current classification from the UCR archive (11 classes, 537 train / 537 test series, "
    "length 100..1344), read from the sktime 1.2.0 wheel (BSD-3-Clause); UCR data: research use with "
    "citation (Gao et al. 2014; Dau et al. 2019).")
TECATOR_DESCRIPTION = (
    "Tecator meat NIR spectra -> fat % regression (172 train / 43 test spectra, 100 wavelengths "
    "850-1050 nm), read from the sktime 1.2.0 wheel (BSD-3-Clause); StatLib data, research use with "
    "citation (Borggaard & Thodberg 1992).")

PLAID_CLASSES = ("air conditioner", "compact fluorescent lamp", "fan", "fridge", "hairdryer", "heater",
                 "incandescent light bulb", "laptop", "microwave", "vacuum", "washing machine")


UCR_CITATION = ("Dau, H. A. et al. The UCR Time Series Archive. IEEE/CAA Journal of Automatica Sinica 6(6), "
                "2019. https://www.cs.ucr.edu/~eamonn/time_series_data_2018/")


PLAID_CITATION = ("Gao, J., Giri, S., Kara, E. C., Bergés, M. PLAID: a public dataset of high-resolution "
                  "electrical appliance measurements for load identification research. BuildSys 2014. "
                  "Edited for the UCR archive by Schäfer, P. and Leser, U. (2017). " + UCR_CITATION)


TECATOR_CITATION = ("Borggaard, C. and Thodberg, H. H. Optimal Minimal Neural Interpretation of Spectra. "
                    "Analytical Chemistry 64 (1992), 545-551. Data: StatLib / OpenML 505.")


def parse_ts(text: str, source: str = "<string>") -> tuple[list[np.ndarray], list[str], dict]:
    """Parse the text of a `.ts` file (sktime/UCR/UEA format) without sktime.

    Returns (series, labels, header): series is a list of (L_i, C) float32 arrays (C dimensions separated by ':'
    in the file; '?' becomes NaN), labels the raw label strings (class names, or regression targets for
    `@targetLabel true`), header the `@` tags in lower case (`classlabel` -> list of class names or None).
    Timestamped data (`@timeStamps true`) is not supported and raises ValueError.
    """
    header: dict = {}
    series, labels = [], []
    in_data = False
    for line_no, line in enumerate(text.splitlines(), 1):
        line = line.strip().lstrip("\ufeff")
        if not line or line.startswith("#"):
            continue
        if not in_data:
            if not line.startswith("@"):
                raise ValueError(f"{source}:{line_no}: expected an @tag or a comment before @data, got {line[:40]!r}")
            tag, _, rest = line[1:].partition(" ")
            tag, words = tag.lower(), rest.split()
            if tag == "data":
                in_data = True
                if header.get("timestamps"):
                    raise ValueError(f"{source}: @timeStamps true is not supported")
            elif tag == "classlabel":
                header[tag] = words[1:] if words and words[0].lower() == "true" else None
            elif words and words[0].lower() in ("true", "false"):
                header[tag] = words[0].lower() == "true"
            else:
                header[tag] = rest.strip()
            continue
        has_label = header.get("classlabel") is not None or header.get("targetlabel", False)
        fields = line.split(":")
        if has_label:
            *fields, label = fields
            labels.append(label.strip())
            if header.get("classlabel") is not None and labels[-1] not in header["classlabel"]:
                raise ValueError(f"{source}:{line_no}: class {labels[-1]!r} is not declared in @classLabel "
                                 f"{header['classlabel']}")
        try:
            dims = [np.array([float(v) if v.strip() != "?" else np.nan for v in f.split(",")], np.float32)
                    for f in fields]
        except ValueError as error:
            raise ValueError(f"{source}:{line_no}: {error}") from None
        if len({len(d) for d in dims}) != 1:
            raise ValueError(f"{source}:{line_no}: dimensions have unequal lengths {[len(d) for d in dims]}")
        if series and dims and len(dims) != series[0].shape[1]:
            raise ValueError(f"{source}:{line_no}: {len(dims)} dimensions, the first case has {series[0].shape[1]}")
        series.append(np.stack(dims, axis=1))
    if not in_data:
        raise ValueError(f"{source}: no @data section")
    return series, labels, header


def _ts_files(problem: str, data_dir) -> tuple[pathlib.Path, pathlib.Path]:
    if data_dir is None:
        data_dir = package_dir("sktime", problem) / "datasets" / "data" / problem
    data_dir = as_dir("data_dir", data_dir)
    files = (data_dir / f"{problem}_TRAIN.ts", data_dir / f"{problem}_TEST.ts")
    for file in files:
        if not file.is_file():
            raise DatasetNotInstalledError(
                f"{file} not found: the {problem} files ship with sktime 1.2.0 (later versions may drop them). "
                f"Install it with: {PIP_HINTS['sktime']}")
    return files


def _balanced(examples: list, seed: int) -> list:
    """Repeat the examples of every class until each has as many as the largest (whole copies, then a seeded
    random remainder), in a seeded random order."""
    rng = np.random.default_rng(seed)
    labels = np.array([e["labels"] for e in examples])
    largest = max(np.bincount(labels))
    chosen = []
    for c in np.unique(labels):
        members = np.flatnonzero(labels == c)
        extra = largest - len(members)
        chosen += [members] * (1 + extra // len(members)) + [rng.permutation(members)[:extra % len(members)]]
    order = np.concatenate(chosen)
    return [examples[i] for i in order[rng.permutation(len(order))]]


def _positive(name: str, value, expected: str, high: float) -> float:
    """A number in (0, high] (high excluded when infinite), else ValueError naming the option."""
    try:
        number = float(value)
    except (TypeError, ValueError):
        number = None
    if number is None or not 0 < number <= high or number == float("inf"):
        raise ValueError(f"option {name}={value!r}: expected {expected}")
    return number


def _cropped(examples: list, crops: int, min_fraction: float, seed: int) -> list:
    """The examples, then `crops` seeded random windows of each: a contiguous stretch of a random length between
    min_fraction of the series (at least one step) and all of it, at a random position."""
    rng = np.random.default_rng(seed)
    out = list(examples)
    for _ in range(crops):
        for e in examples:
            length = len(e["input_values"])
            size = int(rng.integers(max(1, int(np.ceil(min_fraction * length))), length + 1))
            start = int(rng.integers(0, length - size + 1))
            out.append({**e, "input_values": e["input_values"][start:start + size]})
    return out


def load_plaid(seed: int = 0, *, data_dir=None, downsample=1, max_length=None, eval_fraction=0.1, features="raw",
               log_floor=1e-5, balance=False, crops=0, crop_fraction=0.5) -> DatasetSplits:
    """UCR PLAID: appliance current, 11 classes, 537 train / 537 test series of 100..1344 steps, (L, 1).

    The splits hold the current as read; ``downsample``, ``features`` and ``log_floor`` become the splits'
    ``series_transform``, applied per series by training and by the saved processor (``transform_series`` of
    ``S4DTimeSeriesProcessor``), so the released model takes the current as recorded.

    downsample: average non-overlapping windows of this many steps (e.g. 4 -> lengths 25..336). The files hold
    about 5 samples per mains cycle, so downsampling blurs the shape of each cycle.
    max_length: keep the first max_length * downsample steps of longer series (max_length steps after
    downsampling); the windows start with the switch-on transient, which carries most of the class information.
    The saved processor does not cut: a model trained with it still sees whole series at inference.
    eval_fraction: share of the official training split held out per class as the eval split.
    features: comma-separated input channels, computed per series after downsampling: any of "raw" (default),
    "log", "standardized", "log_rms" (see ``transform_series``); input_dim is their number. The current's RMS
    spans seven decades across series (6e-5 to 200 in the file's units): "raw" alone, under the processor's
    global normalisation, leaves the quiet series next to zero.
    log_floor: the scale of "log" and "log_rms" (> 0, in the file's units; default 1e-5, below the quietest
    series' waveform).
    balance: repeat the training examples of the smaller classes until every class has as many as the largest
    (eval and test are untouched).
    crops: augmentation, add this many random windows of every training series (a random length between
    crop_fraction of the series and all of it, at a random position; the mains waveform is periodic, so a window
    is still that appliance); computed before balance, so balanced classes count them. Default 0.
    crop_fraction: the shortest window, as a fraction of its series, in (0, 1] (default 0.5).
    """
    downsample = as_int("downsample", downsample, 1)
    max_length = as_int("max_length", max_length, 1, allow_none=True)
    eval_fraction = as_float("eval_fraction", eval_fraction, 0.0, 0.5)
    features = as_names("features", features)
    unknown = [f for f in features if f not in SERIES_FEATURES]
    if not features or unknown or len(set(features)) != len(features):
        raise ValueError(f"option features={','.join(features)!r}: expected distinct names among {SERIES_FEATURES}")
    log_floor = _positive("log_floor", log_floor, "a number > 0", high=float("inf"))
    balance = as_bool("balance", balance)
    crops = as_int("crops", crops, 0)
    crop_fraction = _positive("crop_fraction", crop_fraction, "a number in (0, 1]", high=1.0)
    cut = None if max_length is None else max_length * downsample
    raw = {}  # split -> [{"input_values": (L, 1) current, "labels": class}]
    for split, path in zip(("train", "test"), _ts_files("PLAID", data_dir)):
        series, labels, _ = parse_ts(path.read_text(encoding="utf-8"), str(path))
        raw[split] = [{"input_values": x[:cut], "labels": int(y)} for x, y in zip(series, labels)]
    kept, held = stratified_split([e["labels"] for e in raw["train"]], eval_fraction, seed)
    train = _cropped([raw["train"][i] for i in kept], crops, crop_fraction, seed)
    transform = {"downsample": downsample, "log_floor": log_floor}
    if list(features) != ["raw"]:
        transform["series_features"] = list(features)
    return DatasetSplits(
        train=_balanced(train, seed) if balance else train, eval=[raw["train"][i] for i in held], test=raw["test"],
        id2label=dict(enumerate(PLAID_CLASSES)), input_dim=len(features), description=PLAID_DESCRIPTION,
        license="UCR archive: research use with citation (no formal licence); sktime package BSD-3-Clause",
        citation=PLAID_CITATION, series_transform=transform)


def load_tecator(seed: int = 0, *, data_dir=None, eval_fraction=0.1) -> DatasetSplits:
    """Tecator: 100-channel NIR absorbance spectra of meat (850-1050 nm) -> fat %, 172 train / 43 test, (100, 1).

    The "time" axis is wavelength. labels are float fat percentages. eval_fraction of the official training
    split, stratified by quantile bins of the target, becomes the eval split.
    """
    eval_fraction = as_float("eval_fraction", eval_fraction, 0.0, 0.5)
    splits = {}
    for split, path in zip(("train", "test"), _ts_files("Tecator", data_dir)):
        series, targets, _ = parse_ts(path.read_text(encoding="utf-8"), str(path))
        splits[split] = [{"input_values": x, "labels": float(y)} for x, y in zip(series, targets)]
    y = np.array([e["labels"] for e in splits["train"]])
    kept, held = stratified_split(quantile_bins(y), eval_fraction, seed)
    return DatasetSplits(
        train=[splits["train"][i] for i in kept], eval=[splits["train"][i] for i in held], test=splits["test"],
        input_dim=1, description=TECATOR_DESCRIPTION,
        license="StatLib Tecator data: research use with citation (check the original terms before redistributing "
                "a model commercially); sktime package BSD-3-Clause",
        citation=TECATOR_CITATION)
