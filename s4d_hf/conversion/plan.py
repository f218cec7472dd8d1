"""One conversion decided and applied: state-spaces/s4 S4D tensors -> :class:`Plan` -> S4DForSequenceClassification.

:func:`plan_conversion` finds the format (:mod:`.keys`), resolves every option with its provenance (:mod:`.options`)
and lists the tensor rules (:mod:`.rules`); :func:`build_model` applies the rules and :func:`export_state_dict`
inverts them.
"""

from dataclasses import dataclass, field

import torch

from ..modeling import S4DConfig, S4DForSequenceClassification
from .keys import (
    FORMATS,
    Layout,
    SourceTensors,
    count_layers,
    detect_format,
    expect,
    layer_kind,
    make_layout,
    refuse_non_s4d,
)
from .loading import ConversionError, Hparams
from .options import FLAG_NAMES, Option, resolve_options
from .rules import Rule, make_rules


@dataclass
class Plan:
    """Everything decided about one conversion: layout, S4DConfig with provenance, and the tensor rules."""

    layout: Layout
    format_source: str  # "auto-detected" or "--format"
    n_layers: int
    options: dict[str, Option]
    rules: list[Rule]
    source_keys: list[str]  # the converted source keys, in checkpoint order
    source_dtypes: dict[str, torch.dtype]
    dropped: dict[str, str] = field(default_factory=dict)  # source key -> why it is not converted
    notes: list[str] = field(default_factory=list)  # facts for the model card (not options)

    @property
    def values(self) -> dict:
        """{option name: value}, without the provenance."""
        return {k: o.value for k, o in self.options.items()}

    @property
    def config(self) -> S4DConfig:
        kwargs = self.values
        labels = kwargs.pop("labels", None)
        num_labels = kwargs.pop("num_labels")
        if labels is not None:
            kwargs["id2label"] = dict(enumerate(labels))
            kwargs["label2id"] = {name: i for i, name in enumerate(labels)}
        else:
            kwargs["num_labels"] = num_labels
        try:
            return S4DConfig(**kwargs)
        except (ValueError, TypeError) as e:
            raise ConversionError(f"the inferred options do not make a valid S4DConfig: {e}") from e



def plan_conversion(state_dict: dict[str, torch.Tensor], format: str = "auto", hparams: Hparams | dict | None = None,
                    flags: dict | None = None) -> Plan:
    """Decide how ``state_dict`` (a state-spaces/s4 S4D model) becomes an S4DForSequenceClassification.

    Args:
        state_dict: source tensors (example.py / S4Block / framework key layout).
        format: "auto" (from the key names) or one of :data:`FORMATS`.
        hparams: the training framework's config (lightning format only): an :class:`Hparams`, or a dict /
            omegaconf DictConfig such as a .ckpt's ``hyper_parameters``.
        flags: values for the options that are not stored in the weights (:data:`FLAG_NAMES`; None = not given).

    Raises :class:`ConversionError` naming the flag to pass for anything missing or ambiguous, and for any
    checkpoint piece that S4D-HF cannot reproduce exactly.
    """
    if hparams is not None and not isinstance(hparams, Hparams):
        hparams = Hparams(hparams, "hparams")
    flags = {k: v for k, v in (flags or {}).items() if v is not None}
    unknown_flags = set(flags) - set(FLAG_NAMES)
    if unknown_flags:
        raise TypeError(f"unknown conversion flags {sorted(unknown_flags)}; expected some of {FLAG_NAMES}")
    keys = list(state_dict)
    refuse_non_s4d(keys)
    if format == "auto":
        fmt, format_source = detect_format(state_dict), "auto-detected"
    else:
        if format not in FORMATS:
            raise ConversionError(f"--format must be one of auto, {', '.join(FORMATS)}; got {format!r}")
        try:
            detected = detect_format(state_dict)
        except ConversionError:
            detected = None
        if detected not in (None, format):
            raise ConversionError(f"--format {format} does not match the checkpoint, whose keys are the {detected} "
                                  "format; leave --format out to auto-detect")
        fmt, format_source = format, "--format"
    if fmt != "lightning" and hparams is not None:
        raise ConversionError(f"--config applies to the lightning format; this checkpoint is the {fmt} format")
    layout = make_layout(fmt, layer_kind(state_dict, fmt))
    t = SourceTensors(state_dict)
    n_layers = count_layers(keys, layout)
    options, notes = resolve_options(t, layout, n_layers, hparams, flags)
    rules = make_rules(layout, options, t, n_layers)

    used = {r.source for r in rules if r.source is not None}
    dropped = {}
    for i in range(n_layers):
        dC = layout.layer.format(i=i) + "layer.kernel.dC"
        if dC in state_dict:  # s4.py's setup_step() aliases C as a parameter dC (is_real): a copy, not new weights
            C = state_dict[layout.layer.format(i=i) + "layer.kernel.C"]
            expect(torch.equal(state_dict[dC], C),
                   f"`{dC}` differs from kernel.C; expected the setup_step() alias of C")
            dropped[dC] = "alias of kernel.C written by setup_step(); identical, dropped"
    missing = [k for k in used if k not in state_dict]
    expect(not missing, f"missing tensors for the {fmt} format: {', '.join(sorted(missing)[:8])}")
    unknown = [k for k in keys if k not in used and k not in dropped]
    if unknown:
        shown = ", ".join(unknown[:10]) + (f" (+{len(unknown) - 10} more)" if len(unknown) > 10 else "")
        raise ConversionError(f"{len(unknown)} tensors have no place in an S4D model of the {fmt} format: {shown}")
    return Plan(layout, format_source, n_layers, options, rules, [k for k in keys if k in used],
                {k: state_dict[k].dtype for k in used}, dropped, notes)


def to_s4d_state_dict(state_dict: dict[str, torch.Tensor], plan: Plan) -> dict[str, torch.Tensor]:
    """The S4DForSequenceClassification state dict (fresh tensors; the source is not modified)."""
    out = {}
    for rule in plan.rules:
        value = rule.forward(state_dict[rule.source] if rule.source is not None else None)
        out[rule.target] = value.clone().contiguous()
    return out


def build_model(state_dict: dict[str, torch.Tensor], plan: Plan) -> S4DForSequenceClassification:
    """An S4DForSequenceClassification holding the converted weights (strict load: every tensor accounted for)."""
    model = S4DForSequenceClassification(plan.config)
    result = model.load_state_dict(to_s4d_state_dict(state_dict, plan), strict=False)
    if result.missing_keys or result.unexpected_keys:  # a bug in the rules, never the user's fault
        raise RuntimeError(f"conversion rules do not match S4DForSequenceClassification: missing "
                           f"{result.missing_keys}, unexpected {result.unexpected_keys}")
    return model.eval()


def export_state_dict(s4d_state_dict: dict[str, torch.Tensor], plan: Plan) -> dict[str, torch.Tensor]:
    """The inverse mapping: S4D-HF tensors -> the source key layout, dtypes and key order."""
    out = {}
    for rule in plan.rules:
        value = rule.backward(s4d_state_dict[rule.target].detach())
        if rule.source is not None:
            out[rule.source] = value.to(plan.source_dtypes[rule.source]).clone().contiguous()
    return {k: out[k] for k in plan.source_keys}


def model_from_state_dict(state_dict: dict[str, torch.Tensor], format: str = "auto",
                          hparams: Hparams | dict | None = None, **flags) -> S4DForSequenceClassification:
    """One call: a state-spaces/s4 state dict -> S4DForSequenceClassification (no verification, nothing written).

    Example: ``model_from_state_dict(torch.load("ckpt.pth")["model"], "example", prenorm=True)``.
    """
    plan = plan_conversion(state_dict, format, hparams, flags)
    return build_model(state_dict, plan)
