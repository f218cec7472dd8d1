"""The model card (README.md) of a converted folder: where the weights came from, every option and its source, and
the verification that was run. Every number in it is measured by the conversion that writes it."""

import torch
import transformers

from .formats import Plan
from .loading import Checkpoint
from .verify import Check

REFERENCE_REPO = "state-spaces/s4"
# The reference commit whose outputs the converter was tested against (the fixtures under tests/fixtures).
FIXTURE_COMMIT = "e757cef57d89e448c413de7325ed5601aceaac13"

FORMAT_DESCRIPTIONS = {
    "example": "example.py `S4Model` with the minimal `models/s4/s4d.py` S4D layer",
    "s4block": "example.py-style backbone with the standalone `models/s4/s4.py` `S4Block(mode='diag')`",
    "lightning": "the training framework (`train.py`, `SequenceLightningModule`/`SequenceModel`)",
}
CONTAINERS = {
    "lightning": "PyTorch Lightning checkpoint",
    "example": "example.py's `{'model', 'acc', 'epoch'}` dict",
    "state_dict": "bare state dict",
}


def _cell(value) -> str:
    return str(value).replace("|", "\\|").replace("\n", " ")


def model_card(checkpoint: Checkpoint, plan: Plan, checks: list[Check], config_origin: str | None,
               forced: bool) -> str:
    """README.md text for the converted folder."""
    from .. import __version__

    opt = plan.options
    layout = plan.layout
    passed = all(c.passed for c in checks)
    container = CONTAINERS[checkpoint.container]
    if checkpoint.metadata:
        container += " (" + ", ".join(f"{k} {v}" for k, v in checkpoint.metadata.items()) + ")"
    layer = "minimal s4d.py layer" if layout.layer_kind == "minimal" else "S4Block(mode='diag')"
    inputs = (f"`input_ids` (batch, length), vocabulary {opt['vocab_size'].value}" if "vocab_size" in opt
              else f"`input_values` (batch, length, {opt['input_dim'].value})")
    lines = [
        "---",
        "library_name: transformers",
        "tags:",
        "- s4d",
        "- state-space-model",
        "- converted-from-state-spaces-s4",
        "---",
        "",
        f"# S4D converted from `{checkpoint.path.name}`",
        "",
        "An S4D model (Gu, Gupta, Goel, Ré, *On the Parameterization and Initialization of Diagonal State Space "
        "Models*, 2022, arXiv:2206.11893) converted with `s4d-hf convert` from a checkpoint of the reference code "
        f"[{REFERENCE_REPO}](https://github.com/{REFERENCE_REPO}). It computes the same function as the source model "
        "(see Verification).",
        "",
        f"{opt['n_layers'].value} layers, d_model {opt['d_model'].value}, d_state {opt['d_state'].value}, "
        f"{opt['num_labels'].value} outputs; input: {inputs}.",
        "",
        "## Provenance",
        "",
        "| | |",
        "|---|---|",
        f"| source file | `{_cell(checkpoint.path.name)}` |",
        f"| sha256 | `{checkpoint.sha256}` |",
        f"| container | {_cell(container)} |",
        f"| format | `{layout.format}` ({plan.format_source}): {FORMAT_DESCRIPTIONS[layout.format]}; layer: {layer} |",
        f"| training config | {_cell(config_origin or 'none (options from the weights, flags and defaults)')} |",
        f"| reference commit | not recorded in the checkpoint; the converter is tested against outputs of "
        f"{REFERENCE_REPO} @ `{FIXTURE_COMMIT[:12]}` |",
        f"| converted with | s4d-hf {__version__}, transformers {transformers.__version__}, "
        f"torch {torch.__version__} |",
        "",
        "## Options",
        "",
        "Where each value comes from: **weights** (tensor shapes), **config** (the training run's config), **flag** "
        "(given to `s4d-hf convert`), **default** (the reference's default for this format), **format** "
        "(hard-wired by the source code).",
        "",
        "| option | value | source | detail |",
        "|---|---|---|---|",
    ]
    for name, o in opt.items():
        lines.append(f"| `{name}` | `{_cell(repr(o.value))}` | {o.source} | {_cell(o.detail)} |")
    if plan.dropped:
        lines += ["", "Source tensors not converted:", ""]
        lines += [f"- `{k}`: {why}" for k, why in plan.dropped.items()]
    if plan.notes:
        lines += ["", "Notes:", ""] + [f"- {n}" for n in plan.notes]
    lines += [
        "",
        "## Verification",
        "",
        ("**Passed.**" if passed else "**FAILED** — written anyway because `--force` was given." if forced
         else "**FAILED.**")
        + " Checks run before writing: each layer's SSM kernel computed independently from the source tensors "
        "(float64) vs the converted model's kernel; an independent float64 re-implementation of the source "
        "model vs the converted model on a random input; the converted weights exported back to the source key "
        "layout vs the source (must be identical); and the saved folder reloaded vs the in-memory model. "
        "Tolerances are relative to max(1, max |reference|).",
        "",
        "| check | max abs diff | tolerance | result |",
        "|---|---|---|---|",
    ]
    for c in checks:
        lines.append(f"| {_cell(c.name)} | {c.max_abs_diff:.3g} | {c.tolerance:.3g} | "
                     f"{'ok' if c.passed else 'FAILED'}{' (' + _cell(c.detail) + ')' if c.detail else ''} |")
    key = "input_ids" if "vocab_size" in opt else "input_values"
    lines += [
        "",
        "## Usage",
        "",
        "```python",
        "from transformers import AutoModelForSequenceClassification",
        "",
        "# with s4d-hf installed (`import s4d_hf`), or without it: add trust_remote_code=True",
        "model = AutoModelForSequenceClassification.from_pretrained(\"path/to/this/folder\", trust_remote_code=True)",
        f"logits = model({key}=x).logits",
        "```",
        "",
        "Input preprocessing (e.g. normalisation constants) is not part of the checkpoint: apply the one used in "
        "training.",
        "",
    ]
    return "\n".join(lines)
