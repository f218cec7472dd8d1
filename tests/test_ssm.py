"""The SSM math against independent computations: an explicit float64 recurrence written here from the paper's
formulas, brute-force sums for the two-sided kernel, and the reference's initial values."""

import itertools
import math

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from conftest import load_npz
from s4d_hf.modeling.ssm_s4d import S4DLayer, init_A_B, reference_kernel

INITS = ["legs", "inv", "lin", "real", "diag"]


def random_layer(H=6, N=8, *, init="lin", disc="zoh", is_real=False, channels=1, n_ssm=None, dt_tie=True,
                 dt_transform="exp", real_transform="exp", bidirectional=False, l_max=None, seed=0) -> S4DLayer:
    torch.manual_seed(seed)
    layer = S4DLayer(H, d_state=N, init=init, disc=disc, is_real=is_real, channels=channels, n_ssm=n_ssm,
                     dt_tie=dt_tie, dt_transform=dt_transform, real_transform=real_transform,
                     bidirectional=bidirectional, l_max=l_max, dt_min=0.01, dt_max=0.3)
    layer.kernel.reset_parameters()
    with torch.no_grad():
        layer.D.normal_()
        for p in layer.kernel.parameters():  # move away from the symmetric init (B = 1, equal A_real)
            p.add_(0.1 * torch.randn_like(p))
    return layer.eval()


def continuous_params(layer: S4DLayer):
    """dt (H, N2), A (H, N2), B (H, N2), C (Ck, H, N2) in complex128, straight from the stored tensors."""
    k = layer.kernel
    tf = {"exp": torch.exp, "softplus": F.softplus, "relu": lambda p: F.relu(p) + 1e-4, "none": lambda p: p}
    dt = tf[k.dt_transform](k.inv_dt.double()).expand(k.H, k.N2)
    re = -tf[k.real_transform](k.A_real.double())
    if k.is_real:
        A, B, C = re.to(torch.complex128), k.B[0].double().to(torch.complex128), k.C.double().to(torch.complex128)
    else:
        A = torch.complex(re, -k.A_imag.double())
        B, C = torch.view_as_complex(k.B[0].double()), torch.view_as_complex(k.C.double())
    idx = torch.arange(k.H) % k.S  # feature h uses copy h mod S
    return dt, A[idx], B[idx], C


def discretized(layer: S4DLayer, rate=1.0):
    dt, A, B, C = continuous_params(layer)
    dt = dt * rate
    if layer.kernel.disc == "zoh":
        dA, dB = torch.exp(dt * A), (torch.exp(dt * A) - 1) / A * B
    else:
        dA, dB = (1 + dt * A / 2) / (1 - dt * A / 2), dt / (1 - dt * A / 2) * B
    return dA, dB, C


def recurrence(layer: S4DLayer, u: torch.Tensor, rate=1.0, state=None):
    """x_t = Ā x_{t-1} + B̄ u_t ; y_t = 2·Re(C x_t) + D u_t (float64 loop). u (B, L, H) -> (B, C, H, L), x_L."""
    dA, dB, C = discretized(layer, rate)
    x = torch.zeros(u.shape[0], *dA.shape, dtype=torch.complex128) if state is None else state.to(torch.complex128)
    ys = []
    for t in range(u.shape[1]):
        u_t = u[:, t].double()
        x = dA * x + dB * u_t[..., None]
        ys.append(2 * torch.einsum("chn,bhn->bch", C, x).real + layer.D.double() * u_t[:, None])
    return torch.stack(ys, -1), x


def block_output(layer: S4DLayer, y_ssm: torch.Tensor) -> torch.Tensor:
    """(B, C, H, L) SSM output -> GELU -> Linear -> GLU, written out for the test."""
    z = F.gelu(y_ssm.flatten(1, 2).transpose(1, 2).float())
    z = z @ layer.output_linear.weight.T + layer.output_linear.bias
    return F.glu(z, dim=-1) if layer.final_act == "glu" else z


CASES = [dict(init=i, disc=d, is_real=r) for i, d, r in itertools.product(INITS, ["zoh", "bilinear"], [False, True])]


@pytest.mark.parametrize("case", CASES, ids=lambda c: "-".join(str(v) for v in c.values()))
def test_kernel_equals_impulse_response_of_recurrence(case):
    layer = random_layer(**case)
    L = 40
    dA, dB, C = discretized(layer)
    x, K = dB.clone(), []
    for _ in range(L):  # impulse response: K_l = 2·Re(C Ā^l B̄)
        K.append(2 * torch.einsum("chn,hn->ch", C, x).real)
        x = dA * x
    expected = torch.stack(K, -1)
    with torch.no_grad():
        assert (layer.kernel.kernel(L).double() - expected).abs().max() < 1e-5 * max(1.0, expected.abs().max())
        # the paper's Vandermonde form, which tests/test_kernel_paths.py holds every fast path to
        reference = reference_kernel(C * dB, torch.log(dA), L)
        assert (reference - expected).abs().max() < 1e-10 * max(1.0, expected.abs().max())


@pytest.mark.parametrize("case", CASES, ids=lambda c: "-".join(str(v) for v in c.values()))
def test_convolution_equals_step_equals_chunked_state_forwarding(case):
    layer = random_layer(**case, channels=2 if case["init"] == "lin" else 1)
    u = torch.randn(2, 30, layer.H)
    y_rec, x_final = recurrence(layer, u)
    expected = block_output(layer, y_rec)
    with torch.no_grad():
        y_conv, _ = layer(u)
        state, steps = layer.default_state(2), []
        for t in range(u.shape[1]):
            y_t, state = layer.step(u[:, t], state)
            steps.append(y_t)
        chunks, s = [], None
        for piece in u.split([7, 1, 12, 10], dim=1):
            y_c, s = layer(piece, state=s, return_state=True)
            chunks.append(y_c)
    assert (y_conv - expected).abs().max() < 1e-5
    assert (torch.stack(steps, 1) - expected).abs().max() < 1e-5
    assert (torch.cat(chunks, 1) - expected).abs().max() < 1e-5
    assert (s - x_final).abs().max() < 1e-5
    assert (state - x_final).abs().max() < 1e-5


def test_rate_tied_options_and_truncation_against_recurrence():
    """rate multiplies dt; n_ssm tiles A/B as h mod S; untied dt; softplus/relu transforms; l_max truncates."""
    layer = random_layer(H=8, init="diag", n_ssm=4, dt_tie=False, dt_transform="softplus", real_transform="relu")
    u = torch.randn(2, 25, 8)
    for rate in (0.5, 2.0):
        y_rec, _ = recurrence(layer, u, rate=rate)
        with torch.no_grad():
            y, _ = layer(u, rate=rate)
        assert (y - block_output(layer, y_rec)).abs().max() < 1e-5

    truncated = random_layer(H=4, l_max=10)
    with torch.no_grad():
        K = truncated.kernel.kernel(25)
        y, _ = truncated(u[..., :4], rate=2.0)  # kernel length round(10 / 2) = 5 taps
        K5 = truncated.kernel.kernel(5, rate=2.0)
    assert K.shape[-1] == 25
    brute = torch.zeros(2, 1, 4, 25)
    for t in range(25):
        for j in range(min(5, t + 1)):
            brute[..., t] += K5[..., j] * u[:, t - j, :4][:, None]
    brute = brute + truncated.D[None, :, :, None] * u[..., :4].transpose(1, 2)[:, None]
    assert (y - block_output(truncated, brute)).abs().max() < 1e-5


@pytest.mark.parametrize("channels", [1, 2])
def test_bidirectional_is_the_references_two_sided_sum(channels):
    """y[t] = Σ_{s<=t} K_f[t-s] u[s] + Σ_{s>t} K_b[s-t-1] u[s] + D u[t] (backward taps shifted by one)."""
    layer = random_layer(H=4, bidirectional=True, channels=channels)
    u = torch.randn(2, 20, 4)
    with torch.no_grad():
        y, _ = layer(u)
        K = layer.kernel.kernel(20).double()
    K_f, K_b = K[:channels], K[channels:]
    uT = u.double().transpose(1, 2)  # (B, H, L)
    brute = torch.zeros(2, channels, 4, 20, dtype=torch.float64)
    for t in range(20):
        for s in range(20):
            tap = K_f[..., t - s] if s <= t else (K_b[..., s - t - 1])
            brute[..., t] += tap * uT[:, None, :, s]
    brute += layer.D.double()[None, :, :, None] * uT[:, None]
    assert (y - block_output(layer, brute)).abs().max() < 1e-5
    with pytest.raises(ValueError, match="bidirectional"):
        layer.step(u[:, 0], layer.default_state(2))
    with pytest.raises(ValueError, match="bidirectional"):
        layer(u, return_state=True)


@pytest.mark.parametrize("N", [8, 64])
@pytest.mark.parametrize("ours,reference", [("lin", "diag-lin"), ("inv", "diag-inv"), ("legs", "diag-legs"),
                                            ("legs", "legs"), ("real", "diag-real"), ("diag", "diag")])
def test_init_matches_reference_values(N, ours, reference):
    """A exactly; |B| only, because LegS eigenvector phases depend on the LAPACK build (fixture MANIFEST)."""
    ref = load_npz("init_AB_reference.npz")
    A, B = init_A_B(ours, N, 2)
    A_ref = ref[f"N{N}__{reference}__A_real"] + 1j * ref[f"N{N}__{reference}__A_imag"]
    B_ref = ref[f"N{N}__{reference}__B_real"] + 1j * ref[f"N{N}__{reference}__B_imag"]
    assert np.abs(A.numpy() - A_ref).max() < 1e-6 * max(1.0, np.abs(A_ref).max())
    assert np.abs(np.abs(B.numpy()) - np.abs(B_ref)).max() < 1e-5


@pytest.mark.parametrize("name,init,real_transform,is_real", [
    ("f2a_diaglin_zoh_exp", "lin", "exp", False), ("f2b_diaginv_bilinear", "inv", "exp", False),
    ("f2c_legs", "legs", "exp", False), ("f2f_isreal_diagreal", "real", "exp", True),
])
def test_stored_initial_parameters_match_reference_construction(name, init, real_transform, is_real):
    """The deterministic stored values at construction (A_real, A_imag incl. the 1e-4 clamp, |B|)."""
    ref = load_npz(f"{name}_init_state_dict.npz")
    layer = S4DLayer(16, d_state=8, init=init, real_transform=real_transform, is_real=is_real)
    values = layer.kernel.initial_values()
    assert np.abs(values["A_real"].numpy() - ref["layer.kernel.A_real"]).max() < 1e-6
    if not is_real:
        assert np.abs(values["A_imag"].numpy() - ref["layer.kernel.A_imag"]).max() < 1e-5
        B, B_ref = torch.view_as_complex(values["B"]).abs(), np.abs(ref["layer.kernel.B"][..., 0] + 1j * ref["layer.kernel.B"][..., 1])
        assert np.abs(B.numpy() - B_ref).max() < 1e-5
    else:
        assert np.abs(values["B"].numpy() - ref["layer.kernel.B"]).max() < 1e-6
    dt = torch.exp(values["inv_dt"])
    assert ((dt >= 1e-3 - 1e-9) & (dt <= 1e-1 + 1e-9)).all()  # log-uniform in [dt_min, dt_max]
    C = values["C"]
    assert abs(C.std().item() - math.sqrt(0.5)) < 0.2
