"""Argument types shared by the ``s4d-hf`` commands: ``--dataset-option KEY=VALUE`` (``train``, ``evaluate``).

    parser.add_argument("--dataset-option", action=KeyValues, type=key_value, metavar="KEY=VALUE")

gives ``args.dataset_option == {"image_size": 14, "augment": False, "eval_plays": "hamlet"}`` (None when not given):
values that read as an int, a float or true/false become one; anything else stays a string.
"""

from __future__ import annotations

import argparse


def key_value(text: str) -> tuple[str, object]:
    """``"KEY=VALUE"`` -> ``(KEY, VALUE)`` with VALUE as int, float, bool or str; an argparse ``type``."""
    if "=" not in text:
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
