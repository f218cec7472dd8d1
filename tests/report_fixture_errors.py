"""Print the max absolute error against every reference fixture (used for closing notes; the tests assert < 1e-5).

    python tests/report_fixture_errors.py
"""

import sys
import pathlib

import torch

sys.path.insert(0, str(pathlib.Path(__file__).parent))

from conftest import load_npz  # noqa: E402
from helpers import as_complex, f1_model, f2_layer  # noqa: E402
from test_reference_fixtures import F2  # noqa: E402


def err(a, b):
    return (a.detach() - torch.as_tensor(b)).abs().max().item()


def main():
    rows = []
    with torch.no_grad():
        for prenorm, name in [(False, "f1"), (True, "f1b")]:
            io, model = load_npz(f"{name}_io.npz"), f1_model(prenorm)
            out = model(input_values=torch.from_numpy(io["input"]), output_hidden_states=True)
            rows.append((name, "logits", err(out.logits, io["logits"])))
            rows.append((name, "hidden", max(err(h, io[f"hidden_{i}"]) for i, h in enumerate(out.hidden_states))))
            rows.append((name, "kernels", max(err(model.s4d.layers[i].mixer.kernel.kernel(32)[0], io[f"kernel_layer{i}"])
                                                for i in range(2))))
        for name, options in sorted(F2.items()):
            io, layer, real = load_npz(f"{name}_io.npz"), f2_layer(name, options), options["is_real"]
            x = torch.from_numpy(io["input_BHL"]).transpose(1, 2)
            rows.append((name, "conv output", err(layer(x)[0].transpose(1, 2), io["output_BHL"])))
            rows.append((name, "kernel", err(layer.kernel.kernel(32), io["kernel_CHL"])))
            for rate, key in [(2.0, "output_rate2_BHL"), (0.5, "output_rate0.5_BHL")]:
                if key in io:
                    rows.append((name, f"rate {rate}", err(layer(x, rate=rate)[0].transpose(1, 2), io[key])))
            if "step_output_BHL" in io:
                state, ys = layer.default_state(2), []
                for t in range(x.shape[1]):
                    y, state = layer.step(x[:, t], state)
                    ys.append(y)
                rows.append((name, "step output", err(torch.stack(ys, -1), io["step_output_BHL"])))
                y, nxt = layer(x, state=as_complex(io["init_state"], real), return_state=True)
                rows.append((name, "state forwarding output", err(y.transpose(1, 2), io["output_with_state_BHL"])))
                rows.append((name, "next state", (nxt - as_complex(io["next_state"], real)).abs().max().item()))
    for name, what, value in rows:
        print(f"{name:24s} {what:26s} {value:.2e}")
    print(f"max over all: {max(v for _, _, v in rows):.2e}")


if __name__ == "__main__":
    main()
