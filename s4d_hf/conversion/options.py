"""Every S4DConfig value of a conversion, with where it came from.

The structure (sizes, channels, bidirectional, ...) is read from the tensor shapes; everything the weights do not
store comes from the training framework's config, a flag of ``s4d-hf convert``, or the reference's default for the
format, and a value the source code hard-wires is fixed by the format. Each value is an :class:`Option` that records
its source and why, for the conversion log and the model card. Allowed values are S4DConfig's own
(``configuration_s4d._CHOICES``).
"""

from dataclasses import dataclass
from typing import Any

from ..modeling.configuration_s4d import _CHOICES
from .keys import LAYER_TENSORS, Layout, SourceTensors, expect
from .loading import ConversionError, Hparams

# Flags a user may give for options that are not stored in the weights (None = not given).
FLAG_NAMES = ("disc", "dt_transform", "real_transform", "prenorm", "final_act", "decoder_mode", "l_max", "task",
              "num_labels", "labels")
TASKS = {"classification": "single_label_classification", "multilabel": "multi_label_classification",
         "regression": "regression"}
# The framework's SequenceDecoder modes -> S4DConfig.pooling.
DECODER_MODES = {"pool": "mean", "last": "last"}
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
OPTION_ORDER = ["input_dim", "vocab_size", "num_labels", "labels", "problem_type", "pooling", "d_model", "n_layers",
                "d_state", "channels", "n_ssm", "bidirectional", "is_real", "dt_tie", "disc", "dt_transform",
                "real_transform", "l_max", "final_act", "init", "dt_min", "dt_max", "norm", "prenorm", "final_norm",
                "layer_norm_eps", "dropout"]


@dataclass
class Option:
    """One S4DConfig value and where it came from: weights, config, flag, default or format (fixed by the code)."""

    value: Any
    source: str
    detail: str = ""


# ----------------------------------------------------------------------------------------------------------------
# Weights: the structure, from tensor shapes
# ----------------------------------------------------------------------------------------------------------------


def structure_options(t: SourceTensors, layout: Layout, n_layers: int) -> dict[str, Option]:
    """Every structural option, read from tensor shapes (layer 0, then every layer checked against it)."""
    p0 = layout.layer.format(i=0)
    W = "weights"
    s: dict[str, Option] = {}
    if layout.layer_kind == "minimal":
        D = t.get(p0 + "D", 1)
        H = D.shape[0]
        C = t.get(p0 + "kernel.C", 3)
        expect(C.shape[0] == H and C.shape[2] == 2,
               f"`{p0}kernel.C` has shape {tuple(C.shape)}, expected ({H}, N/2, 2)")
        N2 = C.shape[1]
        expect(tuple(t.get(p0 + "kernel.log_dt").shape) == (H,), f"`{p0}kernel.log_dt` must have shape ({H},)")
        for name in ("log_A_real", "A_imag"):
            expect(tuple(t.get(p0 + f"kernel.{name}").shape) == (H, N2), f"`{p0}kernel.{name}` must be ({H}, {N2})")
        expect(tuple(t.get(p0 + "output_linear.0.weight").shape) == (2 * H, H, 1),
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
        expect(C.dim() == (3 if is_real else 4) and (is_real or C.shape[-1] == 2),
               f"`{p0}layer.kernel.C` has shape {tuple(C.shape)}; expected (Ck, H, N/2, 2) with A_imag, or "
               "(Ck, H, N) without it (is_real)")
        Ck = C.shape[0]
        expect(tuple(C.shape[1:3]) == (H, N2), f"`{p0}layer.kernel.C` {tuple(C.shape)} does not match H={H}, N2={N2}")
        expect(Ck in (Cd, 2 * Cd), f"`{p0}layer.kernel.C` has {Ck} rows for {Cd} rows of D: expected {Cd} or {2 * Cd}")
        B_shape = (1, S, N2) if is_real else (1, S, N2, 2)
        expect(tuple(t.get(p0 + "layer.kernel.B").shape) == B_shape, f"`{p0}layer.kernel.B` must be {B_shape}")
        if not is_real:
            expect(tuple(t.get(p0 + "layer.kernel.A_imag").shape) == (S, N2),
                   f"`{p0}layer.kernel.A_imag` must be ({S}, {N2})")
        expect(H % S == 0, f"n_ssm={S} (rows of A_real) does not divide d_model={H}")
        inv_dt = t.get(p0 + "layer.kernel.inv_dt", 2)
        expect(inv_dt.shape[0] == H and inv_dt.shape[1] in (1, N2),
               f"`{p0}layer.kernel.inv_dt` must be ({H}, 1) or ({H}, {N2})")
        w = t.get(p0 + "output_linear.0.weight", 2)
        expect(w.shape[1] == Cd * H, f"`{p0}output_linear.0.weight` takes {w.shape[1]} features, expected channels "
               f"x H = {Cd * H} (a 'glu' FFTConv activation, which halves them, is not supported)")
        expect(w.shape[0] in (H, 2 * H),
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
    known = LAYER_TENSORS[layout.layer_kind]
    reference = {k: v for k, v in t.under(p0).items() if k in known}
    for i in range(1, n_layers):
        pi = layout.layer.format(i=i)
        expect({k: v for k, v in t.under(pi).items() if k in known} == reference,
               f"layer {i} (`{pi}*`) does not have the tensors/shapes of layer 0: S4DConfig describes identical "
               "layers")
    return s


def _norm_kind(t: SourceTensors, prefix: str, H: int) -> str | None:
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
# Flag > config > default, and what the format fixes
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
            expect(n == 1, f"{hp.origin}: model.layer lists {n} layers per block; S4D-HF blocks "
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
            expect(name in (None, "s4d"), f"{origin}: model.layer._name_ is {name!r} but the weights are the minimal "
                   "s4d.py layer (_name_: s4d)")
        else:
            expect(name in (None, "s4", "standalone"), f"{origin}: model.layer._name_ {name!r} is not an S4 block")
            mode = self.layer("mode", self.layer("kernel"))
            if mode in ("nplr", "dplr", "s4"):
                raise ConversionError(f"{origin}: model.layer.mode is {mode!r}: this is an S4 (DPLR) model, not S4D")
            expect(mode in (None, "diag", "s4d"),
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
                expect(value in allowed,
                       f"{origin}: model.layer.{key} = {value!r} ({what}) is not supported by S4D-HF")
        expect(self.model("bidirectional", False) in (False, None), f"{origin}: model.bidirectional=True (a second "
               "reversed layer + bidirectional_linear per block) is not supported; the layer's own bidirectional is")
        residual = self.model("residual", "R")
        r_name = residual.get("_name_") if isinstance(residual, dict) else residual
        r_extra = {k: v for k, v in residual.items() if k != "_name_" and v != 1} if isinstance(residual, dict) else {}
        expect(r_name == "R" and not r_extra, f"{origin}: model.residual {residual!r} is not the plain residual 'R'")
        pool = self.model("pool")
        if isinstance(pool, dict):
            expect(pool.get("stride", 1) in (1, None) and pool.get("expand") in (None, 1),
                   f"{origin}: model.pool {pool} changes the sequence length; not supported")
        expect(self.model("n_repeat", 1) == 1, f"{origin}: model.n_repeat must be 1")
        task = hp.get("task._name_")
        expect(task in (None, "base"), f"{origin}: task._name_ {task!r} is not a classification/regression task "
               "(base); only sequence classification and regression checkpoints are converted")

    def norm(self) -> tuple[str | None, float | None]:
        norm = self.model("norm")
        if norm is None:
            return None, None
        if isinstance(norm, dict):
            extra = {k: v for k, v in norm.items() if k not in ("_name_", "eps")}
            expect(not extra or norm.get("_name_") == "batch" and set(extra) <= {"momentum", "affine",
                   "track_running_stats"}, f"{self.hp.origin}: model.norm options {extra} are not supported")
            return norm.get("_name_", "layer"), norm.get("eps")
        return norm, None

    def encoder(self) -> str | None:
        names = [e.get("_name_") if isinstance(e, dict) else e for e in _to_list(self.hp.get("encoder"))
                 + _to_list(self.model("encoder"))]
        if not names:
            return None
        expect(len(names) == 1 and names[0] in ("linear", "embedding"), f"{self.hp.origin}: encoder {names} is not "
               "one linear or embedding encoder")
        return names[0]

    def decoder(self) -> dict | None:
        decoders = _to_list(self.model("decoder")) + _to_list(self.hp.get("decoder"))
        if not decoders:
            return None
        expect(len(decoders) == 1, f"{self.hp.origin}: {len(decoders)} decoders configured; expected one")
        d = decoders[0] if isinstance(decoders[0], dict) else {"_name_": decoders[0]}
        expect(d.get("_name_") == "sequence", f"{self.hp.origin}: decoder {d.get('_name_')!r} is not the sequence "
               "decoder (pool/last + Linear); not supported")
        return d


def _to_list(x: Any) -> list:
    if x is None:
        return []
    return list(x) if isinstance(x, (list, tuple)) else [x]




# ----------------------------------------------------------------------------------------------------------------
# The option groups
# ----------------------------------------------------------------------------------------------------------------


def resolve_options(t: SourceTensors, layout: Layout, n_layers: int, hp: Hparams | None,
                    flags: dict) -> tuple[dict[str, Option], list[str]]:
    """All S4DConfig values with provenance (in :data:`OPTION_ORDER`), plus notes for the card."""
    notes: list[str] = []
    o = structure_options(t, layout, n_layers)
    o["n_layers"] = Option(n_layers, "weights", f"{n_layers} layers under {layout.layer.format(i='{i}')}")
    lc = _LightningConfig(hp) if (layout.format == "lightning" and hp is not None) else None
    if lc is not None:
        _check_config_matches_weights(lc, layout, o)
    o.update(_encoder_decoder_options(t, layout, o["d_model"].value, lc, flags))
    o.update(_norm_options(t, layout, n_layers, o["d_model"].value, lc, flags))
    if layout.layer_kind == "minimal":
        o.update(_minimal_ssm_options(flags))
    else:
        o.update(_s4block_ssm_options(layout, o, lc, flags))
    if lc is not None:
        o.update(_training_options(lc))
    notes.append("activation: GELU after the SSM (the reference default; not stored in the weights)")
    o.update(_head_options(layout, hp, lc, flags, notes))
    return {k: o[k] for k in sorted(o, key=OPTION_ORDER.index)}, notes


def _check_config_matches_weights(lc: _LightningConfig, layout: Layout, o: dict[str, Option]) -> None:
    lc.check_supported(layout.layer_kind)
    for key, value in (("d_model", lc.model("d_model")), ("n_layers", lc.model("n_layers")),
                       ("d_state", lc.layer("d_state"))):
        expect(value is None or value == o[key].value, f"{lc.hp.origin} says {key}={value} but the weights have "
               f"{o[key].value}: is this the config of another run?")


def _encoder_decoder_options(t: SourceTensors, layout: Layout, H: int, lc: _LightningConfig | None,
                             flags: dict) -> dict[str, Option]:
    """input_dim (Linear encoder) or vocab_size (Embedding), num_labels and labels."""
    o: dict[str, Option] = {}
    enc_w = t.get(layout.encoder + "weight", 2)
    if t.has(layout.encoder + "bias"):
        expect(enc_w.shape[0] == H, f"`{layout.encoder}weight` {tuple(enc_w.shape)}: expected ({H}, d_input)")
        o["input_dim"] = Option(enc_w.shape[1], "weights", f"{layout.encoder}weight {tuple(enc_w.shape)} (Linear)")
        encoder = "linear"
    else:
        expect(enc_w.shape[1] == H, f"`{layout.encoder}weight` {tuple(enc_w.shape)}: expected (n_tokens, {H})")
        o["vocab_size"] = Option(enc_w.shape[0], "weights", f"{layout.encoder}weight {tuple(enc_w.shape)} "
                                 "(Embedding: no bias)")
        encoder = "embedding"
    if lc is not None and lc.encoder() not in (None, encoder):
        raise ConversionError(f"{lc.hp.origin} configures a {lc.encoder()} encoder but the weights hold a {encoder} "
                              "one")
    dec_w = t.get(layout.decoder + "weight", 2)
    expect(dec_w.shape[1] == H and t.has(layout.decoder + "bias"),
           f"`{layout.decoder}weight` {tuple(dec_w.shape)}: expected a Linear ({'{num_labels}'}, {H}) with bias")
    num_labels = dec_w.shape[0]
    if flags.get("num_labels") is not None and flags["num_labels"] != num_labels:
        raise _flag_conflict("num_labels", flags["num_labels"], num_labels,
                             f"`{layout.decoder}weight` has that many rows")
    o["num_labels"] = Option(num_labels, "weights", f"{layout.decoder}weight {tuple(dec_w.shape)}")
    labels = flags.get("labels")
    if labels is not None:
        expect(len(labels) == num_labels,
               f"--labels names {len(labels)} classes but the decoder has {num_labels} outputs")
        o["labels"] = Option(list(labels), "flag", "--labels")
    return o


def _norm_options(t: SourceTensors, layout: Layout, n_layers: int, H: int, lc: _LightningConfig | None,
                  flags: dict) -> dict[str, Option]:
    """norm, prenorm, final_norm and layer_norm_eps: the norm tensors, the framework config, the example default."""
    o: dict[str, Option] = {}
    kinds = {_norm_kind(t, layout.norm.format(i=i), H) for i in range(n_layers)}
    expect(len(kinds) == 1, f"the blocks use different normalizations: {sorted(map(str, kinds))}")
    norm = kinds.pop()
    expect(norm is not None, f"no normalization tensors under `{layout.norm.format(i=0)}`: S4D-HF blocks always "
           "have a norm (norm: null / none is not supported)")
    final = _norm_kind(t, layout.final_norm, H) if layout.final_norm else None
    expect(final in (None, norm), f"the final norm ({final}) differs from the block norms ({norm})")
    eps = 1e-5
    if layout.format == "lightning":
        o["norm"] = Option(norm, "weights", "BatchNorm running statistics present" if norm == "batch"
                           else "weight/bias only (LayerNorm)")
        if lc is not None:
            cfg_norm, cfg_eps = lc.norm()
            expect(cfg_norm in (None, norm), f"{lc.hp.origin} says model.norm={cfg_norm!r} but the weights hold "
                   f"{norm}")
            if cfg_eps is not None:
                eps = float(cfg_eps)
        prenorm = final is not None
        if lc is not None:
            cfg_prenorm = lc.model("prenorm")
            expect(cfg_prenorm in (None, prenorm), f"{lc.hp.origin} says model.prenorm={cfg_prenorm} but the weights "
                   f"{'have' if prenorm else 'have no'} final norm `{layout.final_norm}*`")
        if flags.get("prenorm") is not None and flags["prenorm"] != prenorm:
            raise _flag_conflict("prenorm", flags["prenorm"], prenorm,
                                 f"the framework has a final norm `{layout.final_norm}*` exactly when prenorm")
        o["prenorm"] = Option(prenorm, "weights", f"final norm `{layout.final_norm}*` "
                              + ("present" if prenorm else "absent"))
        o["final_norm"] = Option(prenorm, "format", "the framework's SequenceModel adds a final norm with prenorm")
    else:
        expect(norm == "layer", f"example.py uses LayerNorm; `{layout.norm.format(i=0)}*` holds {norm}")
        o["norm"] = Option("layer", "format", "example.py's nn.LayerNorm")
        o["prenorm"] = _choose("prenorm", flags, None, None, False,
                               "example.py's default (--prenorm is not stored: pre- and post-norm have the same keys)")
        o["final_norm"] = Option(False, "format", "example.py has no norm after the last block")
    o["layer_norm_eps"] = Option(eps, "config" if eps != 1e-5 else "default", "eps of nn.LayerNorm/BatchNorm1d")
    return o


def _minimal_ssm_options(flags: dict) -> dict[str, Option]:
    """What models/s4/s4d.py hard-wires: a contradicting flag is an error."""
    why = "models/s4/s4d.py hard-wires it"
    return {
        "disc": _fixed("disc", flags, "zoh", why),
        "dt_transform": _fixed("dt_transform", flags, "exp", why + " (dt = exp(log_dt))"),
        "real_transform": _fixed("real_transform", flags, "exp", why + " (Re A = -exp(log_A_real))"),
        "l_max": _fixed("l_max", flags, None, "s4d.py always convolves with a kernel of the input's length"),
        "init": Option("lin", "format", "s4d.py initialises S4D-Lin (A = -1/2 + iπn)"),
    }


def _s4block_ssm_options(layout: Layout, structure: dict[str, Option], lc: _LightningConfig | None,
                         flags: dict) -> dict[str, Option]:
    """The S4Block(mode='diag') options that are not in the weights: flag > config > the kernel's default."""
    o: dict[str, Option] = {}
    get = (lambda k: lc.layer(k)) if lc is not None else (lambda k: None)
    key = (lambda k: f"{lc.lp}.{k}") if lc is not None else (lambda k: None)
    kernel_default = "the S4Block(mode='diag') default" + (" (not in the config)" if lc is not None else "")
    o["disc"] = _choose("disc", flags, get("disc"), key("disc"), "zoh", kernel_default, _CHOICES["disc"])
    if layout.format == "lightning" and lc is None and flags.get("dt_transform") is None:
        raise ConversionError(
            "a training-framework state dict does not store dt_transform (the framework preset is softplus, the "
            "kernel default exp) nor the decoder mode: pass --config (the run's .hydra/config.yaml or "
            "hparams.yaml), or --dt-transform and --decoder-mode"
        )
    o["dt_transform"] = _choose("dt_transform", flags, get("dt_transform"), key("dt_transform"), "exp",
                                kernel_default, _CHOICES["dt_transform"])
    o["real_transform"] = _choose("real_transform", flags, get("real_transform"), key("real_transform"), "exp",
                                  kernel_default, _CHOICES["real_transform"])
    l_max = get("l_max")
    o["l_max"] = _choose("l_max", flags, int(l_max) if l_max is not None else None, key("l_max"), None,
                         "the standalone S4Block default (the kernel spans the whole input)")
    if o["l_max"].source == "default" and lc is not None and lc.hp.has(key("l_max")):
        o["l_max"] = Option(None, "config", f"{key('l_max')} = null (the kernel spans the whole input)")
    if structure["final_act"].value is None:  # output_linear maps to H features: some non-GLU final activation
        cfg_act = get("final_act") or get("postact")
        if cfg_act is None and flags.get("final_act") is None:
            raise ConversionError("output_linear maps H -> H features, so final_act is not 'glu' and the weights "
                                  "do not say which activation follows it: pass --final-act id if there is none")
        not_glu = tuple(act for act in _CHOICES["final_act"] if act != "glu")
        o["final_act"] = _choose("final_act", flags, cfg_act, key("final_act"), None, "", not_glu)
    elif flags.get("final_act") not in (None, "glu"):
        raise _flag_conflict("final_act", flags["final_act"], "glu", "output_linear maps to 2H features (GLU)")
    elif (get("final_act") or get("postact") or "glu") != "glu":
        raise ConversionError(f"{lc.hp.origin} says final_act={get('final_act') or get('postact')!r} but "
                              "output_linear maps to 2H features (GLU): is this the config of another run?")
    o["init"] = _init_option(get("init") or get("measure"), key("init"), structure["n_ssm"].value)
    return o


def _init_option(cfg_init: str | None, config_key: str | None, n_ssm: int | None) -> Option:
    """S4DConfig.init from the reference's init name (init only matters for re-initialisation)."""
    if cfg_init is not None and cfg_init in INIT_NAMES:
        option = Option(INIT_NAMES[cfg_init], "config", f"{config_key} = {cfg_init!r}")
    else:
        option = Option("legs", "default", "init only matters for re-initialisation"
                        + (f"; {cfg_init!r} has no S4DConfig equivalent" if cfg_init else ""))
    if n_ssm is not None and option.value == "diag" and n_ssm % 2:
        option = Option("legs", "default", "init 'diag' needs an even n_ssm; init only matters for re-initialisation")
    return option


def _training_options(lc: _LightningConfig) -> dict[str, Option]:
    """dt_min, dt_max and dropout: training-time settings the framework config records."""
    o: dict[str, Option] = {}
    for k in ("dt_min", "dt_max"):
        v = lc.layer(k)
        if v is not None:
            o[k] = Option(float(v), "config", f"{lc.lp}.{k}")
    dropout = lc.model("dropout")
    if isinstance(dropout, (int, float)):
        o["dropout"] = Option(float(dropout), "config", "model.dropout (training only)")
    return o


def _head_options(layout: Layout, hp: Hparams | None, lc: _LightningConfig | None, flags: dict,
                  notes: list[str]) -> dict[str, Option]:
    """pooling (the decoder mode) and problem_type (the loss); appends what the card should say to ``notes``."""
    o: dict[str, Option] = {}
    if layout.format == "lightning":
        decoder = lc.decoder() if lc is not None else None
        cfg_mode = None
        if decoder is not None:
            cfg_mode = decoder.get("mode", "last")  # SequenceDecoder's default mode
            expect(decoder.get("l_output") in (None, 0), f"{hp.origin}: decoder l_output={decoder.get('l_output')} "
                   "is a sequence output; only l_output 0 (one prediction per sequence) is converted")
            if decoder.get("use_lengths"):
                notes.append("the decoder pooled over each sequence's valid length (use_lengths): pass attention_mask "
                             "for padded batches")
        if flags.get("decoder_mode") is None and cfg_mode is None:
            raise ConversionError("the decoder mode (pool or last) is not stored in the weights: pass --config or "
                                  "--decoder-mode")
        mode = _choose("decoder_mode", flags, cfg_mode, "decoder.mode", None, "", tuple(DECODER_MODES))
        o["pooling"] = Option(DECODER_MODES[mode.value], mode.source,
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
    return o
