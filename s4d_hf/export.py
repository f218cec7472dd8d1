"""Export S4D models: ``torch.export`` programs with a dynamic sequence length, and ONNX files for onnxruntime.

    from s4d_hf.export import export_onnx, export_program

    export_onnx("checkpoints/s4d-fashion-mnist", "fashion.onnx")      # classifier: (batch, length) dynamic
    export_onnx("checkpoints/s4d-shakespeare", "step.onnx")           # causal LM: one recurrent step
    program = export_program(model)                                   # torch.export.ExportedProgram

What each file computes:

* **classifier** (``S4DForSequenceClassification``): inputs ``input_ids`` (token models) or ``input_values``
  (continuous inputs, (batch, length, input_dim)), optionally ``attention_mask``; output ``logits``. The whole
  sequence in convolution mode, for any batch size and length.
* **decoder step** (``S4DForCausalLM``): inputs ``input_ids`` (batch, 1) and ``state`` (n_layers, batch, d_model,
  N2, 2), the recurrent state of every layer as (real, imaginary) pairs (zeros to start: :func:`initial_state`);
  outputs ``logits`` (batch, vocab_size) and ``next_state``. Feed each token with the previous ``next_state``.

ONNX has no complex numbers, and onnxruntime's DFT does not run with a length that varies between calls, so the ONNX
graphs use a real-valued path: the discrete parameters (C·B̄ and log Ā for the classifier; Ā, B̄ and C for the step)
are computed once at export, in the model's own float32/complex64 code, and stored as real constants; the kernel is
computed in the graph in real arithmetic for the input's length (``ssm_kernels_s4d.real_kernel``) and applied as a
depthwise convolution (``direct_conv``: O(L²) per feature, fine for the lengths one classifies, slower than the
FFT beyond a few thousand steps). The exported files therefore hold one ``rate`` (default 1.0): export again for
another. ``torch.export`` keeps the model's own FFT path and parameters.

Needs ``pip install onnx onnxscript onnxruntime`` (the ``export`` extra) for ONNX; ``export_program`` needs only
torch.
"""

from __future__ import annotations

import copy
from pathlib import Path

import torch
from torch import nn

from .modeling.modeling_s4d import S4DForCausalLM, S4DForSequenceClassification
from .modeling.ssm_kernels_s4d import direct_conv, real_kernel, real_step, step_tensors
from .modeling.ssm_s4d import S4DLayer

__all__ = ["export_onnx", "export_program", "ClassifierForExport", "DecoderStepForExport", "initial_state"]


def _load(model_or_folder):
    if isinstance(model_or_folder, nn.Module):
        return model_or_folder
    from transformers import AutoConfig

    config = AutoConfig.from_pretrained(model_or_folder)
    architectures = getattr(config, "architectures", None) or []
    cls = S4DForCausalLM if any("CausalLM" in a for a in architectures) else S4DForSequenceClassification
    return cls.from_pretrained(model_or_folder)


def _input_name(model) -> str:
    return "input_ids" if model.config.vocab_size and not model.config.input_dim else "input_values"


class ClassifierForExport(nn.Module):
    """``model(inputs, attention_mask).logits`` with plain tensor inputs and output (what exporters trace)."""

    def __init__(self, model: nn.Module, rate: float = 1.0):
        super().__init__()
        self.model, self.rate, self.input_name = model, rate, _input_name(model)

    def forward(self, inputs: torch.Tensor, attention_mask: torch.Tensor | None = None) -> torch.Tensor:
        return self.model(**{self.input_name: inputs}, attention_mask=attention_mask, rate=self.rate).logits


class _RealConvolutionMixer(nn.Module):
    """Stands in for an ``S4DLayer`` in the ONNX copy of a classifier: the same output, in real arithmetic
    (constants C·B̄ and log Ā computed once, kernel by ``real_kernel``, convolution by ``direct_conv``)."""

    def __init__(self, layer: nn.Module, rate: float):
        super().__init__()
        if layer.l_max is not None:
            raise ValueError("ONNX export of a model with l_max (a truncated kernel) is not supported")
        self.layer = layer
        with torch.no_grad():
            C, log_dA, dB = layer.kernel.discrete_parameters(rate)
            self.register_buffer("CB", torch.view_as_real((C * dB).to(torch.complex64)).clone())
            self.register_buffer("log_dA", torch.view_as_real(log_dA.to(torch.complex64)).clone())

    def forward(self, hidden_states: torch.Tensor, rate: float = 1.0, **kwargs):
        layer = self.layer
        u = hidden_states.float().transpose(1, 2)  # (B, H, L)
        K = real_kernel(self.CB, self.log_dA, u.shape[-1])
        y = direct_conv(u, K, layer.bidirectional)
        return layer._ssm_output(y, u, hidden_states.dtype), None


class DecoderStepForExport(nn.Module):
    """One generation step of an ``S4DForCausalLM`` without a Cache object and without complex numbers:
    ``(input_ids (B, 1), state (n_layers, B, H, N2, 2)) -> (logits (B, vocab), next state)``.

    The same computation as ``model(input_ids, cache=...)`` during decoding: embedding, per block norm, the recurrent
    step (``ssm_kernels_s4d.real_step``, with Ā, B̄ and C computed once here), D skip, GELU, Linear, GLU, residual,
    final norm, LM head.
    """

    def __init__(self, model: nn.Module, rate: float = 1.0):
        super().__init__()
        self.model = model
        for i, block in enumerate(model.s4d.layers):
            if block.mixer.bidirectional:
                raise ValueError("a bidirectional layer cannot be stepped: its output depends on future inputs")
            with torch.no_grad():
                dA, dB, W = step_tensors(*block.mixer.kernel.step_parameters(rate))
            self.register_buffer(f"dA_{i}", torch.view_as_real(dA).clone())
            self.register_buffer(f"dB_{i}", dB.clone())
            self.register_buffer(f"W_{i}", W.clone())

    def forward(self, input_ids: torch.Tensor, state: torch.Tensor):
        backbone = self.model.s4d
        hidden = backbone.embeddings(input_ids[:, -1])  # (B, H)
        states = []
        for i, block in enumerate(backbone.layers):
            u = block.norm(hidden[:, None])[:, 0] if block.prenorm else hidden
            mixer = block.mixer
            y, s = real_step(u.float(), state[i], getattr(self, f"dA_{i}"), getattr(self, f"dB_{i}"),
                             getattr(self, f"W_{i}"))
            states.append(s)
            y = y + mixer.D.float() * u.float()[:, None]  # (B, C, H)
            hidden = hidden + mixer._output(y.flatten(1), hidden.dtype)
            if not block.prenorm:
                hidden = block.norm(hidden[:, None])[:, 0]
        if backbone.norm_f is not None:
            hidden = backbone.norm_f(hidden[:, None])[:, 0]
        return self.model.lm_head(hidden).float(), torch.stack(states)


def initial_state(model: nn.Module, batch_size: int = 1) -> torch.Tensor:
    """The zero state (n_layers, batch, d_model, N2, 2) that :class:`DecoderStepForExport` starts from."""
    layers = model.s4d.layers
    mixer = layers[0].mixer
    return torch.zeros(len(layers), batch_size, mixer.H, mixer.kernel.N2, 2)


def _example_inputs(model, batch: int, length: int):
    if _input_name(model) == "input_ids":
        return torch.randint(0, model.config.vocab_size, (batch, length))
    return torch.randn(batch, length, model.config.input_dim)


def export_program(model_or_folder, *, example_length: int = 128, batch_size: int = 2, max_length: int = 1 << 20,
                   attention_mask: bool = False, rate: float = 1.0) -> torch.export.ExportedProgram:
    """``torch.export.export`` of a classifier with a dynamic batch size and sequence length.

    Inputs of the program: ``inputs`` (input_ids (B, L) or input_values (B, L, input_dim)) and, with
    ``attention_mask=True``, a (B, L) mask. The program runs the model's own code (FFT convolution); for a dynamic
    length the kernel is formed from its (H, N2, L) table of powers instead of the √L split (see
    ``ssm_kernels_s4d._symbolic_powers``).
    """
    model = _load(model_or_folder).eval()
    wrapper = ClassifierForExport(model, rate).eval()
    x = _example_inputs(model, batch_size, example_length)
    length = torch.export.Dim("length", min=2, max=max_length)
    batch = torch.export.Dim("batch", min=1, max=1 << 16)
    shapes = {"inputs": {0: batch, 1: length}}
    args = (x,)
    if attention_mask:
        args += (torch.ones(x.shape[:2], dtype=torch.long),)
        shapes["attention_mask"] = {0: batch, 1: length}
    with torch.no_grad():
        return torch.export.export(wrapper, args, dynamic_shapes=shapes)


def export_onnx(model_or_folder, path, *, rate: float = 1.0, example_length: int = 64, batch_size: int = 2,
                attention_mask: bool = False, opset_version: int | None = None) -> Path:
    """Write ``model_or_folder`` (an S4D model or a saved folder) to the ONNX file ``path`` and return its path.

    A classifier (``S4DForSequenceClassification``) is exported whole, in convolution mode, with dynamic batch size
    and length (inputs ``input_ids`` or ``input_values``, and ``attention_mask`` with ``attention_mask=True``;
    output ``logits``). A causal LM (``S4DForCausalLM``) is exported as one recurrent step
    (:class:`DecoderStepForExport`: inputs ``input_ids`` (B, 1) and ``state``, outputs ``logits`` and
    ``next_state``; start from :func:`initial_state`). Both use the real-valued path described in the module
    docstring and hold the discrete parameters for ``rate``. Uses ``torch.onnx.export(..., dynamo=True)``.
    """
    try:
        import onnxscript  # noqa: F401
    except ImportError as error:
        raise ImportError("export_onnx needs onnx and onnxscript: pip install 's4d-hf[export]'") from error

    model = _load(model_or_folder).eval()
    path = Path(path)
    batch = torch.export.Dim("batch", min=1, max=1 << 16)
    kwargs = {} if opset_version is None else {"opset_version": opset_version}
    if hasattr(model, "lm_head"):
        wrapper = DecoderStepForExport(model, rate).eval()
        args = (torch.zeros(batch_size, 1, dtype=torch.long), initial_state(model, batch_size))
        names, outputs = ["input_ids", "state"], ["logits", "next_state"]
        shapes = {"input_ids": {0: batch}, "state": {1: batch}}
    else:
        model = copy.deepcopy(model)
        for block in model.s4d.layers:
            if isinstance(block.mixer, S4DLayer):
                block.mixer = _RealConvolutionMixer(block.mixer, rate)
        wrapper = ClassifierForExport(model, rate).eval()
        length = torch.export.Dim("length", min=2, max=1 << 20)
        x = _example_inputs(model, batch_size, example_length)
        args, names = (x,), [_input_name(model)]
        shapes = {"inputs": {0: batch, 1: length}}
        if attention_mask:
            args += (torch.ones(x.shape[:2], dtype=torch.long),)
            names.append("attention_mask")
            shapes["attention_mask"] = {0: batch, 1: length}
        outputs = ["logits"]
    with torch.no_grad():
        program = torch.onnx.export(wrapper, args, dynamo=True, dynamic_shapes=shapes, input_names=names,
                                    output_names=outputs, verbose=False, **kwargs)
    program.save(str(path))
    return path
