"""The tensor rules of a conversion: source key -> S4D-HF key, with the exact tensor transform in each direction.

The same rules convert a checkpoint and export a converted model back to the source layout, which makes the exact
round-trip check possible.
"""

from dataclasses import dataclass
from typing import Callable

import torch

from .keys import Layout, SourceTensors
from .loading import ConversionError
from .options import Option


@dataclass(frozen=True)
class Rule:
    """source key -> target key (S4DForSequenceClassification), with the exact tensor transform in each direction.

    ``source`` is None for a constant of the source layer (s4d.py's B ≡ 1): ``backward`` then only checks it.
    """

    source: str | None
    target: str
    forward: Callable[[torch.Tensor | None], torch.Tensor]
    backward: Callable[[torch.Tensor], torch.Tensor | None]



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


def make_rules(layout: Layout, options: dict[str, Option], t: SourceTensors, n_layers: int) -> list[Rule]:
    """Every rule of the conversion, in S4D-HF order: encoder, each layer's SSM, output_linear and norm, the final
    norm, the decoder."""
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
