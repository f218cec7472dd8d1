"""The model card ``info`` of a converted folder (rendered by :mod:`s4d_hf.hub.cards`): where the weights came from,
every option and its source, and the verification that was run. Every number in it is measured by the conversion
that writes it."""

import shlex

import torch
import transformers

from .. import __version__
from .loading import Checkpoint
from .options import FLAG_NAMES, FLAG_SPELLING
from .plan import Plan
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
VERIFICATION = (
    "Checks run before writing: each layer's SSM kernel computed independently from the source tensors (float64) vs "
    "the converted model's kernel; an independent float64 re-implementation of the source model vs the converted "
    "model on a random input; the converted weights exported back to the source key layout vs the source (must be "
    "identical); and the saved folder reloaded vs the in-memory model. Tolerances are relative to max(1, "
    "max |reference|)."
)
LIMITATIONS = [
    "Input preprocessing (e.g. normalisation constants) is not part of the checkpoint: apply the one used in training.",
    "Verified against the source model on random inputs; no task metric was measured on a test split.",
]


def convert_command(src, out, format: str, config, tolerance: float, force: bool, flags: dict) -> str:
    """The ``s4d-hf convert`` command line that makes this conversion (paths as given)."""
    words = ["s4d-hf", "convert", str(src), str(out)]
    if format != "auto":
        words += ["--format", format]
    if config is not None:
        words += ["--config", str(config)]
    for name in FLAG_NAMES:
        value = flags.get(name)
        if value is None:
            continue
        if name == "prenorm":
            words.append("--prenorm" if value else "--no-prenorm")
        else:
            words += [FLAG_SPELLING[name], ",".join(value) if name == "labels" else str(value)]
    if tolerance != 1e-4:
        words += ["--tolerance", str(tolerance)]
    if force:
        words.append("--force")
    return shlex.join(words)


def _task(plan: Plan) -> str:
    """The card task from the converted config: token ids or continuous inputs, classification or regression."""
    if "vocab_size" in plan.options:
        return "text-classification"
    problem = plan.options.get("problem_type")
    return "time-series-regression" if problem and problem.value == "regression" else "time-series-classification"


def card_info(checkpoint: Checkpoint, plan: Plan, checks: list[Check], config_origin: str | None, forced: bool,
              model_name: str, command: str) -> dict:
    """The ``info`` dict (schema: :mod:`s4d_hf.hub.cards`) of the converted folder."""
    opt = plan.options
    layout = plan.layout
    container = CONTAINERS[checkpoint.container]
    if checkpoint.metadata:
        container += " (" + ", ".join(f"{k} {v}" for k, v in checkpoint.metadata.items()) + ")"
    layer = "minimal s4d.py layer" if layout.layer_kind == "minimal" else "S4Block(mode='diag')"
    inputs = (f"`input_ids` (batch, length), vocabulary {opt['vocab_size'].value}" if "vocab_size" in opt
              else f"`input_values` (batch, length, {opt['input_dim'].value})")
    passed = all(c.passed for c in checks)
    return {
        "model_name": model_name,
        "repo_id": f"<user>/{model_name}",
        "task": _task(plan),
        "summary": f"{opt['n_layers'].value} layers, d_model {opt['d_model'].value}, d_state {opt['d_state'].value}, "
                   f"{opt['num_labels'].value} outputs; input: {inputs}.",
        "command": command,
        "metrics": None,
        "baseline": None,
        "license": None,
        "tags": ["converted-from-state-spaces-s4"],
        "limitations": LIMITATIONS,
        "plots": [],
        "conversion": {
            "provenance": [  # (field, Markdown); the template keeps each inside its table cell
                ("source file", f"`{checkpoint.path.name}`"),
                ("sha256", f"`{checkpoint.sha256}`"),
                ("container", container),
                ("format", f"`{layout.format}` ({plan.format_source}): {FORMAT_DESCRIPTIONS[layout.format]}; "
                           f"layer: {layer}"),
                ("training config", config_origin or "none (options from the weights, flags and defaults)"),
                ("reference commit", f"not recorded in the checkpoint; the converter is tested against outputs of "
                                     f"{REFERENCE_REPO} @ `{FIXTURE_COMMIT[:12]}`"),
                ("converted with", f"s4d-hf {__version__}, transformers {transformers.__version__}, "
                                   f"torch {torch.__version__}"),
            ],
            "options": [{"name": name, "value": repr(o.value), "source": o.source, "detail": o.detail}
                        for name, o in opt.items()],
            "dropped": dict(plan.dropped),
            "notes": list(plan.notes),
        },
        "verification": {
            "status": "passed" if passed else "forced" if forced else "failed",
            "description": VERIFICATION,
            "checks": [{"name": c.name, "max_abs_diff": c.max_abs_diff, "tolerance": c.tolerance, "passed": c.passed,
                        "detail": c.detail} for c in checks],
        },
    }
