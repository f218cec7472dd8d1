"""The state-spaces/s4 checkpoint layouts of S4D models, and their exact mapping to and from S4D-HF.

Three formats (S4D_REFERENCE.md §1):

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

Everything is converted by a list of :class:`Rule` (source key -> S4D-HF key, with the tensor transform both ways),
so that the same rules export a converted model back to the source layout for the exact round-trip check.
Options that the weights do not store come from the training config, a flag or the reference's default for the
format; each one is recorded with where it came from (:class:`Option`).
"""

import re
from dataclasses import dataclass, field
from typing import Any, Callable

import torch

from ..modeling import S4DConfig, S4DForSequenceClassification
from .loading import ConversionError, Hparams


FORMATS = ("example", "s4block", "lightning")

# Flags a user may give for options that are not stored in the weights (None = not given).
FLAG_NAMES = ("disc", "dt_transform", "real_transform", "prenorm", "final_act", "decoder_mode", "l_max", "task",
              "num_labels", "labels")
TASKS = {"classification": "single_label_classification", "multilabel": "multi_label_classification",
         "regression": "regression"}
# The framework's task.loss -> transformers' problem_type.
LOSS_TO_PROBLEM = {"cross_entropy": "single_label_classification",
                   "binary_cross_entropy": "multi_label_classification", "mse": "regression"}
# Reference init names -> S4DConfig.init (init only matters for re-initialisation; the weights fix the function).
INIT_NAMES = {"legs": "legs", "diag-legs": "legs", "diag-inv": "inv", "diag-lin": "lin", "diag-real": "real",
              "diag": "diag"}
# The CLI spelling of each flag, for error messages.
FLAG_SPELLING = {"disc": "--disc", "dt_transform": "--dt-transform", "real_transform": "--real-transform",
                 "prenorm": "--prenorm/--no-prenorm", "final_act": "--final-act", "decoder_mode": "--decoder-mode",
                 "l_max": "--l-max", "task": "--task", "num_labels": "--num-labels", "labels": "--labels"}


# The order of options in logs and model cards: inputs and head, sizes, SSM, blocks.
_OPTION_ORDER = ["input_dim", "vocab_size", "num_labels", "labels", "problem_type", "pooling", "d_model", "n_layers",
                 "d_state", "channels", "n_ssm", "bidirectional", "is_real", "dt_tie", "disc", "dt_transform",
                 "real_transform", "l_max", "final_act", "init", "dt_min", "dt_max", "norm", "prenorm", "final_norm",
                 "layer_norm_eps", "dropout"]


@dataclass
class Option:
    """One S4DConfig value and where it came from: weights, config, flag, default or format (fixed by the code)."""

    value: Any
    source: str
    detail: str = ""


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


@dataclass(frozen=True)
class Rule:
    """source key -> target key (S4DForSequenceClassification), with the exact tensor transform in each direction.

    ``source`` is None for a constant of the source layer (s4d.py's B ≡ 1): ``backward`` then only checks it.
    """

    source: str | None
    target: str
    forward: Callable[[torch.Tensor | None], torch.Tensor]
    backward: Callable[[torch.Tensor], torch.Tensor | None]


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


# ----------------------------------------------------------------------------------------------------------------
# Detection
# ----------------------------------------------------------------------------------------------------------------


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


def _layer_kind(state_dict: dict[str, torch.Tensor], fmt: str) -> str:
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


# ----------------------------------------------------------------------------------------------------------------
# Shapes -> structure
# ----------------------------------------------------------------------------------------------------------------


class _Tensors:
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


def _expect(cond: bool, message: str) -> None:
    if not cond:
        raise ConversionError(message)


_LAYER_TENSORS = {
    "minimal": {"D", "kernel.C", "kernel.log_dt", "kernel.log_A_real", "kernel.A_imag", "output_linear.0.weight",
                "output_linear.0.bias"},
    "s4block": {"layer.D", "layer.kernel.inv_dt", "layer.kernel.A_real", "layer.kernel.A_imag", "layer.kernel.B",
                "layer.kernel.C", "layer.kernel.dC", "output_linear.0.weight", "output_linear.0.bias"},
}


def _layer_indices(keys: list[str], layout: Layout) -> int:
    pattern = re.compile(re.escape(layout.layer).replace(r"\{i\}", r"(\d+)"))
    found = sorted({int(m.group(1)) for k in keys if (m := pattern.match(k))})
    _expect(bool(found), f"no S4D layers under `{layout.layer.format(i='{i}')}`")
    _expect(found == list(range(len(found))), f"layer indices are not 0..n-1: {found}")
    return len(found)


def _structure(t: _Tensors, layout: Layout, n_layers: int) -> dict[str, Option]:
    """Every structural option, read from tensor shapes (layer 0, then every layer checked against it)."""
    p0 = layout.layer.format(i=0)
    W = "weights"
    s: dict[str, Option] = {}
    if layout.layer_kind == "minimal":
        D = t.get(p0 + "D", 1)
        H = D.shape[0]
        C = t.get(p0 + "kernel.C", 3)
        _expect(C.shape[0] == H and C.shape[2] == 2,
                f"`{p0}kernel.C` has shape {tuple(C.shape)}, expected ({H}, N/2, 2)")
        N2 = C.shape[1]
        _expect(tuple(t.get(p0 + "kernel.log_dt").shape) == (H,), f"`{p0}kernel.log_dt` must have shape ({H},)")
        for name in ("log_A_real", "A_imag"):
            _expect(tuple(t.get(p0 + f"kernel.{name}").shape) == (H, N2), f"`{p0}kernel.{name}` must be ({H}, {N2})")
        _expect(tuple(t.get(p0 + "output_linear.0.weight").shape) == (2 * H, H, 1),
                f"`{p0}output_linear.0.weight` must be the Conv1d weight ({2 * H}, {H}, 1) of s4d.py")
        s["d_model"] = Option(H, W, f"{p0}D {tuple(D.shape)}")
        s["d_state"] = Option(2 * N2, W, f"N = 2 x {N2} stored complex modes ({p0}kernel.C)")
        s.update(channels=Option(1, "format", "s4d.py has one channel"),
                 bidirectional=Option(False, "format", "s4d.py is causal"),
                 n_ssm=Option(None, "format", "s4d.py has one (A, dt) per feature"),
                 dt_tie=Option(True, "format", "s4d.py's log_dt is (H,)"),
                 is_real=Option(False, "format", "s4d.py is complex"),
                 final_act=Option("glu", "format", "s4d.py's Conv1d(H, 2H, 1) + GLU"))
    else:
        D = t.get(p0 + "layer.D", 2)
        Cd, H = D.shape
        C = t.get(p0 + "layer.kernel.C")
        A_real = t.get(p0 + "layer.kernel.A_real", 2)
        S, N2 = A_real.shape
        is_real = not t.has(p0 + "layer.kernel.A_imag")
        _expect(C.dim() == (3 if is_real else 4) and (is_real or C.shape[-1] == 2),
                f"`{p0}layer.kernel.C` has shape {tuple(C.shape)}; expected (Ck, H, N/2, 2) with A_imag, or "
                "(Ck, H, N) without it (is_real)")
        Ck = C.shape[0]
        _expect(tuple(C.shape[1:3]) == (H, N2), f"`{p0}layer.kernel.C` {tuple(C.shape)} does not match H={H}, N2={N2}")
        _expect(Ck in (Cd, 2 * Cd), f"`{p0}layer.kernel.C` has {Ck} rows for {Cd} rows of D: expected {Cd} or {2 * Cd}")
        B_shape = (1, S, N2) if is_real else (1, S, N2, 2)
        _expect(tuple(t.get(p0 + "layer.kernel.B").shape) == B_shape, f"`{p0}layer.kernel.B` must be {B_shape}")
        if not is_real:
            _expect(tuple(t.get(p0 + "layer.kernel.A_imag").shape) == (S, N2),
                    f"`{p0}layer.kernel.A_imag` must be ({S}, {N2})")
        _expect(H % S == 0, f"n_ssm={S} (rows of A_real) does not divide d_model={H}")
        inv_dt = t.get(p0 + "layer.kernel.inv_dt", 2)
        _expect(inv_dt.shape[0] == H and inv_dt.shape[1] in (1, N2),
                f"`{p0}layer.kernel.inv_dt` must be ({H}, 1) or ({H}, {N2})")
        w = t.get(p0 + "output_linear.0.weight", 2)
        _expect(w.shape[1] == Cd * H, f"`{p0}output_linear.0.weight` takes {w.shape[1]} features, expected channels "
                f"x H = {Cd * H} (a 'glu' FFTConv activation, which halves them, is not supported)")
        _expect(w.shape[0] in (H, 2 * H),
                f"`{p0}output_linear.0.weight` has {w.shape[0]} rows, expected {H} or {2 * H}")
        s["d_model"] = Option(H, W, f"{p0}layer.D {tuple(D.shape)}")
        s["d_state"] = Option(N2 if is_real else 2 * N2, W,
                              f"{N2} real modes" if is_real else f"N = 2 x {N2} stored complex modes")
        s["channels"] = Option(Cd, W, "rows of layer.D")
        s["bidirectional"] = Option(Ck == 2 * Cd, W, f"{Ck} rows of kernel.C for {Cd} of D")
        s["n_ssm"] = Option(None if S == H else S, W,
                            f"{S} rows of kernel.A_real" + (" (one per feature)" if S == H else ""))
        s["dt_tie"] = Option(inv_dt.shape[1] == 1, W, f"kernel.inv_dt {tuple(inv_dt.shape)}")
        s["is_real"] = Option(is_real, W, "no kernel.A_imag, real C" if is_real else "complex C, kernel.A_imag present")
        s["final_act"] = Option("glu" if w.shape[0] == 2 * H else None, W, f"output_linear.0.weight {tuple(w.shape)}")

    # Every layer must have layer 0's shapes: S4DConfig describes identical blocks. (Tensors that are no part of an
    # S4D layer are left to the unknown-tensor check, which lists them.)
    known = _LAYER_TENSORS[layout.layer_kind]
    reference = {k: v for k, v in t.under(p0).items() if k in known}
    for i in range(1, n_layers):
        pi = layout.layer.format(i=i)
        _expect({k: v for k, v in t.under(pi).items() if k in known} == reference,
                f"layer {i} (`{pi}*`) does not have the tensors/shapes of layer 0: S4DConfig describes identical "
                "layers")
    return s


def _norm_kind(t: _Tensors, prefix: str, H: int) -> str | None:
    """'layer' / 'batch' from the tensors under ``prefix`` (None when there are none)."""
    shapes = t.under(prefix)
    if not shapes:
        return None
    names = set(shapes)
    if names == {"weight", "bias"} and shapes["weight"] == (H,):
        return "layer"
    if names == {"weight", "bias", "running_mean", "running_var", "num_batches_tracked"} and shapes["weight"] == (H,):
        return "batch"
    if names == {"m", "s"}:
        raise ConversionError(
            f"`{prefix}m`/`{prefix}s` is the framework's TransposedLN (model.transposed=True with norm: layer), a "
            "scalar LayerNorm without eps that S4D-HF does not implement; it cannot be converted faithfully"
        )
    raise ConversionError(f"unsupported normalization under `{prefix}`: tensors {sorted(names)} (expected LayerNorm "
                          "weight/bias or BatchNorm1d weight/bias/running stats)")


# ----------------------------------------------------------------------------------------------------------------
# Options: weights -> config -> flag -> default
# ----------------------------------------------------------------------------------------------------------------


def _flag_conflict(name: str, given: Any, fixed: Any, why: str) -> ConversionError:
    return ConversionError(f"{FLAG_SPELLING[name]} {given} contradicts the checkpoint: {why} ({fixed})")


def _choose(name: str, flags: dict, config_value: Any, config_key: str | None, default: Any, default_why: str,
            allowed: tuple | None = None) -> Option:
    """flag > config > default, validated against ``allowed``."""
    if flags.get(name) is not None:
        option = Option(flags[name], "flag", FLAG_SPELLING[name]
                        + (f" (the config says {config_value!r})" if config_value not in (None, flags[name]) else ""))
    elif config_value is not None:
        option = Option(config_value, "config", config_key)
    else:
        option = Option(default, "default", default_why)
    if allowed is not None and option.value not in allowed:
        where = FLAG_SPELLING[name] if option.source == "flag" else (config_key or name)
        raise ConversionError(
            f"{where} = {option.value!r} is not supported; S4D-HF implements {', '.join(map(repr, allowed))}")
    return option


def _fixed(name: str, flags: dict, value: Any, why: str) -> Option:
    """An option that the source code hard-wires; a contradicting flag is an error."""
    if flags.get(name) is not None and flags[name] != value:
        raise _flag_conflict(name, flags[name], value, why)
    return Option(value, "format", why)


class _LightningConfig:
    """The parts of the framework config that the conversion reads, with the checks for what it cannot convert."""

    def __init__(self, hp: Hparams):
        self.hp = hp
        n = hp.list_length("model.layer")
        if n is not None:
            _expect(n == 1, f"{hp.origin}: model.layer lists {n} layers per block; S4D-HF blocks "
                    "hold one S4D layer")
            self.lp = "model.layer.0"
        else:
            self.lp = "model.layer"

    def layer(self, key: str, default: Any = None) -> Any:
        return self.hp.get(f"{self.lp}.{key}", default)

    def model(self, key: str, default: Any = None) -> Any:
        return self.hp.get(f"model.{key}", default)

    def check_supported(self, layer_kind: str) -> None:
        hp, origin = self.hp, self.hp.origin
        name = self.layer("_name_")
        if layer_kind == "minimal":
            _expect(name in (None, "s4d"), f"{origin}: model.layer._name_ is {name!r} but the weights are the minimal "
                    "s4d.py layer (_name_: s4d)")
        else:
            _expect(name in (None, "s4", "standalone"), f"{origin}: model.layer._name_ {name!r} is not an S4 block")
            mode = self.layer("mode", self.layer("kernel"))
            if mode in ("nplr", "dplr", "s4"):
                raise ConversionError(f"{origin}: model.layer.mode is {mode!r}: this is an S4 (DPLR) model, not S4D")
            _expect(mode in (None, "diag", "s4d"),
                    f"{origin}: model.layer.mode {mode!r} is not the diagonal (S4D) kernel")
            unsupported = {  # option: (allowed values, what it would add)
                "gate": ((None,), "a multiplicative gate (input_gate/output_gate)"),
                "bottleneck": ((None,), "an input bottleneck"),
                "mult_act": ((None, "id"), "an activation after the gate"),
                "weight_norm": ((None, False), "weight-normalised output_linear"),
                "layer": ((None, "fftconv"), "another inner layer"),
                "activation": ((None, "gelu"), "an activation other than GELU"),
                "dt_fast": ((None, False), "dt = softplus/exp(sinh(inv_dt))"),
                "bandlimit": ((None,), "a band limit on C"),
                "imag_transform": ((None, "none"), "a transform of Im A"),
                "swap_channels": ((None, False), "channel-minor flattening"),
            }
            for key, (allowed, what) in unsupported.items():
                value = self.layer(key)
                _expect(value in allowed,
                        f"{origin}: model.layer.{key} = {value!r} ({what}) is not supported by S4D-HF")
        _expect(self.model("bidirectional", False) in (False, None), f"{origin}: model.bidirectional=True (a second "
                "reversed layer + bidirectional_linear per block) is not supported; the layer's own bidirectional is")
        residual = self.model("residual", "R")
        r_name = residual.get("_name_") if isinstance(residual, dict) else residual
        r_extra = {k: v for k, v in residual.items() if k != "_name_" and v != 1} if isinstance(residual, dict) else {}
        _expect(r_name == "R" and not r_extra, f"{origin}: model.residual {residual!r} is not the plain residual 'R'")
        pool = self.model("pool")
        if isinstance(pool, dict):
            _expect(pool.get("stride", 1) in (1, None) and pool.get("expand") in (None, 1),
                    f"{origin}: model.pool {pool} changes the sequence length; not supported")
        _expect(self.model("n_repeat", 1) == 1, f"{origin}: model.n_repeat must be 1")
        task = hp.get("task._name_")
        _expect(task in (None, "base"), f"{origin}: task._name_ {task!r} is not a classification/regression task "
                "(base); only sequence classification and regression checkpoints are converted")

    def norm(self) -> tuple[str | None, float | None]:
        norm = self.model("norm")
        if norm is None:
            return None, None
        if isinstance(norm, dict):
            extra = {k: v for k, v in norm.items() if k not in ("_name_", "eps")}
            _expect(not extra or norm.get("_name_") == "batch" and set(extra) <= {"momentum", "affine",
                    "track_running_stats"}, f"{self.hp.origin}: model.norm options {extra} are not supported")
            return norm.get("_name_", "layer"), norm.get("eps")
        return norm, None

    def encoder(self) -> str | None:
        names = [e.get("_name_") if isinstance(e, dict) else e for e in _to_list(self.hp.get("encoder"))
                 + _to_list(self.model("encoder"))]
        if not names:
            return None
        _expect(len(names) == 1 and names[0] in ("linear", "embedding"), f"{self.hp.origin}: encoder {names} is not "
                "one linear or embedding encoder")
        return names[0]

    def decoder(self) -> dict | None:
        decoders = _to_list(self.model("decoder")) + _to_list(self.hp.get("decoder"))
        if not decoders:
            return None
        _expect(len(decoders) == 1, f"{self.hp.origin}: {len(decoders)} decoders configured; expected one")
        d = decoders[0] if isinstance(decoders[0], dict) else {"_name_": decoders[0]}
        _expect(d.get("_name_") == "sequence", f"{self.hp.origin}: decoder {d.get('_name_')!r} is not the sequence "
                "decoder (pool/last + Linear); not supported")
        return d


def _to_list(x: Any) -> list:
    if x is None:
        return []
    return list(x) if isinstance(x, (list, tuple)) else [x]


def _options(t: _Tensors, layout: Layout, n_layers: int, hp: Hparams | None, flags: dict) -> tuple[dict, list[str]]:
    """All S4DConfig values with provenance, plus notes for the card."""
    notes: list[str] = []
    o = _structure(t, layout, n_layers)
    H = o["d_model"].value
    o["n_layers"] = Option(n_layers, "weights", f"{n_layers} layers under {layout.layer.format(i='{i}')}")
    lc = _LightningConfig(hp) if (layout.format == "lightning" and hp is not None) else None
    if lc is not None:
        lc.check_supported(layout.layer_kind)
        for key, value in (("d_model", lc.model("d_model")), ("n_layers", lc.model("n_layers")),
                           ("d_state", lc.layer("d_state"))):
            _expect(value is None or value == o[key].value, f"{hp.origin} says {key}={value} but the weights have "
                    f"{o[key].value}: is this the config of another run?")

    # -- encoder / decoder ------------------------------------------------------------------------------------
    enc_w = t.get(layout.encoder + "weight", 2)
    if t.has(layout.encoder + "bias"):
        _expect(enc_w.shape[0] == H, f"`{layout.encoder}weight` {tuple(enc_w.shape)}: expected ({H}, d_input)")
        o["input_dim"] = Option(enc_w.shape[1], "weights", f"{layout.encoder}weight {tuple(enc_w.shape)} (Linear)")
        encoder = "linear"
    else:
        _expect(enc_w.shape[1] == H, f"`{layout.encoder}weight` {tuple(enc_w.shape)}: expected (n_tokens, {H})")
        o["vocab_size"] = Option(enc_w.shape[0], "weights", f"{layout.encoder}weight {tuple(enc_w.shape)} "
                                 "(Embedding: no bias)")
        encoder = "embedding"
    if lc is not None and lc.encoder() not in (None, encoder):
        raise ConversionError(f"{hp.origin} configures a {lc.encoder()} encoder but the weights hold a {encoder} one")
    dec_w = t.get(layout.decoder + "weight", 2)
    _expect(dec_w.shape[1] == H and t.has(layout.decoder + "bias"),
            f"`{layout.decoder}weight` {tuple(dec_w.shape)}: expected a Linear ({'{num_labels}'}, {H}) with bias")
    num_labels = dec_w.shape[0]
    if flags.get("num_labels") is not None and flags["num_labels"] != num_labels:
        raise _flag_conflict("num_labels", flags["num_labels"], num_labels,
                             f"`{layout.decoder}weight` has that many rows")
    o["num_labels"] = Option(num_labels, "weights", f"{layout.decoder}weight {tuple(dec_w.shape)}")
    labels = flags.get("labels")
    if labels is not None:
        _expect(len(labels) == num_labels,
                f"--labels names {len(labels)} classes but the decoder has {num_labels} outputs")
        o["labels"] = Option(list(labels), "flag", "--labels")

    # -- norms --------------------------------------------------------------------------------------------------
    kinds = {_norm_kind(t, layout.norm.format(i=i), H) for i in range(n_layers)}
    _expect(len(kinds) == 1, f"the blocks use different normalizations: {sorted(map(str, kinds))}")
    norm = kinds.pop()
    _expect(norm is not None, f"no normalization tensors under `{layout.norm.format(i=0)}`: S4D-HF blocks always "
            "have a norm (norm: null / none is not supported)")
    final = _norm_kind(t, layout.final_norm, H) if layout.final_norm else None
    _expect(final in (None, norm), f"the final norm ({final}) differs from the block norms ({norm})")
    eps = 1e-5
    if layout.format == "lightning":
        o["norm"] = Option(norm, "weights", "BatchNorm running statistics present" if norm == "batch"
                           else "weight/bias only (LayerNorm)")
        if lc is not None:
            cfg_norm, cfg_eps = lc.norm()
            _expect(cfg_norm in (None, norm), f"{hp.origin} says model.norm={cfg_norm!r} but the weights hold {norm}")
            if cfg_eps is not None:
                eps = float(cfg_eps)
        prenorm = final is not None
        if lc is not None:
            cfg_prenorm = lc.model("prenorm")
            _expect(cfg_prenorm in (None, prenorm), f"{hp.origin} says model.prenorm={cfg_prenorm} but the weights "
                    f"{'have' if prenorm else 'have no'} final norm `{layout.final_norm}*`")
        if flags.get("prenorm") is not None and flags["prenorm"] != prenorm:
            raise _flag_conflict("prenorm", flags["prenorm"], prenorm,
                                 f"the framework has a final norm `{layout.final_norm}*` exactly when prenorm")
        o["prenorm"] = Option(prenorm, "weights", f"final norm `{layout.final_norm}*` "
                              + ("present" if prenorm else "absent"))
        o["final_norm"] = Option(prenorm, "format", "the framework's SequenceModel adds a final norm with prenorm")
    else:
        _expect(norm == "layer", f"example.py uses LayerNorm; `{layout.norm.format(i=0)}*` holds {norm}")
        o["norm"] = Option("layer", "format", "example.py's nn.LayerNorm")
        o["prenorm"] = _choose("prenorm", flags, None, None, False,
                               "example.py's default (--prenorm is not stored: pre- and post-norm have the same keys)")
        o["final_norm"] = Option(False, "format", "example.py has no norm after the last block")
    o["layer_norm_eps"] = Option(eps, "config" if eps != 1e-5 else "default", "eps of nn.LayerNorm/BatchNorm1d")

    # -- the SSM options that are not in the weights --------------------------------------------------------------
    if layout.layer_kind == "minimal":
        why = "models/s4/s4d.py hard-wires it"
        o["disc"] = _fixed("disc", flags, "zoh", why)
        o["dt_transform"] = _fixed("dt_transform", flags, "exp", why + " (dt = exp(log_dt))")
        o["real_transform"] = _fixed("real_transform", flags, "exp", why + " (Re A = -exp(log_A_real))")
        o["l_max"] = _fixed("l_max", flags, None, "s4d.py always convolves with a kernel of the input's length")
        o["init"] = Option("lin", "format", "s4d.py initialises S4D-Lin (A = -1/2 + iπn)")
    else:
        get = (lambda k: lc.layer(k)) if lc is not None else (lambda k: None)
        key = (lambda k: f"{lc.lp}.{k}") if lc is not None else (lambda k: None)
        kernel_default = "the S4Block(mode='diag') default" + (" (not in the config)" if lc is not None else "")
        o["disc"] = _choose("disc", flags, get("disc"), key("disc"), "zoh", kernel_default, ("zoh", "bilinear"))
        if layout.format == "lightning" and lc is None and flags.get("dt_transform") is None:
            raise ConversionError(
                "a training-framework state dict does not store dt_transform (the framework preset is softplus, the "
                "kernel default exp) nor the decoder mode: pass --config (the run's .hydra/config.yaml or "
                "hparams.yaml), or --dt-transform and --decoder-mode"
            )
        o["dt_transform"] = _choose("dt_transform", flags, get("dt_transform"), key("dt_transform"), "exp",
                                    kernel_default, ("exp", "softplus"))
        o["real_transform"] = _choose("real_transform", flags, get("real_transform"), key("real_transform"), "exp",
                                      kernel_default, ("exp", "relu", "softplus", "none"))
        l_max = get("l_max")
        o["l_max"] = _choose("l_max", flags, int(l_max) if l_max is not None else None, key("l_max"), None,
                             "the standalone S4Block default (the kernel spans the whole input)")
        if o["l_max"].source == "default" and lc is not None and lc.hp.has(key("l_max")):
            o["l_max"] = Option(None, "config", f"{key('l_max')} = null (the kernel spans the whole input)")
        if o["final_act"].value is None:  # output_linear maps to H features: some non-GLU final activation
            cfg_act = get("final_act") or get("postact")
            if cfg_act is None and flags.get("final_act") is None:
                raise ConversionError("output_linear maps H -> H features, so final_act is not 'glu' and the weights "
                                      "do not say which activation follows it: pass --final-act id if there is none")
            o["final_act"] = _choose("final_act", flags, cfg_act, key("final_act"), None, "", ("id",))
        elif flags.get("final_act") not in (None, "glu"):
            raise _flag_conflict("final_act", flags["final_act"], "glu", "output_linear maps to 2H features (GLU)")
        elif (get("final_act") or get("postact") or "glu") != "glu":
            raise ConversionError(f"{hp.origin} says final_act={get('final_act') or get('postact')!r} but "
                                  "output_linear maps to 2H features (GLU): is this the config of another run?")
        cfg_init = get("init") or get("measure")
        if cfg_init is not None and cfg_init in INIT_NAMES:
            o["init"] = Option(INIT_NAMES[cfg_init], "config", f"{key('init')} = {cfg_init!r}")
        else:
            o["init"] = Option("legs", "default", "init only matters for re-initialisation"
                               + (f"; {cfg_init!r} has no S4DConfig equivalent" if cfg_init else ""))
        if o["n_ssm"].value is not None and o["init"].value == "diag" and o["n_ssm"].value % 2:
            o["init"] = Option("legs", "default",
                               "init 'diag' needs an even n_ssm; init only matters for re-initialisation")
    if lc is not None:
        for k in ("dt_min", "dt_max"):
            v = lc.layer(k)
            if v is not None:
                o[k] = Option(float(v), "config", f"{lc.lp}.{k}")
        dropout = lc.model("dropout")
        if isinstance(dropout, (int, float)):
            o["dropout"] = Option(float(dropout), "config", "model.dropout (training only)")
    notes.append("activation: GELU after the SSM (the reference default; not stored in the weights)")

    # -- head ---------------------------------------------------------------------------------------------------
    if layout.format == "lightning":
        decoder = lc.decoder() if lc is not None else None
        cfg_mode = None
        if decoder is not None:
            cfg_mode = decoder.get("mode", "last")  # SequenceDecoder's default mode
            _expect(decoder.get("l_output") in (None, 0), f"{hp.origin}: decoder l_output={decoder.get('l_output')} "
                    "is a sequence output; only l_output 0 (one prediction per sequence) is converted")
            if decoder.get("use_lengths"):
                notes.append("the decoder pooled over each sequence's valid length (use_lengths): pass attention_mask "
                             "for padded batches")
        if flags.get("decoder_mode") is None and cfg_mode is None:
            raise ConversionError("the decoder mode (pool or last) is not stored in the weights: pass --config or "
                                  "--decoder-mode")
        mode = _choose("decoder_mode", flags, cfg_mode, "decoder.mode", None, "", ("pool", "last"))
        o["pooling"] = Option({"pool": "mean", "last": "last"}[mode.value], mode.source,
                              f"{mode.detail} = {mode.value!r}" if mode.source != "flag" else mode.detail)
    else:
        if flags.get("decoder_mode") not in (None, "pool"):
            raise _flag_conflict("decoder_mode", flags["decoder_mode"], "pool", "example.py averages over the sequence")
        o["pooling"] = Option("mean", "format", "example.py: x.mean(dim=1) before the decoder")
    loss = hp.get("task.loss") if hp is not None else None
    if flags.get("task") is not None:
        o["problem_type"] = Option(TASKS[flags["task"]], "flag", f"--task {flags['task']}")
    elif loss in LOSS_TO_PROBLEM:
        o["problem_type"] = Option(LOSS_TO_PROBLEM[loss], "config", f"task.loss = {loss!r}")
    if hp is not None and hp.get("dataset._name_"):
        notes.append(f"trained on dataset `{hp.get('dataset._name_')}` (the framework's dataset config; "
                     "preprocessing is not part of the model)")
    return o, notes


# ----------------------------------------------------------------------------------------------------------------
# Tensor rules
# ----------------------------------------------------------------------------------------------------------------


def _same(x: torch.Tensor) -> torch.Tensor:
    return x


def _minimal_B(H: int, N2: int) -> Callable:
    """s4d.py has no B parameter: B ≡ 1 + 0i, stored by S4D-HF as (1, H, N2, 2) = [1, 0]."""

    def forward(_: None) -> torch.Tensor:
        return torch.stack([torch.ones(1, H, N2), torch.zeros(1, H, N2)], dim=-1)

    def backward(B: torch.Tensor) -> None:
        if not torch.equal(B, forward(None).to(B.dtype)):
            raise ConversionError("cannot export to the s4d.py layout: its B is fixed to 1, this model's B is not")
        return None

    return forward, backward


def _rules(layout: Layout, options: dict[str, Option], t: _Tensors, n_layers: int) -> list[Rule]:
    rules = []

    def add(src, dst, fwd=_same, bwd=_same):
        rules.append(Rule(src, dst, fwd, bwd))

    if "input_dim" in options:
        add(layout.encoder + "weight", "s4d.input_proj.weight")
        add(layout.encoder + "bias", "s4d.input_proj.bias")
    else:
        add(layout.encoder + "weight", "s4d.embeddings.weight")
    H = options["d_model"].value
    for i in range(n_layers):
        src, dst = layout.layer.format(i=i), f"s4d.layers.{i}.mixer."
        if layout.layer_kind == "minimal":
            N2 = options["d_state"].value // 2
            B_fwd, B_bwd = _minimal_B(H, N2)
            add(src + "D", dst + "D", lambda x: x[None], lambda x: x[0])
            add(src + "kernel.log_dt", dst + "kernel.inv_dt", lambda x: x[:, None], lambda x: x[:, 0])
            add(src + "kernel.log_A_real", dst + "kernel.A_real")
            # s4d.py: A = -exp(log_A_real) + i·A_imag; S4D-HF (as s4.py): A = -exp(A_real) - i·A_imag.
            add(src + "kernel.A_imag", dst + "kernel.A_imag", torch.neg, torch.neg)
            add(None, dst + "kernel.B", B_fwd, B_bwd)
            add(src + "kernel.C", dst + "kernel.C", lambda x: x[None], lambda x: x[0])
            # Conv1d(H, 2H, kernel_size=1) + GLU over channels == Linear(H, 2H) + GLU over features.
            add(src + "output_linear.0.weight", dst + "output_linear.weight",
                lambda x: x[..., 0], lambda x: x[..., None])
            add(src + "output_linear.0.bias", dst + "output_linear.bias")
        else:
            add(src + "layer.D", dst + "D")
            names = ["inv_dt", "A_real"] + ([] if options["is_real"].value else ["A_imag"]) + ["B", "C"]
            for name in names:
                add(src + f"layer.kernel.{name}", dst + f"kernel.{name}")
            add(src + "output_linear.0.weight", dst + "output_linear.weight")
            add(src + "output_linear.0.bias", dst + "output_linear.bias")
        norm_src = layout.norm.format(i=i)
        for name in t.under(norm_src):
            add(norm_src + name, f"s4d.layers.{i}.norm.{name}")
    if layout.final_norm:
        for name in t.under(layout.final_norm):
            add(layout.final_norm + name, f"s4d.norm_f.{name}")
    add(layout.decoder + "weight", "classifier.weight")
    add(layout.decoder + "bias", "classifier.bias")
    return rules


# ----------------------------------------------------------------------------------------------------------------
# Public functions
# ----------------------------------------------------------------------------------------------------------------


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
    layout = make_layout(fmt, _layer_kind(state_dict, fmt))
    t = _Tensors(state_dict)
    n_layers = _layer_indices(keys, layout)
    options, notes = _options(t, layout, n_layers, hparams, flags)
    options = {k: options[k] for k in sorted(options, key=_OPTION_ORDER.index)}
    rules = _rules(layout, options, t, n_layers)

    used = {r.source for r in rules if r.source is not None}
    dropped = {}
    for i in range(n_layers):
        dC = layout.layer.format(i=i) + "layer.kernel.dC"
        if dC in state_dict:  # s4.py's setup_step() aliases C as a parameter dC (is_real): a copy, not new weights
            C = state_dict[layout.layer.format(i=i) + "layer.kernel.C"]
            _expect(torch.equal(state_dict[dC], C),
                    f"`{dC}` differs from kernel.C; expected the setup_step() alias of C")
            dropped[dC] = "alias of kernel.C written by setup_step(); identical, dropped"
    missing = [k for k in used if k not in state_dict]
    _expect(not missing, f"missing tensors for the {fmt} format: {', '.join(sorted(missing)[:8])}")
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
