"""Argument types the ``s4d-hf`` commands share: counts and numbers checked at parse time, and ``KEY=VALUE``.

Each type raises :class:`argparse.ArgumentTypeError`, so a bad value is refused before anything runs, in one line
that names the flag and what it expects (``s4d-hf train: error: argument --batch-size: expected an integer >= 1;
got '0'``, exit code 2).

    parser.add_argument("--dataset-option", action=KeyValues, type=key_value, metavar="KEY=VALUE")

gives ``args.dataset_option == {"image_size": 14, "augment": False, "eval_plays": "hamlet"}`` (None when not given):
values that read as an int, a float or true/false become one; anything else stays a string.
"""

from __future__ import annotations

import argparse
import math

from s4d_hf.training.data.hf_datasets import HF_DATASET_ARGS, INT_ARGS as INT_DATASET_ARGS


def integer(minimum: int):
    """An argparse ``type``: an int >= ``minimum`` (``integer(1)`` for counts, ``integer(0)`` for seeds)."""

    def parse(text: str) -> int:
        try:
            value = int(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"expected an integer >= {minimum}; got {text!r}") from None
        if value < minimum:
            raise argparse.ArgumentTypeError(f"expected an integer >= {minimum}; got {text!r}")
        return value

    parse.__name__ = f"integer >= {minimum}"
    return parse


def number(minimum: float = -math.inf, maximum: float = math.inf, *, above: bool = False, below: bool = False):
    """An argparse ``type``: a finite float in the range (``above``/``below``: the bound itself is excluded)."""
    low = f"> {minimum:g}" if above else f">= {minimum:g}"
    high = f"< {maximum:g}" if below else f"<= {maximum:g}"
    wanted = " and ".join(part for part, bound in ((low, minimum), (high, maximum)) if math.isfinite(bound))
    wanted = f"a finite number {wanted}".rstrip()

    def parse(text: str) -> float:
        try:
            value = float(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"expected {wanted}; got {text!r}") from None
        if not math.isfinite(value) or value < minimum or value > maximum or (above and value == minimum) \
                or (below and value == maximum):
            raise argparse.ArgumentTypeError(f"expected {wanted}; got {text!r}")
        return value

    parse.__name__ = wanted
    return parse


COUNT = integer(1)  # steps, sizes, batch sizes, samples
NON_NEGATIVE = integer(0)  # seeds, patience
POSITIVE = number(0, above=True)  # learning rates, tolerances
NON_NEGATIVE_NUMBER = number(0)  # weight decay, clipping, warmup


def key_value(text: str) -> tuple[str, object]:
    """``"KEY=VALUE"`` -> ``(KEY, VALUE)`` with VALUE as int, float, bool or str; an argparse ``type``."""
    if "=" not in text or not text.split("=", 1)[0]:
        raise argparse.ArgumentTypeError(f"expected KEY=VALUE; got {text!r}")
    key, value = text.split("=", 1)
    for cast in (int, float):
        try:
            return key, cast(value)
        except ValueError:
            pass
    return key, {"true": True, "false": False}.get(value.lower(), value)


class KeyValues(argparse.Action):
    """Collects repeated ``KEY=VALUE`` arguments (parsed by :func:`key_value`) into one dict."""

    def __call__(self, parser, namespace, values, option_string=None):
        options = dict(getattr(namespace, self.dest) or {})
        options[values[0]] = values[1]
        setattr(namespace, self.dest, options)


def add_dataset_arguments(parser: argparse.ArgumentParser) -> None:
    """The 🤗 Datasets options of ``--dataset``, in the transformers example scripts' names
    (:data:`~s4d_hf.training.data.hf_datasets.HF_DATASET_ARGS`: ``--label-column-name``, ``--test-split-name``, ...):
    ``train`` records them; ``evaluate`` and ``release`` take them for a folder trained outside s4d-hf."""
    data = parser.add_argument_group(
        "🤗 datasets (--dataset: a save_to_disk folder, .parquet/.arrow/.csv/.json/.jsonl files or a glob, "
        "audiofolder/imagefolder/... with --data-dir, or a Hub id)")
    for name, help_text in HF_DATASET_ARGS.items():
        flag = "--" + name.replace("_", "-")
        if name in INT_DATASET_ARGS:
            data.add_argument(flag, type=COUNT, metavar="N" if name.startswith("max_") else "HZ", help=help_text)
        else:
            data.add_argument(flag, metavar="PATH" if name.endswith("_dir") else "NAME", help=help_text)
