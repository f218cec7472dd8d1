"""The S4D layer and model reproduce outputs of the original state-spaces/s4 code (tests/fixtures, see
../shared/fixtures/reference/MANIFEST.md): convolution, kernel, rate change, recurrence, state forwarding."""

import json
import pathlib

import numpy as np
import pytest
import torch

from conftest import load_npz
from helpers import as_complex, f1_model, f2_layer

TOL = 1e-5
F2 = json.loads((pathlib.Path(__file__).parent / "fixtures" / "f2_options.json").read_text())


def max_err(a: torch.Tensor, b: np.ndarray) -> float:
    return (a.detach() - torch.from_numpy(b)).abs().max().item()


@pytest.mark.parametrize("name", sorted(F2))
def test_f2_convolution_and_kernel(name):
    options, io = F2[name], load_npz(f"{name}_io.npz")
    layer = f2_layer(name, options)
    x = torch.from_numpy(io["input_BHL"]).transpose(1, 2)  # (B, L, H)
    with torch.no_grad():
        y, _ = layer(x)
        assert max_err(y.transpose(1, 2), io["output_BHL"]) < TOL
        assert max_err(layer.kernel.kernel(32), io["kernel_CHL"]) < TOL


def test_f2a_rate_change():
    """dt is multiplied by rate (the reference's 16 kHz -> 8 kHz zero-shot trick is rate=2)."""
    name = "f2a_diaglin_zoh_exp"
    io, layer = load_npz(f"{name}_io.npz"), f2_layer(name, F2[name])
    x = torch.from_numpy(io["input_BHL"]).transpose(1, 2)
    with torch.no_grad():
        for rate, key in [(2.0, "output_rate2_BHL"), (0.5, "output_rate0.5_BHL")]:
            y, _ = layer(x, rate=rate)
            assert max_err(y.transpose(1, 2), io[key]) < TOL
        y_plain, _ = layer(x)
    assert max_err(y_plain.transpose(1, 2), io["output_rate2_BHL"]) > 1e-3  # the rate really changes the output


@pytest.mark.parametrize("name", sorted(n for n in F2 if not F2[n]["bidirectional"]))
def test_f2_recurrence_and_state_forwarding(name):
    options, io = F2[name], load_npz(f"{name}_io.npz")
    is_real = options["is_real"]
    layer = f2_layer(name, options)
    x = torch.from_numpy(io["input_BHL"]).transpose(1, 2)
    with torch.no_grad():
        state, outputs = layer.default_state(2), []
        for t in range(x.shape[1]):
            y_t, state = layer.step(x[:, t], state)
            outputs.append(y_t)
        assert max_err(torch.stack(outputs, -1), io["step_output_BHL"]) < TOL
        assert (state - as_complex(io["step_final_state"], is_real)).abs().max() < TOL

        s0 = as_complex(io["init_state"], is_real)
        y, next_state = layer(x, state=s0, return_state=True)
        assert max_err(y.transpose(1, 2), io["output_with_state_BHL"]) < TOL
        assert (next_state - as_complex(io["next_state"], is_real)).abs().max() < TOL


@pytest.mark.parametrize("prenorm,name", [(False, "f1"), (True, "f1b")])
def test_f1_example_model(prenorm, name):
    """example.py's S4Model (minimal s4d.py layers, +i·A_imag convention) as S4DForSequenceClassification."""
    io, model = load_npz(f"{name}_io.npz"), f1_model(prenorm)
    with torch.no_grad():
        out = model(input_values=torch.from_numpy(io["input"]), output_hidden_states=True)
        layer0 = model.s4d.layers[0].mixer
        y, _ = layer0(torch.from_numpy(io["layer0_input_BHL"]).transpose(1, 2))
        kernels = [model.s4d.layers[i].mixer.kernel.kernel(32)[0] for i in range(2)]
    assert max_err(out.logits, io["logits"]) < TOL
    for i, hidden in enumerate(out.hidden_states):
        assert max_err(hidden, io[f"hidden_{i}"]) < TOL
    assert max_err(y.transpose(1, 2), io["layer0_output_BHL"]) < TOL
    for i, kernel in enumerate(kernels):
        assert max_err(kernel, io[f"kernel_layer{i}"]) < TOL
