"""S4D model configuration."""

import math
from dataclasses import fields
from functools import wraps

from huggingface_hub.dataclasses import strict
from huggingface_hub.errors import StrictDataclassError, StrictDataclassFieldValidationError
from transformers import GenerationConfig, PreTrainedConfig
from transformers.utils import logging


logger = logging.get_logger(__name__)


_CHOICES = {
    "init": ("legs", "inv", "lin", "real", "diag", "legs-ptd"),
    "disc": ("zoh", "bilinear"),
    "dt_transform": ("exp", "softplus"),
    "real_transform": ("exp", "relu", "softplus", "none"),
    "final_act": ("glu", "id"),
    "norm": ("layer", "batch"),
    "pooling": ("mean", "last"),
}

# Float fields: each must be finite (S4DConfig._check).
_FLOAT_FIELDS = ("dt_min", "dt_max", "dropout", "layer_norm_eps", "initializer_range", "ssm_lr", "ssm_weight_decay")
# Largest accepted dt_max: the initial inv_dt of the softplus dt_transform, log(expm1(dt)), overflows float32 at about
# dt = 88 (NaN outputs); every S4D recipe stays far below (dt_max <= 1).
_DT_MAX_LIMIT = 80.0


class S4DConfigFieldError(StrictDataclassFieldValidationError, ValueError, TypeError):
    """A config field of the wrong type (``d_model="16"``, a string where config.json should hold an int).

    huggingface_hub's ``@strict`` raises ``StrictDataclassFieldValidationError``, which is neither a ValueError nor a
    TypeError, with a two-line message. S4DConfig re-raises it as this class: still a
    ``StrictDataclassFieldValidationError``, and also a ValueError and a TypeError (so ``except ValueError`` works),
    with one line naming the field: ``S4DConfig.d_model: Field 'd_model' expected int, got str (value: '16')``.
    """

    def __init__(self, field: str, cause: BaseException | None = None):
        self.field = field
        # args hold the message alone, so that the error pickles (cls(message) rebuilds it)
        Exception.__init__(self, field if cause is None else f"S4DConfig.{field}: {cause}")


# Keys that transformers itself puts in or reads from a config besides its fields and properties: consumed by
# PreTrainedConfig.__post_init__, written by save_pretrained / register_for_auto_class / pipeline registration, or
# carried by configs saved with transformers 4.x. They are never reported as misspellings.
_TRANSFORMERS_KEYS = {
    "auto_map", "custom_pipelines", "model_type", "name_or_path", "_name_or_path", "_commit_hash", "torch_dtype",
    "attn_implementation", "experts_implementation", "per_layer_config", "rope_scaling", "rope_theta",
    "transformers_version", "add_cross_attention", "cross_attention_hidden_size", "decoder_start_token_id",
    "finetuning_task", "is_decoder", "prefix", "pruned_heads", "sep_token_id", "task_specific_params",
    "tf_legacy_loss", "tie_encoder_decoder", "tokenizer_class", "torchscript", "use_bfloat16",
}


def _one_edit_apart(a: str, b: str) -> bool:
    """Whether ``b`` is ``a`` with one character inserted, deleted or replaced, or two adjacent characters swapped
    (Damerau-Levenshtein distance 1: ``d_mode``, ``d_modell``, ``d_modxl`` and ``d_modle`` for ``d_model``)."""
    if a == b or abs(len(a) - len(b)) > 1:
        return False
    if len(a) > len(b):
        a, b = b, a
    i = 0
    while i < len(a) and a[i] == b[i]:
        i += 1
    if len(a) < len(b):
        return a[i:] == b[i + 1 :]
    swapped = a[i : i + 1] == b[i + 1 : i + 2] and a[i + 1 : i + 2] == b[i : i + 1] and a[i + 2 :] == b[i + 2 :]
    return a[i + 1 :] == b[i + 1 :] or swapped


@strict
class S4DConfig(PreTrainedConfig):
    r"""
    Configuration of an S4D model (Gu et al. 2022, "On the Parameterization and Initialization of Diagonal State
    Space Models"). The SSM options keep the names of the reference implementation (state-spaces/s4).

    Inputs (at least one):
        vocab_size (`int`, *optional*): token ids -> an embedding table (language models, byte/char inputs).
        input_dim (`int`, *optional*): channels of continuous inputs -> a linear encoder
            (1 for mono audio, 3 for RGB pixels, C for a C-channel time series).
        With neither set, input_dim becomes 1: `S4DConfig()` describes a model of one continuous channel (mono audio,
        a univariate time series), so that the config constructs from its defaults like every transformers config
        (`AutoConfig.for_model("s4d")`, `to_diff_dict`). Setting vocab_size alone keeps input_dim None (token inputs
        only), as does `"input_dim": null` next to a vocab_size in a saved config.json.

    Keyword arguments that are not fields are kept as attributes (as in every transformers config); one that is a
    single edit away from a field (`d_modle`) is logged as a probable misspelling of it.

    Invalid values raise a ValueError naming the field: every float field must be finite, 0 < dt_min <= dt_max <= 80,
    dropout in [0, 1), layer_norm_eps > 0, initializer_range / ssm_lr / ssm_weight_decay >= 0. A value of the wrong
    type (`d_model="16"`, also from a config.json) raises :class:`S4DConfigFieldError`, a ValueError and TypeError
    that is also huggingface_hub's `StrictDataclassFieldValidationError`, with one line naming the field.

    Backbone:
        d_model (`int`, defaults to 128): features H.
        n_layers (`int`, defaults to 4): S4D blocks.
        d_state (`int`, defaults to 64): state size N. Complex mode stores N/2 conjugate-pair modes, so N must be even.
        dropout (`float`, defaults to 0.0): dropout after the SSM activation and on the residual branch.
        prenorm (`bool`, defaults to False): x + f(norm(x)) instead of norm(x + f(x)).
        final_norm (`bool`, defaults to True): with prenorm, a norm after the last block (the training framework
            has one; example.py does not).
        norm (`str`, defaults to "layer"): "layer" (LayerNorm) or "batch" (BatchNorm1d, as Speech Commands/LRA).
        layer_norm_eps (`float`, defaults to 1e-5).

    SSM:
        init: "legs" (S4D-LegS), "inv" (S4D-Inv), "lin" (S4D-Lin), "real" (S4D-Real), "diag" (half inv, half lin)
            or "legs-ptd" (S4-PTD: perturbed-then-diagonalised HiPPO-LegS, Yu et al. 2024).
        disc: "zoh" or "bilinear".
        dt_min, dt_max: range of the log-uniform initial step size.
        dt_tie (`bool`, defaults to True): one dt per feature (else one per mode).
        dt_transform: "exp" or "softplus" (dt = transform(inv_dt)).
        real_transform: "exp", "relu", "softplus" or "none" (Re A = -transform(A_real)).
        is_real (`bool`): real-valued A, B, C (S4D-Real).
        channels (`int`, defaults to 1): SSM output channels per feature.
        n_ssm (`int`, *optional*): number of independent (A, B) copies, tiled over features as h mod n_ssm;
            None means one per feature.
        bidirectional (`bool`): the reference's two-sided kernel (not usable for generation or streaming).
        l_max (`int`, *optional*): truncate the kernel to min(L, round(l_max / rate)) taps.
        final_act: "glu" (Linear to 2H then GLU) or "id" (Linear to H).

    Heads:
        pooling: "mean" (over valid positions) or "last" (last valid position) for sequence classification.
        num_labels / problem_type / id2label: as in every transformers config.
        tie_word_embeddings (`bool`, defaults to True): tie the LM head to the embeddings.

    Optimisation (read by :func:`s4d_hf.modeling.modeling_s4d.ssm_parameter_groups`):
        ssm_lr (`float`, defaults to 1e-3): learning rate of dt, A and B; they get weight decay `ssm_weight_decay`.
    """

    model_type = "s4d"
    attribute_map = {"hidden_size": "d_model", "num_hidden_layers": "n_layers"}
    keys_to_ignore_at_inference = ["cache"]
    # Called by every __post_init__ while not None: `import s4d_hf` sets it to register the model classes lazily.
    on_init_hook = None

    vocab_size: int | None = None
    input_dim: int | None = None
    d_model: int = 128
    n_layers: int = 4
    d_state: int = 64
    dropout: float | int = 0.0
    prenorm: bool = False
    final_norm: bool = True
    norm: str = "layer"
    layer_norm_eps: float = 1e-5
    init: str = "legs"
    disc: str = "zoh"
    dt_min: float | int = 1e-3
    dt_max: float | int = 1e-1
    dt_tie: bool = True
    dt_transform: str = "exp"
    real_transform: str = "exp"
    is_real: bool = False
    channels: int = 1
    n_ssm: int | None = None
    bidirectional: bool = False
    l_max: int | None = None
    final_act: str = "glu"
    pooling: str = "mean"
    initializer_range: float = 0.02
    ssm_lr: float | int = 1e-3
    ssm_weight_decay: float | int = 0.0
    use_cache: bool = True
    tie_word_embeddings: bool = True
    pad_token_id: int | None = None
    bos_token_id: int | None = None
    eos_token_id: int | list[int] | None = None

    def __post_init__(self, **kwargs):
        if self.vocab_size is None and self.input_dim is None:
            self.input_dim = 1  # the default input kind (see the class docstring)
        self._warn_misspelt(kwargs)
        self._check()
        super().__post_init__(**kwargs)
        if S4DConfig.on_init_hook is not None:
            S4DConfig.on_init_hook()

    def _warn_misspelt(self, kwargs: dict):
        """Log the keyword arguments that are no field, alias or transformers key but one edit away from a field:
        transformers keeps them as attributes that nothing reads, so a typo would otherwise pass silently."""
        names = {f.name for f in fields(self)} | set(self.attribute_map) | {"num_labels"}
        for key in kwargs:
            meant = sorted(name for name in names if _one_edit_apart(key, name))
            if not meant or key in _TRANSFORMERS_KEYS or hasattr(PreTrainedConfig, key):
                continue
            if key in GenerationConfig().to_dict():  # generation keys of older configs, dropped by transformers
                continue
            meant = " or ".join(f"`{name}`" for name in meant)
            logger.warning(
                f"S4DConfig got an unknown keyword argument `{key}`; did you mean {meant}? It is kept as the "
                f"attribute `{key}`, which S4D does not read."
            )

    def _check(self):
        """Raise ValueError naming the first invalid field and what it accepts."""
        for field, allowed in _CHOICES.items():
            value = getattr(self, field)
            if value not in allowed:
                raise ValueError(f"S4DConfig.{field} must be one of {', '.join(map(repr, allowed))}; got {value!r}")
        for field in ("vocab_size", "input_dim", "d_model", "n_layers", "d_state", "channels", "n_ssm", "l_max"):
            value = getattr(self, field)
            if value is not None and value < 1:
                raise ValueError(f"S4DConfig.{field} must be a positive integer; got {value}")
        if not self.is_real and self.d_state % 2:
            raise ValueError(
                f"S4DConfig.d_state must be even in complex mode (N/2 conjugate-pair modes are stored); got "
                f"{self.d_state}. Use an even d_state or is_real=True."
            )
        if self.n_ssm is not None and self.d_model % self.n_ssm:
            raise ValueError(f"S4DConfig.n_ssm must divide d_model={self.d_model}; got n_ssm={self.n_ssm}")
        n_copies = self.d_model if self.n_ssm is None else self.n_ssm
        if self.init == "diag" and n_copies % 2:
            raise ValueError(
                f"S4DConfig.init='diag' splits the (A, B) copies half inv / half lin, so n_ssm (or d_model when "
                f"n_ssm is None) must be even; got {n_copies}"
            )
        for field in _FLOAT_FIELDS:  # inf / NaN anywhere would build a model that computes NaN
            value = getattr(self, field)
            if not math.isfinite(value):
                raise ValueError(f"S4DConfig.{field} must be a finite number; got {value}")
        if not 0 < self.dt_min <= self.dt_max:
            raise ValueError(f"S4DConfig needs 0 < dt_min <= dt_max; got dt_min={self.dt_min}, dt_max={self.dt_max}")
        if self.dt_max > _DT_MAX_LIMIT:
            raise ValueError(
                f"S4DConfig.dt_max must be at most {_DT_MAX_LIMIT:g}; got {self.dt_max}. Larger initial step sizes "
                "overflow float32 (the softplus dt_transform from about 88) and the model returns NaN; S4D recipes "
                "use dt_max <= 1 (default 0.1)."
            )
        if not 0 <= self.dropout < 1:
            raise ValueError(f"S4DConfig.dropout must be in [0, 1); got {self.dropout}")
        if not self.layer_norm_eps > 0:
            raise ValueError(f"S4DConfig.layer_norm_eps must be positive; got {self.layer_norm_eps}")
        for field in ("initializer_range", "ssm_lr", "ssm_weight_decay"):
            if not getattr(self, field) >= 0:
                raise ValueError(f"S4DConfig.{field} must be >= 0; got {getattr(self, field)}")

    @property
    def layer_types(self) -> list[str]:
        """Every block keeps a recurrent state: transformers' DynamicCache builds one linear-attention layer each."""
        return ["linear_attention"] * self.n_layers

    def ssm_kwargs(self) -> dict:
        """The options of one S4D layer (:class:`~s4d_hf.modeling.ssm_s4d.S4DLayer`)."""
        return dict(
            d_state=self.d_state,
            channels=self.channels,
            n_ssm=self.n_ssm,
            init=self.init,
            disc=self.disc,
            dt_min=float(self.dt_min),
            dt_max=float(self.dt_max),
            dt_tie=self.dt_tie,
            dt_transform=self.dt_transform,
            real_transform=self.real_transform,
            is_real=self.is_real,
            bidirectional=self.bidirectional,
        )


def _field_errors_as_value_errors(method):
    """Wrap ``__init__`` / ``__setattr__`` so that @strict's errors reach the user as :class:`S4DConfigFieldError`."""

    @wraps(method)
    def wrapper(self, *args, **kwargs):
        try:
            return method(self, *args, **kwargs)
        except S4DConfigFieldError:
            raise
        except StrictDataclassError as error:
            cause = error.__cause__ if error.__cause__ is not None else error
            field = getattr(error, "field", None) or _field_of(error)
            raise S4DConfigFieldError(field, cause) from None

    return wrapper


def _field_of(error: BaseException) -> str:
    """The field (or validator) named in a huggingface_hub strict-dataclass error message."""
    text = str(error)
    start = text.find("'") + 1
    end = text.find("'", start)
    return text[start:end] if 0 < start <= end else "?"


# __setattr__ covers construction (transformers' __init__ sets every field through it) and later assignments;
# __init__ covers the class validators that @strict runs after construction.
S4DConfig.__setattr__ = _field_errors_as_value_errors(S4DConfig.__setattr__)
S4DConfig.__init__ = _field_errors_as_value_errors(S4DConfig.__init__)


__all__ = ["S4DConfig"]
