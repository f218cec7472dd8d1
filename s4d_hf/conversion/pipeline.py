"""SRC -> verified OUT folder: load safely, plan, build, verify, write to a temp dir, rename.

Nothing is written unless every check passes (or ``force``); on any failure the temp dir is removed, so there is
never a partial OUT.
"""

import os
import pathlib
from dataclasses import dataclass
from typing import Callable

from ..hub.cards import write_model_card
from ..hub.remote_code import make_portable
from ..modeling import S4DForSequenceClassification
from ..staging import staged_folder
from .card import card_info, convert_command
from .plan import Plan, build_model, plan_conversion
from .loading import Checkpoint, ConversionError, Hparams, load_checkpoint
from .verify import Check, _max_abs, _scaled, model_logits, random_inputs, verify_conversion


@dataclass
class ConversionResult:
    out: pathlib.Path
    checkpoint: Checkpoint
    plan: Plan
    checks: list[Check]

    @property
    def passed(self) -> bool:
        return all(c.passed for c in self.checks)


def convert(
    src: str | os.PathLike,
    out: str | os.PathLike,
    *,
    format: str = "auto",
    config: str | os.PathLike | None = None,
    overwrite: bool = False,
    force: bool = False,
    trust_pickle: bool = False,
    tolerance: float = 1e-4,
    log: Callable[[str], None] = print,
    **flags,
) -> ConversionResult:
    """Convert a state-spaces/s4 S4D checkpoint into a verified ``save_pretrained`` folder with a model card.

    Args:
        src: the checkpoint (example.py ``ckpt.pth``, an S4Block model's state dict, a Lightning ``.ckpt`` or its
            ``.pt`` state dict).
        out: the folder to create.
        format: "auto" or one of "example", "s4block", "lightning".
        config: the training framework's config YAML (``.hydra/config.yaml`` or hparams.yaml) for a ``.pt``.
        overwrite: replace an existing ``out``.
        force: write even if a verification check fails (the card says so).
        trust_pickle: unpickle without restrictions (can execute code from the file).
        tolerance: verification tolerance, relative to max(1, max |reference|).
        **flags: options not stored in the weights: disc, dt_transform, real_transform, prenorm, final_act,
            decoder_mode, l_max, task, num_labels, labels.

    Raises :class:`ConversionError` (one-line reason) for every refusal.
    """
    out = pathlib.Path(out)
    if out.exists() or out.is_symlink():
        if not overwrite:
            raise ConversionError(f"OUT {str(out)!r} already exists; pass --overwrite to replace it")
        if not out.is_dir():
            raise ConversionError(f"OUT {str(out)!r} exists and is not a folder; refusing to replace it")
    if not tolerance >= 0:
        raise ConversionError(f"--tolerance must be >= 0; got {tolerance}")

    checkpoint = load_checkpoint(src, trust_pickle=trust_pickle)
    hparams = Hparams.from_yaml(config) if config is not None else checkpoint.hparams
    log(f"source   {checkpoint.path.name}  sha256 {checkpoint.sha256}")
    plan = plan_conversion(checkpoint.state_dict, format, hparams, flags)
    log(f"format   {plan.layout.format} ({plan.format_source}), {plan.n_layers} layers, "
        f"{len(plan.source_keys)} tensors" + (f", config from {hparams.origin}" if hparams is not None else ""))
    for name, option in plan.options.items():
        log(f"  {name:<15} {option.value!r:<14} {option.source:<8} {option.detail}")

    model = build_model(checkpoint.state_dict, plan)
    checks = verify_conversion(checkpoint.state_dict, plan, model, tolerance)
    for check in checks:
        log("verify   " + check.line())
    _refuse_on_failure(checks, force)

    def refuse_if_out_appeared(out: pathlib.Path) -> None:
        if out.exists() and not overwrite:
            raise ConversionError(f"OUT {str(out)!r} appeared during the conversion; nothing written")

    # written into a temporary sibling and renamed into place: on any failure nothing (no parent folder either)
    with staged_folder(out, before_replace=refuse_if_out_appeared) as tmp:
        model.save_pretrained(tmp)
        make_portable(tmp)
        checks.append(_reload_check(tmp, model, plan, tolerance))
        log("verify   " + checks[-1].line())
        _refuse_on_failure(checks, force)
        origin = hparams.origin if hparams is not None else None
        command = convert_command(src, out, format, config, tolerance, force, flags)
        write_model_card(tmp, card_info(checkpoint, plan, checks, origin, force, out.name, command))
    result = ConversionResult(out, checkpoint, plan, checks)
    log(f"wrote    {out}" + ("" if result.passed else "  (verification FAILED; --force)"))
    return result


def _refuse_on_failure(checks: list[Check], force: bool) -> None:
    failed = [c for c in checks if not c.passed]
    if failed and not force:
        worst = failed[0]
        raise ConversionError(
            f"verification failed: {worst.name}: max |diff| {worst.max_abs_diff:.3g} > tolerance "
            f"{worst.tolerance:.3g}" + (f" (+{len(failed) - 1} more)" if len(failed) > 1 else "")
            + "; nothing written (--force writes anyway)"
        )


def _reload_check(folder: pathlib.Path, model, plan: Plan, tolerance: float) -> Check:
    """The saved folder, loaded back with from_pretrained, computes what the in-memory model computes."""
    reloaded = S4DForSequenceClassification.from_pretrained(folder)
    inputs = random_inputs(plan, seed=1)
    expected = model_logits(model, plan, inputs)
    got = model_logits(reloaded, plan, inputs)
    return Check("reload from the saved folder", _max_abs(got, expected), _scaled(tolerance, expected))
