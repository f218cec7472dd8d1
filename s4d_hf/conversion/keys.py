"""The key tables of the three state-spaces/s4 checkpoint layouts of an S4D model, and how to tell them apart.

* ``example``   - ``example.py``'s ``S4Model`` built on the minimal ``models/s4/s4d.py`` layer:
                  ``encoder.*``, ``s4_layers.{i}.{D, kernel.{C, log_dt, log_A_real, A_imag}, output_linear.0.*}``,
                  ``norms.{i}.*``, ``decoder.*``. Post-norm by default; no final norm.
* ``s4block``   - the same backbone built on the standalone ``models/s4/s4.py`` ``S4Block(mode='diag')``:
                  ``s4_layers.{i}.layer.{D, kernel.{inv_dt, A_real, A_imag, B, C}}``,
                  ``s4_layers.{i}.output_linear.0.*``.
* ``lightning`` - the training framework's ``SequenceLightningModule`` (a PL ``.ckpt``, or its ``.pt`` state dict):
                  ``encoder.0.*``, ``model.layers.{i}.layer.layer.{D, kernel.*}`` (S4Block -> FFTConv -> kernel) or
                  ``model.layers.{i}.layer.{D, kernel.*}`` (the minimal layer),
                  ``model.layers.{i}.layer.output_linear.0.*``,
                  ``model.layers.{i}.norm.norm.*``, ``model.norm.norm.*`` (pre-norm only),
                  ``decoder.0.output_transform.*``.
"""

import re
from dataclasses import dataclass

import torch

from .loading import ConversionError

FORMATS = ("example", "s4block", "lightning")

# The tensors of one S4D layer, relative to its prefix, by layer kind.
LAYER_TENSORS = {
    "minimal": {"D", "kernel.C", "kernel.log_dt", "kernel.log_A_real", "kernel.A_imag", "output_linear.0.weight",
                "output_linear.0.bias"},
    "s4block": {"layer.D", "layer.kernel.inv_dt", "layer.kernel.A_real", "layer.kernel.A_imag", "layer.kernel.B",
                "layer.kernel.C", "layer.kernel.dC", "output_linear.0.weight", "output_linear.0.bias"},
}


@dataclass(frozen=True)
class Layout:
    """Where an S4D model's tensors live in a source state dict ({i} is the layer index)."""

    format: str
    layer_kind: str  # "minimal" (models/s4/s4d.py S4D) or "s4block" (S4Block(mode='diag'))
    encoder: str
    decoder: str
    layer: str
    norm: str
    final_norm: str | None


def make_layout(fmt: str, layer_kind: str) -> Layout:
    if fmt in ("example", "s4block"):
        return Layout(fmt, layer_kind, "encoder.", "decoder.", "s4_layers.{i}.", "norms.{i}.", None)
    return Layout(fmt, layer_kind, "encoder.0.", "decoder.0.output_transform.", "model.layers.{i}.layer.",
                  "model.layers.{i}.norm.norm.", "model.norm.norm.")


def expect(cond: bool, message: str) -> None:
    """Raise ConversionError(message) unless ``cond``."""
    if not cond:
        raise ConversionError(message)


class SourceTensors:
    """Source tensors with errors that say which key is missing or has an unexpected shape."""

    def __init__(self, state_dict: dict[str, torch.Tensor]):
        self.sd = state_dict

    def get(self, key: str, ndim: int | None = None) -> torch.Tensor:
        if key not in self.sd:
            raise ConversionError(f"missing tensor `{key}`: the checkpoint does not have the expected layout")
        t = self.sd[key]
        if ndim is not None and t.dim() != ndim:
            raise ConversionError(f"`{key}` has shape {tuple(t.shape)}, expected {ndim} dimensions")
        return t

    def has(self, key: str) -> bool:
        return key in self.sd

    def under(self, prefix: str) -> dict[str, tuple]:
        return {k[len(prefix):]: tuple(v.shape) for k, v in self.sd.items() if k.startswith(prefix)}


def refuse_non_s4d(keys: list[str]) -> None:
    """DPLR (S4) checkpoints have the same layout plus ``kernel.P`` and ``kernel.l_kernel``: not a diagonal kernel."""
    dplr = [k for k in keys if re.search(r"(^|\.)kernel\.(P|l_kernel|log_w_real|inv_w_real|w_imag)$", k)]
    if dplr:
        raise ConversionError(
            f"this is an S4 (DPLR) checkpoint, not S4D: it has `{dplr[0]}`; a DPLR kernel is not a diagonal one "
            "and cannot be converted to S4D"
        )
    legacy = [k for k in keys if ".kernel.kernel." in k]
    if legacy:
        raise ConversionError(
            f"a v3 checkpoint (`{legacy[0]}`): run the reference's checkpoints/convert_v3_to_v4.py first"
        )


def detect_format(state_dict: dict[str, torch.Tensor]) -> str:
    """example / s4block / lightning, from the key names."""
    keys = list(state_dict)
    refuse_non_s4d(keys)
    if any(k.startswith("model.layers.") for k in keys):
        return "lightning"
    if any(re.match(r"s4_layers\.\d+\.layer\.kernel\.", k) for k in keys):
        return "s4block"
    if any(re.match(r"s4_layers\.\d+\.kernel\.log_dt$", k) for k in keys):
        return "example"
    if any(re.match(r"layer\.kernel\.", k) for k in keys):
        raise ConversionError(
            "this is the state dict of a single S4Block (`layer.kernel.*`), not of a model: there is no encoder, "
            "decoder or backbone to convert; embed it in an example.py-style model (s4_layers.0.*)"
        )
    shown = ", ".join(keys[:4])
    raise ConversionError(
        f"cannot tell the checkpoint format from its keys ({shown}, ...); pass --format {{{','.join(FORMATS)}}}"
    )


def layer_kind(state_dict: dict[str, torch.Tensor], fmt: str) -> str:
    """"minimal" (the s4d.py layer) or "s4block" (S4Block(mode='diag')) for a checkpoint of format ``fmt``."""
    if fmt == "example":
        return "minimal"
    if fmt == "s4block":
        return "s4block"
    keys = list(state_dict)
    if any(re.match(r"model\.layers\.\d+\.layer\.layer\.kernel\.", k) for k in keys):
        return "s4block"
    if any(re.match(r"model\.layers\.\d+\.layer\.kernel\.log_dt$", k) for k in keys):
        return "minimal"
    raise ConversionError(
        "no S4D layer found under model.layers.{i}.layer (expected layer.layer.kernel.* of S4Block(mode='diag') or "
        "kernel.log_dt of the minimal s4d.py layer)"
    )


def count_layers(keys: list[str], layout: Layout) -> int:
    """The number of S4D layers under ``layout.layer``; their indices must be 0..n-1."""
    pattern = re.compile(re.escape(layout.layer).replace(r"\{i\}", r"(\d+)"))
    found = sorted({int(m.group(1)) for k in keys if (m := pattern.match(k))})
    expect(bool(found), f"no S4D layers under `{layout.layer.format(i='{i}')}`")
    expect(found == list(range(len(found))), f"layer indices are not 0..n-1: {found}")
    return len(found)
