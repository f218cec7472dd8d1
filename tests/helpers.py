"""Shared test helpers: building the reference fixtures' models with s4d_hf classes."""

import numpy as np
import torch

from s4d_hf import S4DConfig, S4DForSequenceClassification
from s4d_hf.modeling.ssm_s4d import S4DLayer

from conftest import load_npz

F2_INITS = {"diag-lin": "lin", "diag-inv": "inv", "legs": "legs", "diag-real": "real"}


def f2_layer(name: str, options: dict) -> S4DLayer:
    """An S4DLayer holding the weights of a standalone ``S4Block(mode='diag')`` fixture (keys renamed only)."""
    layer = S4DLayer(
        16, d_state=8, channels=options["channels"], init=F2_INITS[options["init"]], disc=options["disc"],
        dt_transform=options["dt_transform"], real_transform=options["real_transform"], is_real=options["is_real"],
        bidirectional=options["bidirectional"],
    )
    state_dict = {
        k.replace("layer.kernel.", "kernel.").replace("layer.D", "D").replace("output_linear.0.", "output_linear."):
        torch.from_numpy(v)
        for k, v in load_npz(f"{name}_state_dict.npz").items()
    }
    layer.load_state_dict(state_dict, strict=True)
    return layer.eval()


def f1_model(prenorm: bool) -> S4DForSequenceClassification:
    """example.py's S4Model (minimal s4d.py layers) as an S4DForSequenceClassification.

    The minimal layer writes A = -exp(log_A_real) + i·A_imag, the standalone one -exp(A_real) - i·A_imag: the sign
    of A_imag flips. B ≡ 1, the Conv1d(H, 2H, 1) output projection is a Linear, log_dt (H) is inv_dt (H, 1).
    """
    sd = {k: torch.from_numpy(v) for k, v in load_npz(("f1b" if prenorm else "f1") + "_state_dict.npz").items()}
    config = S4DConfig(input_dim=3, num_labels=10, d_model=16, n_layers=2, d_state=8, prenorm=prenorm,
                       final_norm=False, init="lin", dt_transform="exp", real_transform="exp", disc="zoh")
    model = S4DForSequenceClassification(config)
    H, N2 = 16, 4
    mapped = {
        "s4d.input_proj.weight": sd["encoder.weight"], "s4d.input_proj.bias": sd["encoder.bias"],
        "classifier.weight": sd["decoder.weight"], "classifier.bias": sd["decoder.bias"],
    }
    for i in range(2):
        src, dst = f"s4_layers.{i}.", f"s4d.layers.{i}."
        mapped.update({
            dst + "mixer.D": sd[src + "D"][None],
            dst + "mixer.kernel.inv_dt": sd[src + "kernel.log_dt"][:, None],
            dst + "mixer.kernel.A_real": sd[src + "kernel.log_A_real"],
            dst + "mixer.kernel.A_imag": -sd[src + "kernel.A_imag"],
            dst + "mixer.kernel.B": torch.stack([torch.ones(1, H, N2), torch.zeros(1, H, N2)], -1),
            dst + "mixer.kernel.C": sd[src + "kernel.C"][None],
            dst + "mixer.output_linear.weight": sd[src + "output_linear.0.weight"][..., 0],
            dst + "mixer.output_linear.bias": sd[src + "output_linear.0.bias"],
            dst + "norm.weight": sd[f"norms.{i}.weight"], dst + "norm.bias": sd[f"norms.{i}.bias"],
        })
    model.load_state_dict(mapped, strict=True)
    return model.eval()


def as_complex(array: np.ndarray, is_real: bool) -> torch.Tensor:
    t = torch.from_numpy(np.ascontiguousarray(array))
    return t.to(torch.complex64) if is_real else torch.view_as_complex(t)
