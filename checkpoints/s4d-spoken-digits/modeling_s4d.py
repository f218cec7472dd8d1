"""S4D for transformers: backbone, sequence-classification head and causal-LM head.

The SSM math lives in ``ssm_s4d.py``; this file is the transformers plumbing around it, in the order of
transformers' own model files: norm -> block -> PreTrainedModel (initialisation) -> outputs -> backbone -> heads.
The block reproduces the reference ``SequenceResidualBlock`` around ``S4Block(mode='diag')`` (state-spaces/s4).
"""

import math
import sys
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn
from transformers import GenerationMixin, PreTrainedModel
from transformers import initialization as init
from transformers.cache_utils import Cache, DynamicCache
from transformers.modeling_layers import GradientCheckpointingLayer
from transformers.utils import ModelOutput, logging
from transformers.utils.deprecation import deprecate_kwarg

from .configuration_s4d import S4DConfig
from .ssm_kernels_s4d import DecodeCache
from .ssm_s4d import S4DKernel, S4DLayer


logger = logging.get_logger(__name__)

# The first training forwards look for the optimizer in the calling frames (see S4DModel._check_optimizer); a training
# loop builds its optimizer before its first step, so a few forwards are enough.
_OPTIMIZER_CHECK_FORWARDS = 8


class S4DBatchNorm(nn.BatchNorm1d):
    """BatchNorm1d over the features of a (B, L, H) sequence (the reference's ``norm: batch``)."""

    def forward(self, hidden_states: torch.Tensor) -> torch.Tensor:
        return super().forward(hidden_states.transpose(1, 2)).transpose(1, 2)


def make_norm(config: S4DConfig) -> nn.Module:
    if config.norm == "batch":
        return S4DBatchNorm(config.d_model, eps=config.layer_norm_eps)
    return nn.LayerNorm(config.d_model, eps=config.layer_norm_eps)


def apply_mask_to_padding(hidden_states: torch.Tensor, attention_mask: torch.Tensor | None) -> torch.Tensor:
    """Zero the padded positions (mask 0) of (B, L, H) so that they never enter an SSM state or kernel sum.

    With a longer mask than the sequence (cached decoding), its last L entries describe the sequence.
    """
    if attention_mask is None:
        return hidden_states
    mask = attention_mask[:, -hidden_states.shape[1] :]
    return hidden_states * mask[:, :, None].to(hidden_states.dtype)


def values_checkable(tensor: torch.Tensor) -> bool:
    """Whether a check of ``tensor``'s values is free: on the CPU and outside torch.compile. On an accelerator,
    reading a value (``mask.any()``, ``labels.min()``) waits for the device (a host-device sync), so the models check
    values there only where labels are used (the loss), never on the inference path."""
    return tensor.device.type == "cpu" and not torch.compiler.is_compiling()


def check_attention_mask(attention_mask, batch: int, length: int, cached: bool) -> None:
    """The mask's type and shape (free on any device): (batch, length), or (batch, past + length) when a cache is
    passed in (cached decoding: the mask covers the past and the new positions, see :func:`apply_mask_to_padding`)."""
    if attention_mask is None:
        return
    if not isinstance(attention_mask, torch.Tensor):
        raise TypeError(f"attention_mask must be a torch tensor of shape (batch, length); got "
                        f"{type(attention_mask).__name__}")
    if attention_mask.dtype.is_complex:
        raise ValueError(f"attention_mask must hold 0/1 (bool, integer or float); got dtype {attention_mask.dtype}")
    shape = tuple(attention_mask.shape)
    if len(shape) != 2 or shape[0] != batch or shape[1] < length or (shape[1] > length and not cached):
        longer = " or (batch, past + length) with a cache" if cached else ""
        raise ValueError(f"attention_mask must have shape (batch, length) = ({batch}, {length}){longer}, the "
                         f"inputs' batch and length; got {shape}")


def check_attention_mask_values(attention_mask: torch.Tensor, length: int | None = None,
                                need_valid: bool = False) -> None:
    """Every entry used (the last ``length`` columns) is 0 or 1; with ``need_valid``, every row has a 1.
    Reads values: call it where :func:`values_checkable` holds or where labels are used (see there)."""
    mask = attention_mask if length is None else attention_mask[:, -length:]
    if mask.dtype != torch.bool:
        bad = (mask != 0) & (mask != 1)
        if bad.any():
            raise ValueError(f"attention_mask must hold only 0 and 1 (1 = valid position, 0 = padding); got the "
                             f"value {mask[bad][0].item()}")
    if need_valid and mask.dim() == 2 and mask.shape[1] and not mask.bool().any(1).all():
        row = int((~mask.bool().any(1)).nonzero()[0, 0])
        raise ValueError(f"attention_mask row {row} has no valid position (all 0): there is nothing to classify")


def _is_integer(tensor: torch.Tensor) -> bool:
    """Whether ``tensor`` holds integers (not float, complex or bool): what token ids and class indices need."""
    return not (tensor.dtype.is_floating_point or tensor.dtype.is_complex or tensor.dtype == torch.bool)


def _batch_size(*inputs) -> int | None:
    """The batch size of the first tensor given (None when there is none: the backbone then says what is missing)."""
    for x in inputs:
        if isinstance(x, torch.Tensor) and x.dim() > 0:
            return x.shape[0]
    return None


def _can_decode_in_place(state: torch.Tensor, u: torch.Tensor) -> bool:
    """Whether a decoding step may take ``S4DBlock._decode`` (in-place, precomputed, not differentiable): no
    gradient recorded, no autocast, not traced by torch.compile/export, and the cache's usual contiguous complex64
    state. Otherwise ``S4DLayer.step`` runs (the same numbers)."""
    return (not torch.is_grad_enabled() and state.dtype == torch.complex64 and state.is_contiguous()
            and not torch.is_autocast_enabled(u.device.type) and not torch.compiler.is_compiling())


class S4DBlock(GradientCheckpointingLayer):
    """Residual block: pre-norm  x + dropout(S4D(norm(x)))  or post-norm  norm(x + dropout(S4D(x)))."""

    def __init__(self, config: S4DConfig, layer_idx: int):
        super().__init__()
        self.layer_idx = layer_idx
        self.prenorm = config.prenorm
        self.norm = make_norm(config)
        self.mixer = S4DLayer(
            config.d_model, final_act=config.final_act, dropout=config.dropout, l_max=config.l_max,
            **config.ssm_kwargs(),
        )
        self.dropout = nn.Dropout(config.dropout)

    def forward(
        self,
        hidden_states: torch.Tensor,
        attention_mask: torch.Tensor | None = None,
        cache: Cache | None = None,
        rate: float = 1.0,
    ) -> torch.Tensor:
        if cache is not None and hidden_states.shape[1] == 1 and not self.training:
            state = cache.get_recurrent_state(self.layer_idx)
            if state is not None and _can_decode_in_place(state, hidden_states):
                return self._decode(hidden_states, attention_mask, state, cache.layers[self.layer_idx], rate)
        residual = hidden_states
        u = self.norm(hidden_states) if self.prenorm else hidden_states
        u = apply_mask_to_padding(u, attention_mask)
        if cache is None:
            y, _ = self.mixer(u, rate=rate)
        else:
            state = cache.get_recurrent_state(self.layer_idx)
            if state is not None and u.shape[1] == 1:  # decoding under autograd, autocast, compile, or in training
                y, state = self.mixer.step(u[:, 0], state, rate=rate)
                y = y[:, None]
            else:  # prefill (or several new tokens): convolution, plus the final state by state forwarding
                y, state = self.mixer(u, state=state, rate=rate, return_state=True)
            cache.update_recurrent_state(state, self.layer_idx)
            cache.layers[self.layer_idx].has_previous_state[0] = True  # get_recurrent_state: None until set
        hidden_states = residual + self.dropout(y)
        return hidden_states if self.prenorm else self.norm(hidden_states)

    def _decode(self, hidden_states: torch.Tensor, attention_mask: torch.Tensor | None, state: torch.Tensor,
                cache_layer, rate: float) -> torch.Tensor:
        """The block for one new token (B, 1, H) in eval mode, the generation step: the same numbers as
        :meth:`forward`, with the recurrent step on the cache's own state tensor, in place, and Ā, B̄, C, D prepared
        once per cache (``S4DLayer.decode_step``, kept in ``cache_layer`` under ``s4d_decode``); nothing to write
        back. Written as a short chain of tensor calls (no module calls, no dropout: eval mode), since at batch 1 the
        time of a step is the number of calls rather than their arithmetic."""
        store = cache_layer.__dict__.get("s4d_decode") or cache_layer.__dict__.setdefault("s4d_decode", DecodeCache())
        u = self._decode_norm(hidden_states) if self.prenorm else hidden_states
        if attention_mask is not None:
            u = u * attention_mask[:, -1:, None].to(u.dtype)
        hidden_states = hidden_states + self.mixer.decode_step(u, state, store, rate)
        return hidden_states if self.prenorm else self._decode_norm(hidden_states)

    def _decode_norm(self, x: torch.Tensor) -> torch.Tensor:
        """The block's norm of (B, 1, H), a LayerNorm without its module call."""
        norm = self.norm
        if isinstance(norm, nn.LayerNorm):
            return F.layer_norm(x, norm.normalized_shape, norm.weight, norm.bias, norm.eps)
        return norm(x)


class S4DPreTrainedModel(PreTrainedModel):
    config_class = S4DConfig
    base_model_prefix = "s4d"
    main_input_name = "input_ids"
    supports_gradient_checkpointing = True
    _no_split_modules = ["S4DBlock"]
    _is_stateful = True
    # SSM parameters stay float32 when loading with dtype=bfloat16/float16 (the kernel math needs them).
    _keep_in_fp32_modules_strict = ["kernel", "mixer.D"]

    def save_pretrained(self, save_directory, *args, **kwargs):
        """As transformers', and when the classes are registered for remote code, list every S4D Auto class in
        ``auto_map`` (transformers only lists the saved class), so any head loads the folder with
        trust_remote_code=True, including through the audio and image pipelines, which load the model with
        AutoModelForAudioClassification / AutoModelForImageClassification."""
        if getattr(type(self), "_auto_class", None) is not None:
            module = S4DModel.__module__.split(".")[-1]
            classifier = f"{module}.S4DForSequenceClassification"
            auto_map = {"AutoConfig": f"{S4DConfig.__module__.split('.')[-1]}.S4DConfig",
                        "AutoModel": f"{module}.S4DModel",
                        "AutoModelForSequenceClassification": classifier,
                        "AutoModelForAudioClassification": classifier,
                        "AutoModelForImageClassification": classifier}
            if self.config.vocab_size is not None and not self.config.bidirectional:
                auto_map["AutoModelForCausalLM"] = f"{module}.S4DForCausalLM"
            self.config.auto_map = {**(getattr(self.config, "auto_map", None) or {}), **auto_map}
        return super().save_pretrained(save_directory, *args, **kwargs)

    @torch.no_grad()
    def _init_weights(self, module):
        """The only place where weights are initialised. ``init.*`` skips tensors already loaded from a checkpoint."""
        super()._init_weights(module)
        if isinstance(module, S4DKernel):
            for name, value in module.initial_values().items():
                init.copy_(getattr(module, name), value)
        elif isinstance(module, S4DLayer):
            init.normal_(module.D, 0.0, 1.0)
        elif isinstance(module, nn.BatchNorm1d):
            init.ones_(module.weight)
            init.zeros_(module.bias)
            init.zeros_(module.running_mean)
            init.ones_(module.running_var)


@dataclass
class S4DModelOutput(ModelOutput):
    """
    last_hidden_state (`torch.FloatTensor` of shape `(batch_size, sequence_length, d_model)`): the backbone output.
    cache (`Cache`, *optional*): every layer's SSM state after the sequence (with `use_cache=True`).
    hidden_states (`tuple(torch.FloatTensor)`, *optional*): the input of every block and the final output
        (n_layers + 1 tensors).
    attentions: always None. S4D has no attention, so `output_attentions=True` is accepted and returns nothing (as
        transformers' Mamba); the field exists so that code reading `outputs.attentions`, e.g.
        `generate(output_attentions=True, return_dict_in_generate=True)`, gets None instead of an AttributeError.
        The same holds for the heads' outputs.
    """

    last_hidden_state: torch.FloatTensor | None = None
    cache: Cache | None = None
    hidden_states: tuple[torch.FloatTensor, ...] | None = None
    attentions: tuple[torch.FloatTensor, ...] | None = None


@dataclass
class S4DSequenceClassifierOutput(ModelOutput):
    loss: torch.FloatTensor | None = None
    logits: torch.FloatTensor | None = None
    hidden_states: tuple[torch.FloatTensor, ...] | None = None
    attentions: tuple[torch.FloatTensor, ...] | None = None  # always None (see S4DModelOutput)


@dataclass
class S4DCausalLMOutput(ModelOutput):
    loss: torch.FloatTensor | None = None
    logits: torch.FloatTensor | None = None
    cache: Cache | None = None
    hidden_states: tuple[torch.FloatTensor, ...] | None = None
    attentions: tuple[torch.FloatTensor, ...] | None = None  # always None (see S4DModelOutput)


class S4DModel(S4DPreTrainedModel):
    """The S4D backbone: encoder (token embedding and/or linear projection of continuous inputs) -> blocks ->
    final norm (pre-norm models with ``final_norm``)."""

    _optimizer_checks_left = _OPTIMIZER_CHECK_FORWARDS  # per instance once decremented by _check_optimizer

    def __init__(self, config: S4DConfig):
        super().__init__(config)
        self.embeddings = nn.Embedding(config.vocab_size, config.d_model) if config.vocab_size else None
        self.input_proj = nn.Linear(config.input_dim, config.d_model) if config.input_dim else None
        self.layers = nn.ModuleList([S4DBlock(config, i) for i in range(config.n_layers)])
        self.norm_f = make_norm(config) if config.prenorm and config.final_norm else None
        self.gradient_checkpointing = False
        self.post_init()

    def get_input_embeddings(self):
        return self.embeddings

    def set_input_embeddings(self, new_embeddings):
        self.embeddings = new_embeddings

    def embed(
        self,
        input_ids: torch.LongTensor | None = None,
        inputs_embeds: torch.FloatTensor | None = None,
        input_values: torch.FloatTensor | None = None,
        pixel_values: torch.FloatTensor | None = None,
    ) -> torch.Tensor:
        """Turn exactly one kind of input into (B, L, d_model), with errors that say what was expected."""
        given = {k: v for k, v in dict(input_ids=input_ids, inputs_embeds=inputs_embeds, input_values=input_values,
                                       pixel_values=pixel_values).items() if v is not None}
        if len(given) != 1:
            raise ValueError(
                "S4DModel expects exactly one of input_ids, inputs_embeds, input_values, pixel_values; "
                f"got {sorted(given) or 'none'}"
            )
        (name, x), = given.items()
        length = x.shape[2] * x.shape[3] if name == "pixel_values" and x.dim() == 4 else x.shape[1] if x.dim() > 1 else 1
        if x.dim() > 1 and (x.shape[0] == 0 or length == 0):  # batch 0 or L = 0: refused for every head and generate()
            empty = "batch size 0" if x.shape[0] == 0 else "an empty sequence (length 0)"
            raise ValueError(f"{name} has shape {tuple(x.shape)}: {empty}; S4D needs at least one sequence of "
                             "length >= 1")
        if name == "input_ids":
            if self.embeddings is None:
                raise ValueError("input_ids given but this model has no token embedding (config.vocab_size is None); "
                                 f"pass input_values of shape (batch, length, {self.config.input_dim})")
            if x.dim() != 2:
                raise ValueError(f"input_ids must have shape (batch, length); got {tuple(x.shape)}")
            if not _is_integer(x):
                raise ValueError(f"input_ids must hold integer token ids (torch.long); got dtype {x.dtype}")
            vocab = self.embeddings.num_embeddings
            if values_checkable(x):  # on an accelerator: the device's own assert
                low, high = torch.aminmax(x)  # one reduction: every decoding step passes here
                if int(low) < 0 or int(high) >= vocab:
                    bad = x[(x < 0) | (x >= vocab)][0].item()
                    raise ValueError(f"input_ids must be token ids in [0, {vocab}) (vocab_size); got {bad}")
            return self.embeddings(x)
        if name == "inputs_embeds":
            if x.dim() != 3 or x.shape[-1] != self.config.d_model:
                raise ValueError(f"inputs_embeds must have shape (batch, length, {self.config.d_model}); "
                                 f"got {tuple(x.shape)}")
            return x
        if self.input_proj is None:
            raise ValueError(f"{name} given but this model has no continuous-input encoder (config.input_dim is "
                             "None); pass input_ids")
        C = self.config.input_dim
        if name == "pixel_values" and x.dim() == 4:  # (B, C, H, W) -> raster-order pixel sequence (B, H·W, C)
            x = x.flatten(2).transpose(1, 2)
        if x.dim() == 2 and C == 1:
            x = x[..., None]
        if x.dim() != 3 or x.shape[-1] != C:
            expected = f"(batch, length, {C})" + (" or (batch, length)" if C == 1 else "")
            if name == "pixel_values":
                expected += f" or (batch, {C}, height, width)"
            raise ValueError(f"{name} must have shape {expected}; got {tuple(x.shape)}")
        if not torch.is_floating_point(x):
            x = x.float()
        return self.input_proj(x.to(self.input_proj.weight.dtype))

    @deprecate_kwarg("cache_params", version="5.40.0", new_name="cache", raise_if_both_names=True,
                     warn_if_greater_or_equal_version=True)
    def forward(
        self,
        input_ids: torch.LongTensor | None = None,
        attention_mask: torch.Tensor | None = None,
        inputs_embeds: torch.FloatTensor | None = None,
        input_values: torch.FloatTensor | None = None,
        pixel_values: torch.FloatTensor | None = None,
        cache: Cache | None = None,
        use_cache: bool | None = None,
        output_hidden_states: bool | None = None,
        return_dict: bool | None = None,
        rate: float | None = None,
        **kwargs,
    ) -> tuple | S4DModelOutput:
        r"""
        input_values (`torch.FloatTensor` of shape `(batch_size, length, input_dim)`, or `(batch_size, length)`
            when input_dim is 1): continuous inputs (raw waveform, time series).
        pixel_values (`torch.FloatTensor` of shape `(batch_size, input_dim, height, width)` or
            `(batch_size, height*width, input_dim)`): an image read as a raster-order pixel sequence.
        attention_mask (`torch.Tensor` of shape `(batch_size, length)`): 1 for valid positions, 0 for padding.
            Padded positions are zeroed at every layer's SSM input. A longer mask (past + new positions) is accepted
            only with a `cache` passed in (cached decoding). Its shape is always checked; its values (0/1 only) when
            it is on the CPU, or, in the heads, when labels are given: on an accelerator a value check waits for the
            device, so the inference path skips it.
        cache (`Cache`): the per-layer SSM states to continue from (generation, streaming). The deprecated name
            `cache_params` (transformers' Mamba before 5.x) is accepted with a FutureWarning.
        rate (`float`): multiplies every step size dt (paper §3.3: a model trained at 16 kHz runs on 8 kHz audio
            with rate=2).
        """
        output_hidden_states = (
            output_hidden_states if output_hidden_states is not None else self.config.output_hidden_states
        )
        return_dict = return_dict if return_dict is not None else self.config.return_dict
        rate = 1.0 if rate is None else float(rate)
        if not (rate > 0 and math.isfinite(rate)):
            raise ValueError(f"rate must be a positive finite number; got {rate}")
        hidden_states = self.embed(input_ids, inputs_embeds, input_values, pixel_values)
        # Validation before anything changes state (cache reset, BatchNorm statistics, the optimizer check): the mask's
        # shape always; its values only where that is free (values_checkable), the heads check them when labels are
        # given. A mask longer than the inputs is accepted only with a cache passed in (past + new positions).
        batch, length = hidden_states.shape[:2]
        check_attention_mask(attention_mask, batch, length, cached=cache is not None)
        block_mask = attention_mask  # what the blocks apply (apply_mask_to_padding)
        if attention_mask is not None and values_checkable(attention_mask):
            if attention_mask[:, -length:].eq(1).all():  # all valid: multiplying by it changes nothing (decoding)
                block_mask = None
            else:
                check_attention_mask_values(attention_mask, length)
        # is_compiling() first: under torch.compile the changing counter must not be read (a guard on its value
        # would recompile the model on every training step)
        if not torch.compiler.is_compiling() and self.training and self._optimizer_checks_left and \
                torch.is_grad_enabled():
            self._check_optimizer()

        if use_cache is None:
            use_cache = self.config.use_cache and not self.training and cache is not None
        if self.gradient_checkpointing and self.training:
            use_cache = False
        if use_cache or cache is not None:
            if self.config.bidirectional:
                raise ValueError("a bidirectional S4D model has no recurrent state: use_cache/cache are unsupported")
            if cache is None:
                cache = DynamicCache(config=self.config)
            elif self._restarts(cache, hidden_states, attention_mask):
                cache.reset()

        all_hidden_states = () if output_hidden_states else None
        for block in self.layers:
            if output_hidden_states:
                all_hidden_states += (hidden_states,)
            hidden_states = block(hidden_states, block_mask, cache, rate)
        if self.norm_f is not None:
            hidden_states = self.norm_f(hidden_states)
        if output_hidden_states:
            all_hidden_states += (hidden_states,)

        if not return_dict:
            return tuple(v for v in (hidden_states, cache, all_hidden_states) if v is not None)
        return S4DModelOutput(last_hidden_state=hidden_states, cache=cache, hidden_states=all_hidden_states)

    @staticmethod
    def _restarts(cache: Cache, hidden_states: torch.Tensor, attention_mask: torch.Tensor | None) -> bool:
        """transformers' rule for a cache passed back in: with a populated state, two or more new positions whose
        mask is no longer than them (or no mask) are the whole sequence again (restart from zero); a longer mask
        means the new positions continue the cached ones."""
        if not cache.layers or not cache.has_previous_state(0):
            return False
        L = hidden_states.shape[1]
        return L > 1 and (attention_mask is None or attention_mask.shape[1] <= L)

    def _check_optimizer(self):
        """Warn once when the optimizer training this model treats dt, A and B like any other weight, as a plain
        ``transformers.Trainer`` or ``AdamW(model.parameters())`` does: they then share a group with the other
        weights, at the main learning rate and its weight decay, where the S4D recipe gives them ``config.ssm_lr``
        and ``config.ssm_weight_decay`` (0) and S4D trains markedly worse otherwise (paper, App. B).

        Nothing links a parameter to its optimizer, so the optimizer is looked for, read-only, among the local
        variables of the calling frames (:func:`_find_calling_optimizer`: a Trainer's ``self.optimizer``, a training
        script's ``optimizer``). Run on training forwards until one holding the SSM parameters is found, at most
        ``_OPTIMIZER_CHECK_FORWARDS`` times; nothing is said when none is found (FSDP/DeepSpeed flatten parameters).
        """
        self._optimizer_checks_left -= 1
        ssm = {id(p) for p in ssm_parameters(self) if p.requires_grad}
        optimizer = _find_calling_optimizer(ssm) if ssm else None
        if optimizer is None:
            return
        self._optimizer_checks_left = 0
        ssm_lr, ssm_weight_decay = float(self.config.ssm_lr), float(self.config.ssm_weight_decay)
        for group in optimizer.param_groups:
            params = group["params"]
            if not any(id(p) in ssm for p in params) or all(id(p) in ssm for p in params):
                continue  # a group of SSM parameters only: they were put there on purpose
            lr = group.get("initial_lr", group.get("lr"))  # initial_lr: the value before a scheduler's warmup
            weight_decay = group.get("weight_decay", 0.0)
            if weight_decay != ssm_weight_decay or lr != ssm_lr:
                logger.warning(
                    f"The optimizer trains the S4D parameters dt, A and B together with other weights, at lr={lr} "
                    f"and weight_decay={weight_decay}; S4D trains them at config.ssm_lr={ssm_lr} with weight decay "
                    f"{ssm_weight_decay} (S4D paper, App. B) and trains markedly worse otherwise. Use "
                    "s4d_hf.trainer.S4DTrainer instead of transformers.Trainer, pass "
                    "optimizers=(s4d_hf.trainer.s4d_optimizer(model, args), None) to Trainer, or build your "
                    "optimizer from s4d_hf.ssm_parameter_groups(model, lr, weight_decay)."
                )
                return


def pool(hidden_states: torch.Tensor, attention_mask: torch.Tensor | None, mode: str) -> torch.Tensor:
    """(B, L, H) -> (B, H): mean over valid positions, or the last valid position."""
    if attention_mask is None:
        return hidden_states.mean(1) if mode == "mean" else hidden_states[:, -1]
    mask = attention_mask[:, -hidden_states.shape[1] :].to(hidden_states.dtype)
    if mode == "mean":
        return (hidden_states * mask[..., None]).sum(1) / mask.sum(1, keepdim=True).clamp(min=1)
    last = hidden_states.shape[1] - 1 - mask.flip(-1).argmax(-1)
    return hidden_states[torch.arange(hidden_states.shape[0], device=hidden_states.device), last]


class S4DForSequenceClassification(S4DPreTrainedModel):
    """S4D backbone -> pooling (config.pooling) -> linear classifier. Serves classification (single and
    multi-label) and regression (num_labels outputs, problem_type="regression")."""

    accepts_loss_kwargs = False  # our losses are batch means: Trainer must keep dividing by accumulation steps

    def __init__(self, config: S4DConfig):
        super().__init__(config)
        self.s4d = S4DModel(config)
        self.classifier = nn.Linear(config.d_model, config.num_labels)
        if config.input_dim is not None:
            self.main_input_name = "input_values"
        self.post_init()

    def get_input_embeddings(self):
        return self.s4d.get_input_embeddings()

    def set_input_embeddings(self, new_embeddings):
        self.s4d.set_input_embeddings(new_embeddings)

    def forward(
        self,
        input_ids: torch.LongTensor | None = None,
        attention_mask: torch.Tensor | None = None,
        inputs_embeds: torch.FloatTensor | None = None,
        input_values: torch.FloatTensor | None = None,
        pixel_values: torch.FloatTensor | None = None,
        labels: torch.Tensor | None = None,
        output_hidden_states: bool | None = None,
        return_dict: bool | None = None,
        rate: float | None = None,
        **kwargs,
    ) -> tuple | S4DSequenceClassifierOutput:
        r"""
        labels (`torch.Tensor` of shape `(batch_size,)` or `(batch_size, num_labels)`): class indices
            (single-label), multi-hot vectors (multi-label) or targets (regression).
        """
        return_dict = return_dict if return_dict is not None else self.config.return_dict
        # Labels and mask values are checked before the backbone runs, so that a call that raises changes nothing
        # (BatchNorm statistics in training mode, config.problem_type).
        problem_type = None
        if labels is not None:
            batch = _batch_size(input_ids, inputs_embeds, input_values, pixel_values)
            problem_type = self.check_labels(labels, batch)
        if isinstance(attention_mask, torch.Tensor) and (labels is not None or values_checkable(attention_mask)):
            check_attention_mask_values(attention_mask, need_valid=True)
        outputs = self.s4d(
            input_ids=input_ids, attention_mask=attention_mask, inputs_embeds=inputs_embeds,
            input_values=input_values, pixel_values=pixel_values, use_cache=False,
            output_hidden_states=output_hidden_states, return_dict=True, rate=rate,
        )
        pooled = pool(outputs.last_hidden_state, attention_mask, self.config.pooling)
        logits = self.classifier(pooled).float()
        loss = None if labels is None else self.classification_loss(logits, labels, problem_type)
        if not return_dict:
            return tuple(v for v in (loss, logits, outputs.hidden_states) if v is not None)
        return S4DSequenceClassifierOutput(loss=loss, logits=logits, hidden_states=outputs.hidden_states)

    def check_labels(self, labels: torch.Tensor, batch: int | None) -> str:
        """Validate ``labels`` for ``batch`` examples and return the problem type, inferred as transformers' heads do
        when config.problem_type is None (num_labels 1: regression; integer labels: single-label; otherwise
        multi-label) but into a local value: the config is only updated once the loss is computed.

        * single_label_classification: integer class indices of shape (batch,) in [0, num_labels), or -100
          (ignored by the cross-entropy, as in transformers). Float labels are refused (``labels.long()``).
        * multi_label_classification: (batch, num_labels) targets in [0, 1] (multi-hot, bool, or soft).
        * regression: finite numbers (float or integer) of shape (batch,) / (batch, 1) for one output, else
          (batch, num_labels).

        Raises a ValueError (TypeError for a non-tensor) naming ``labels`` and what was expected. Reads the labels'
        values (a host-device sync on an accelerator), which is why it runs only when labels are given.
        """
        config, n = self.config, self.config.num_labels
        if not isinstance(labels, torch.Tensor):
            raise TypeError(f"labels must be a torch tensor; got {type(labels).__name__}")
        integer = _is_integer(labels)
        if labels.dtype.is_complex:
            raise ValueError(f"labels must be real numbers; got dtype {labels.dtype}")
        problem_type = config.problem_type
        if problem_type is None:
            problem_type = ("regression" if n == 1 else "single_label_classification" if integer
                            else "multi_label_classification")
        shape, B = tuple(labels.shape), "batch" if batch is None else batch
        if problem_type == "single_label_classification":
            if not integer:
                raise ValueError(
                    f"labels for single_label_classification must be integer class indices in [0, {n}); got dtype "
                    f"{labels.dtype}. Use labels.long(), or problem_type='multi_label_classification' (multi-hot "
                    "targets) or 'regression'."
                )
            if labels.dim() not in (1, 2) or (labels.dim() == 2 and shape[1] != 1) or (
                    batch is not None and shape[0] != batch):
                raise ValueError(f"labels for single_label_classification must have shape (batch,) = ({B},); got "
                                 f"{shape}")
            bad = ((labels < 0) | (labels >= n)) & (labels != -100)
            if bad.any():
                raise ValueError(f"labels must be class indices in [0, {n}) (num_labels={n}) or -100 (ignored); "
                                 f"got {labels[bad][0].item()}")
            return problem_type
        if problem_type == "multi_label_classification":
            if labels.dim() != 2 or shape[1] != n or (batch is not None and shape[0] != batch):
                raise ValueError(f"labels for multi_label_classification must have shape (batch, num_labels) = "
                                 f"({B}, {n}); got {shape}")
            if labels.dtype != torch.bool:
                bad = ~((labels >= 0) & (labels <= 1))  # NaN is bad too
                if bad.any():
                    raise ValueError(f"labels for multi_label_classification must be targets in [0, 1] (multi-hot); "
                                     f"got {labels[bad][0].item()}")
            return problem_type
        if problem_type != "regression":
            raise ValueError(f"config.problem_type must be 'regression', 'single_label_classification' or "
                             f"'multi_label_classification'; got {problem_type!r}")
        if labels.dtype == torch.bool:
            raise ValueError("labels for regression must be numbers (float or integer); got dtype torch.bool")
        expected = [(B,), (B, 1)] if n == 1 else [(B, n)]
        if labels.dim() not in (1, 2) or (batch is not None and shape not in expected) or (
                batch is None and shape[1:] not in [e[1:] for e in expected]):
            raise ValueError(f"labels for regression must have shape {' or '.join(map(str, expected))}; got {shape}")
        if labels.dtype.is_floating_point and not torch.isfinite(labels).all():
            raise ValueError("labels for regression must be finite numbers; got NaN or inf")
        return problem_type

    def classification_loss(self, logits: torch.Tensor, labels: torch.Tensor,
                            problem_type: str | None = None) -> torch.Tensor:
        """MSE (regression), cross-entropy (single-label) or BCE-with-logits (multi-label), as transformers' heads.
        Without ``problem_type`` the labels are validated by :meth:`check_labels` (which infers it when
        config.problem_type is None). Once the loss is computed, an inferred problem type is recorded in the config,
        as transformers' heads do; a call that raises leaves the config unchanged."""
        config = self.config
        if problem_type is None:
            problem_type = self.check_labels(labels, logits.shape[0])
        labels = labels.to(logits.device)
        if problem_type == "regression":
            if config.num_labels == 1:
                loss = F.mse_loss(logits.squeeze(-1), labels.float().reshape(-1))
            else:
                loss = F.mse_loss(logits, labels.float().reshape(logits.shape))
        elif problem_type == "single_label_classification":
            loss = F.cross_entropy(logits.view(-1, config.num_labels), labels.view(-1).long())
        else:
            loss = F.binary_cross_entropy_with_logits(logits, labels.float())
        if config.problem_type is None:
            config.problem_type = problem_type
        return loss


class S4DForCausalLM(S4DPreTrainedModel, GenerationMixin):
    """S4D language model. ``generate()`` prefills the prompt by convolution (final states by state forwarding),
    then decodes each new token with one recurrent step: O(1) time and memory per token in the context length."""

    _tied_weights_keys = {"lm_head.weight": "s4d.embeddings.weight"}

    def __init__(self, config: S4DConfig):
        super().__init__(config)
        if config.vocab_size is None:
            raise ValueError("S4DForCausalLM needs config.vocab_size (token inputs and a vocabulary to predict)")
        if config.bidirectional:
            raise ValueError("S4DForCausalLM needs a causal model: config.bidirectional must be False")
        self.s4d = S4DModel(config)
        self.lm_head = nn.Linear(config.d_model, config.vocab_size, bias=False)
        self.post_init()

    def get_input_embeddings(self):
        return self.s4d.get_input_embeddings()

    def set_input_embeddings(self, new_embeddings):
        self.s4d.set_input_embeddings(new_embeddings)

    def get_output_embeddings(self):
        return self.lm_head

    def set_output_embeddings(self, new_embeddings):
        self.lm_head = new_embeddings

    def prepare_inputs_for_generation(self, input_ids: torch.LongTensor, next_sequence_length: int | None = None,
                                      cache: Cache | None = None, attention_mask: torch.Tensor | None = None,
                                      **kwargs) -> dict:
        """generate()'s per-token inputs. For a decoding step with a cache: the last token, the cache, the mask and
        the other generation kwargs (``rate``, ``use_cache``, ``logits_to_keep``), which is what transformers'
        version returns for S4D (no position ids, no 4-D masks) without its per-token work: among it an
        ``inspect.signature`` of ``forward`` on every token of a model registered for remote code, as S4D is.
        Otherwise (prefill, no cache) transformers' version."""
        if cache is None or next_sequence_length != 1 or kwargs.get("is_first_iteration"):
            return super().prepare_inputs_for_generation(input_ids, next_sequence_length=next_sequence_length,
                                                         cache=cache, attention_mask=attention_mask, **kwargs)
        inputs = {key: value for key, value in kwargs.items() if key not in ("labels", "inputs_embeds",
                                                                               "is_first_iteration")}
        inputs.update(input_ids=input_ids[:, -1:], cache=cache)
        if attention_mask is not None:
            inputs["attention_mask"] = attention_mask
        return inputs

    @deprecate_kwarg("cache_params", version="5.40.0", new_name="cache", raise_if_both_names=True,
                     warn_if_greater_or_equal_version=True)
    def forward(
        self,
        input_ids: torch.LongTensor | None = None,
        attention_mask: torch.Tensor | None = None,
        inputs_embeds: torch.FloatTensor | None = None,
        cache: Cache | None = None,
        labels: torch.LongTensor | None = None,
        use_cache: bool | None = None,
        output_hidden_states: bool | None = None,
        return_dict: bool | None = None,
        rate: float | None = None,
        logits_to_keep: int = 0,
        **kwargs,
    ) -> tuple | S4DCausalLMOutput:
        r"""
        labels (`torch.LongTensor` of shape `(batch_size, length)`): next-token targets, shifted inside the loss
            (as every transformers causal LM); -100 is ignored.
        logits_to_keep (`int`): if > 0, only the last `logits_to_keep` positions get logits.
        cache (`Cache`): as in :meth:`S4DModel.forward` (`cache_params` is its deprecated name).
        """
        return_dict = return_dict if return_dict is not None else self.config.return_dict
        if labels is not None:  # checked before the backbone runs: a call that raises changes nothing (cache included)
            self.check_labels(labels, input_ids if input_ids is not None else inputs_embeds, logits_to_keep,
                              kwargs.get("ignore_index", -100))
            if isinstance(attention_mask, torch.Tensor):
                check_attention_mask_values(attention_mask)
        outputs = self.s4d(
            input_ids=input_ids, attention_mask=attention_mask, inputs_embeds=inputs_embeds, cache=cache,
            use_cache=use_cache, output_hidden_states=output_hidden_states, return_dict=True, rate=rate,
        )
        hidden_states = outputs.last_hidden_state
        if logits_to_keep:
            hidden_states = hidden_states[:, -logits_to_keep:]
        logits = self.lm_head(hidden_states).float()
        loss = None
        if labels is not None:
            loss = self.loss_function(logits=logits, labels=labels, vocab_size=self.config.vocab_size, **kwargs)
        if not return_dict:
            return tuple(v for v in (loss, logits, outputs.cache, outputs.hidden_states) if v is not None)
        return S4DCausalLMOutput(loss=loss, logits=logits, cache=outputs.cache, hidden_states=outputs.hidden_states)

    def check_labels(self, labels, inputs: torch.Tensor | None, logits_to_keep: int = 0,
                     ignore_index: int = -100) -> None:
        """Next-token labels: integer ids of the inputs' shape (batch, length), each in [0, vocab_size) or
        ``ignore_index`` (-100). Raises a ValueError (TypeError for a non-tensor) naming ``labels``. Reads the labels'
        values (a host-device sync on an accelerator), so it runs only when labels are given."""
        if not isinstance(labels, torch.Tensor):
            raise TypeError(f"labels must be a torch tensor of token ids; got {type(labels).__name__}")
        if not _is_integer(labels):
            raise ValueError(f"labels must hold integer token ids (torch.long) or {ignore_index}; got dtype "
                             f"{labels.dtype}")
        if isinstance(inputs, torch.Tensor) and inputs.dim() >= 2:
            expected = tuple(inputs.shape[:2])
            if tuple(labels.shape) != expected:
                raise ValueError(f"labels must have the inputs' shape (batch, length) = {expected}; got "
                                 f"{tuple(labels.shape)}")
            if logits_to_keep and logits_to_keep < expected[1]:
                raise ValueError(f"labels need logits at every position; logits_to_keep={logits_to_keep} keeps "
                                 f"only the last {logits_to_keep} of {expected[1]}")
        vocab = self.config.vocab_size
        bad = ((labels < 0) | (labels >= vocab)) & (labels != ignore_index)
        if bad.any():
            raise ValueError(f"labels must be token ids in [0, {vocab}) (vocab_size) or {ignore_index} (ignored); "
                             f"got {labels[bad][0].item()}")


def ssm_parameters(model: nn.Module) -> list[nn.Parameter]:
    """dt, A and B of every S4D kernel in ``model`` (``inv_dt``, ``A_real``, ``A_imag``, ``B``; C is an ordinary
    weight): the parameters that the S4D recipe trains at their own learning rate without weight decay."""
    return [param for module in model.modules() if isinstance(module, S4DKernel)
            for name, param in module.named_parameters(recurse=False) if name != "C"]


def _find_calling_optimizer(param_ids: set[int], max_frames: int = 64) -> torch.optim.Optimizer | None:
    """The first optimizer holding one of ``param_ids`` among the local variables of the calling frames, and the
    attributes of their ``self`` (Trainer.compute_loss -> ``self.optimizer``). Reads only: no call, no hook."""
    frame = sys._getframe(1)
    for _ in range(max_frames):
        if frame is None:
            return None
        variables = frame.f_locals
        candidates = list(variables.values())
        attributes = getattr(variables.get("self"), "__dict__", None)
        if isinstance(attributes, dict):
            candidates += list(attributes.values())
        for value in candidates:
            if isinstance(value, torch.optim.Optimizer) and any(
                id(p) in param_ids for group in value.param_groups for p in group["params"]
            ):
                return value
        frame = frame.f_back
    return None


def ssm_parameter_groups(model: nn.Module, lr: float, weight_decay: float = 0.0,
                         ssm_lr: float | None = None, ssm_weight_decay: float | None = None) -> list[dict]:
    """Optimizer parameter groups with the reference's treatment of the SSM (S4D paper, App. B):

    * dt, A and B (``inv_dt``, ``A_real``, ``A_imag``, ``B``): learning rate ``ssm_lr`` (config.ssm_lr by default)
      and weight decay ``ssm_weight_decay`` (0 by default);
    * biases and norm parameters: ``lr``, no weight decay;
    * everything else (C, D, linear and embedding weights): ``lr`` and ``weight_decay``.

    Works on any module containing S4D layers (a bare model, a DDP/Accelerate wrapper's inner model).
    """
    config = getattr(model, "config", None)
    ssm_lr = ssm_lr if ssm_lr is not None else float(getattr(config, "ssm_lr", lr))
    ssm_weight_decay = ssm_weight_decay if ssm_weight_decay is not None else float(
        getattr(config, "ssm_weight_decay", 0.0))
    ssm, no_decay, decay = [], [], []
    ssm_ids = {id(p) for p in ssm_parameters(model)}
    norm_types = (nn.LayerNorm, nn.BatchNorm1d)
    seen = set()
    for module in model.modules():
        for name, param in module.named_parameters(recurse=False):
            if not param.requires_grad or id(param) in seen:
                continue
            seen.add(id(param))
            if id(param) in ssm_ids:
                ssm.append(param)
            elif isinstance(module, norm_types) or name == "bias":
                no_decay.append(param)
            else:
                decay.append(param)
    groups = [
        {"params": decay, "lr": lr, "weight_decay": weight_decay},
        {"params": no_decay, "lr": lr, "weight_decay": 0.0},
        {"params": ssm, "lr": ssm_lr, "weight_decay": ssm_weight_decay},
    ]
    return [g for g in groups if g["params"]]


__all__ = [
    "S4DPreTrainedModel",
    "S4DModel",
    "S4DForSequenceClassification",
    "S4DForCausalLM",
    "S4DModelOutput",
    "S4DSequenceClassifierOutput",
    "S4DCausalLMOutput",
    "ssm_parameter_groups",
    "ssm_parameters",
]
