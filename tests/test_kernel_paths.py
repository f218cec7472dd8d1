"""Every fast path of the SSM (``ssm_kernels_s4d``: the kernel, its hand-written backward, the FFT convolution and its
backward, the inference caches, state forwarding; and the recurrent step) against the paper's naive formula in
float64: the discrete parameters computed here straight from the stored tensors, the kernel from
``ssm_s4d.reference_kernel`` (the full (H, N2, L) Vandermonde matrix), the convolution as an explicit Toeplitz sum.
Gradients are compared with autograd through that naive computation."""

import itertools

import pytest
import torch
import torch.nn.functional as F

from s4d_hf.modeling.ssm_kernels_s4d import fft_conv, forward_state, vandermonde_kernel
from s4d_hf.modeling.ssm_s4d import S4DLayer, reference_kernel

INITS = ["legs", "inv", "lin", "real", "diag", "legs-ptd"]
TOL = 1e-5
TRANSFORMS = {"exp": torch.exp, "softplus": F.softplus, "relu": lambda p: F.relu(p) + 1e-4, "none": lambda p: p}


def make_layer(H=6, N=8, seed=0, **options) -> S4DLayer:
    torch.manual_seed(seed)
    layer = S4DLayer(H, d_state=N, dt_min=0.01, dt_max=0.3, **options)
    layer.kernel.reset_parameters()
    with torch.no_grad():
        layer.D.normal_()
        for p in layer.kernel.parameters():  # away from the symmetric init (B = 1, equal A_real across copies)
            p.add_(0.1 * torch.randn_like(p))
    return layer


def naive_parameters(layer: S4DLayer) -> dict[str, torch.Tensor]:
    """float64 leaf copies of every parameter, for autograd through the naive computation."""
    return {name: p.detach().double().requires_grad_() for name, p in layer.named_parameters()}


def naive_discrete(layer: S4DLayer, params: dict, rate: float = 1.0):
    """Ā, B̄ (H, N2) and C (Ck, H, N2), complex128, from the stored tensors (paper eq. 4)."""
    k = layer.kernel
    dt = TRANSFORMS[k.dt_transform](params["kernel.inv_dt"]) * rate
    re = -TRANSFORMS[k.real_transform](params["kernel.A_real"])
    if k.is_real:
        A = torch.complex(re, torch.zeros_like(re))
        B = torch.complex(params["kernel.B"][0], torch.zeros_like(params["kernel.B"][0]))
        C = torch.complex(params["kernel.C"], torch.zeros_like(params["kernel.C"]))
    else:
        A = torch.complex(re, -params["kernel.A_imag"])
        B = torch.view_as_complex(params["kernel.B"][0])
        C = torch.view_as_complex(params["kernel.C"])
    idx = torch.arange(k.H) % k.S
    A, B = A[idx], B[idx]
    if k.disc == "zoh":
        dA = torch.exp(dt * A)
        dB = (dA - 1) / A * B
    else:
        dA = (1 + dt * A / 2) / (1 - dt * A / 2)
        dB = dt / (1 - dt * A / 2) * B
    return dA, dB, C


def naive_kernel(layer: S4DLayer, params: dict, L: int, rate: float = 1.0) -> torch.Tensor:
    """K[c,h,l] = 2·Re Σ_n C B̄ Ā^l, with the whole (H, N2, L) Vandermonde matrix (paper eq. 5-6)."""
    dA, dB, C = naive_discrete(layer, params, rate)
    return reference_kernel(C * dB, torch.log(dA), L)


def naive_layer(layer: S4DLayer, params: dict, u: torch.Tensor, rate: float = 1.0) -> torch.Tensor:
    """The whole layer: Toeplitz convolution (two-sided if bidirectional) + D u -> GELU -> Linear -> GLU."""
    B, L, H = u.shape
    K = naive_kernel(layer, params, L, rate)
    t = torch.arange(L)
    lag = t[:, None] - t[None, :]  # t - s
    causal = torch.where(lag >= 0, K[..., lag.clamp(min=0)], 0.0)  # (Ck, H, L_t, L_s)
    if layer.bidirectional:
        K_f, K_b = causal.chunk(2, dim=0)
        anti = torch.where(lag < 0, K[layer.channels:][..., (-lag - 1).clamp(min=0)], 0.0)
        causal = K_f + anti
    x = u.double().transpose(1, 2)  # (B, H, L)
    y = torch.einsum("chts,bhs->bcht", causal, x) + params["D"][None, :, :, None] * x[:, None]
    z = F.gelu(y.flatten(1, 2).transpose(1, 2))
    z = z @ params["output_linear.weight"].T + params["output_linear.bias"]
    return F.glu(z, dim=-1) if layer.final_act == "glu" else z


def max_err(a: torch.Tensor, b: torch.Tensor) -> float:
    """Largest difference, relative to the scale of the reference when that exceeds 1."""
    a = a.to(torch.complex128 if b.is_complex() else torch.float64)
    return ((a - b).abs().max() / max(1.0, b.abs().max().item())).item()


CASES = [dict(init=i, disc=d, is_real=r) for i, d, r in itertools.product(INITS, ["zoh", "bilinear"], [False, True])]
OPTIONS = [
    dict(init="lin", bidirectional=True),
    dict(init="inv", bidirectional=True, channels=2),
    dict(init="legs", channels=2),
    dict(init="diag", n_ssm=2),
    dict(init="lin", dt_tie=False, dt_transform="softplus", real_transform="relu"),
    dict(init="real", is_real=True, real_transform="softplus", disc="bilinear", channels=2),
]
RATES = [1.0, 1.0, 1.0, 0.5, 2.0, 3.0]  # one rate per entry of OPTIONS
ALL = [(c, 1.0) for c in CASES] + list(zip(OPTIONS, RATES))


def case_id(case):
    options, rate = case
    return "-".join(f"{v}" for v in options.values()) + ("" if rate == 1.0 else f"-rate{rate}")


@pytest.mark.parametrize("case", ALL, ids=case_id)
def test_kernel_and_layer_forward_and_backward_equal_the_naive_formula(case):
    options, rate = case
    layer = make_layer(**options)
    params = naive_parameters(layer)
    L = 37  # not a square: the l = qM + r split has a ragged last block
    u = torch.randn(2, L, layer.H)
    K_ref = naive_kernel(layer, params, L, rate)
    y_ref = naive_layer(layer, params, u, rate)
    grad_y = torch.randn_like(y_ref)

    K = layer.kernel.kernel(L, rate)  # grad mode: the hand-written backward
    assert max_err(K, K_ref) < TOL
    x = u.clone().requires_grad_()
    y, _ = layer(x, rate=rate)
    assert max_err(y, y_ref) < TOL
    y.backward(grad_y.float())
    u_ref = u.double().requires_grad_()
    naive_layer(layer, params, u_ref, rate).backward(grad_y)
    assert max_err(x.grad, u_ref.grad) < TOL
    for name, p in layer.named_parameters():
        assert max_err(p.grad, params[name].grad) < TOL, name

    layer.eval()
    with torch.no_grad():  # inference: cached kernel, in-place spectrum product
        for _ in range(2):
            assert max_err(layer.kernel.kernel(L, rate), K_ref) < TOL
            assert max_err(layer(u, rate=rate)[0], y_ref) < TOL
        assert max_err(layer.kernel.kernel(5, rate), K_ref[..., :5]) < TOL  # prefix of the cached kernel


@pytest.mark.parametrize("L", [1, 2, 16, 17, 50, 1000])
def test_vandermonde_kernel_and_its_gradients_for_any_length(L):
    """Including strongly decaying modes (|Ā|^l underflows, flushed to 0) and several channels.

    log Ā is rounded to multiples of 2^-8 so that l·log Ā is exact in float32 for l < 2^11: the phase l·Im log Ā
    (hundreds of radians) otherwise loses ~1e-5 to float32 rounding in any float32 implementation, naive or not.
    """
    torch.manual_seed(L)
    H, N2, C = 3, 5, 2
    log_dA = torch.complex(-torch.rand(H, N2) * torch.tensor([0.01, 0.1, 1.0, 5.0, 50.0]), 3 * torch.randn(H, N2))
    log_dA = torch.view_as_complex(torch.round(torch.view_as_real(log_dA) * 256) / 256)
    CB = torch.randn(C, H, N2, dtype=torch.complex64)
    CB64, log64 = CB.to(torch.complex128).requires_grad_(), log_dA.to(torch.complex128).requires_grad_()
    ref = reference_kernel(CB64, log64, L)
    grad = torch.randn(C, H, L, dtype=torch.float64)
    ref.backward(grad)
    CB32, log32 = CB.clone().requires_grad_(), log_dA.clone().requires_grad_()
    K = vandermonde_kernel(CB32, log32, L)
    K.backward(grad.float())
    assert max_err(K, ref) < TOL
    assert max_err(CB32.grad, CB64.grad) < TOL
    assert max_err(log32.grad, log64.grad) < TOL


@pytest.mark.parametrize("bidirectional", [False, True])
@pytest.mark.parametrize("L,Lk", [(1, 1), (20, 20), (20, 7), (31, 31)])
def test_fft_conv_and_its_gradients_equal_the_toeplitz_sum(L, Lk, bidirectional):
    torch.manual_seed(L + Lk)
    B, C, H = 3, 2, 4
    u = torch.randn(B, H, L, dtype=torch.float64)
    K = torch.randn(C * (2 if bidirectional else 1), H, Lk, dtype=torch.float64)
    t, s = torch.arange(L)[:, None], torch.arange(L)[None, :]
    lag = t - s
    T = torch.where((lag >= 0) & (lag < Lk), K[:C][..., lag.clamp(0, Lk - 1)], 0.0)
    if bidirectional:  # y[t] += Σ_{s>t} K_b[s-t-1] u[s]
        back = -lag - 1
        T = T + torch.where((back >= 0) & (back < Lk), K[C:][..., back.clamp(0, Lk - 1)], 0.0)
    u64, K64 = u.clone().requires_grad_(), K.clone().requires_grad_()
    T64 = torch.zeros_like(T)
    T64 = torch.where((lag >= 0) & (lag < Lk), K64[:C][..., lag.clamp(0, Lk - 1)], T64)
    if bidirectional:
        T64 = T64 + torch.where((back >= 0) & (back < Lk), K64[C:][..., back.clamp(0, Lk - 1)], 0.0)
    ref = torch.einsum("chts,bhs->bcht", T64, u64)
    grad = torch.randn_like(ref)
    ref.backward(grad)
    u32, K32 = u.float().requires_grad_(), K.float().requires_grad_()
    y = fft_conv(u32, K32, bidirectional)
    y.backward(grad.float())
    assert max_err(y, ref) < TOL
    assert max_err(u32.grad, u64.grad) < TOL
    assert max_err(K32.grad, K64.grad) < TOL
    with torch.no_grad():  # the inference path (in-place spectrum product)
        assert max_err(fft_conv(u.float(), K.float(), bidirectional), ref) < TOL
    u_only = u.float().requires_grad_()  # a fixed kernel: only the input's gradient
    fft_conv(u_only, K.float(), bidirectional).backward(grad.float())
    assert max_err(u_only.grad, u64.grad) < TOL


@pytest.mark.parametrize("case", CASES[::3] + [(dict(init="lin", channels=2, disc="bilinear"))], ids=str)
def test_state_forwarding_and_steps_equal_the_naive_recurrence(case):
    """Chunked forward with state (prefix conv + free response + final state) and recurrent steps, at rate 1.5."""
    layer = make_layer(**case).eval()
    params = naive_parameters(layer)
    rate, L = 1.5, 29
    u = torch.randn(2, L, layer.H)
    dA, dB, C = naive_discrete(layer, params, rate)
    with torch.no_grad():
        x = torch.zeros(2, layer.H, layer.kernel.N2, dtype=torch.complex128)
        states = []
        for t in range(L):
            x = dA * x + dB * u[:, t, :, None].double()
            states.append(x)
        y_ref = naive_layer(layer, params, u, rate)
        out, s = [], None
        for piece in u.split([11, 1, 17], dim=1):
            y_c, s = layer(piece, state=s, rate=rate, return_state=True)
            out.append(y_c)
        assert max_err(torch.cat(out, 1), y_ref) < TOL
        assert max_err(s, states[-1]) < TOL
        state, steps = layer.default_state(2), []
        for t in range(L):
            y_t, state = layer.step(u[:, t], state, rate=rate)
            steps.append(y_t)
        assert max_err(torch.stack(steps, 1), y_ref) < TOL
        assert max_err(state, states[-1]) < TOL
        log_dA = torch.log(dA).to(torch.complex64)
        assert max_err(forward_state(u.transpose(1, 2), log_dA, dB.to(torch.complex64), None), states[-1]) < TOL


def test_state_forwarding_gradients_equal_the_naive_recurrence():
    """forward_state under autograd (training with carried state): gradients through Ā^r, Ā^{qM}."""
    layer = make_layer(init="inv")
    params = naive_parameters(layer)
    u = torch.randn(2, 23, layer.H)
    dA, dB, C = naive_discrete(layer, params, 1.0)
    x = torch.zeros(2, layer.H, layer.kernel.N2, dtype=torch.complex128)
    for t in range(23):
        x = dA * x + dB * u[:, t, :, None].double()
    weight = torch.randn(x.shape, dtype=torch.complex128)
    (x * weight.conj()).real.sum().backward()
    _, s = layer(u, return_state=True)
    (s * weight.to(torch.complex64).conj()).real.sum().backward()
    assert max_err(s.detach(), x.detach()) < TOL
    for name in ("kernel.inv_dt", "kernel.A_real", "kernel.A_imag", "kernel.B"):
        assert max_err(getattr(layer.kernel, name.split(".")[1]).grad, params[name].grad) < TOL, name


def test_inference_cache_follows_every_kind_of_parameter_change():
    layer = make_layer(init="lin").eval()
    u = torch.randn(2, 19, layer.H)

    def check():
        params = naive_parameters(layer)
        with torch.no_grad():
            assert max_err(layer.kernel.kernel(19), naive_kernel(layer, params, 19)) < TOL
            assert max_err(layer(u)[0], naive_layer(layer, params, u)) < TOL
            y_t, _ = layer.step(u[:, 0], layer.default_state(2))
            assert max_err(y_t, naive_layer(layer, params, u[:, :1])[:, 0]) < TOL

    check()
    optimizer = torch.optim.SGD(layer.parameters(), lr=0.1)  # an optimizer step (in-place, version bump)
    layer(u)[0].square().mean().backward()
    optimizer.step()
    check()
    with torch.no_grad():
        layer.kernel.A_imag.data.mul_(1.1)  # through .data: no version bump, still detected
    check()
    state = {k: v + 0.01 for k, v in layer.state_dict().items()}
    layer.load_state_dict(state)
    check()
    with torch.no_grad():
        layer.kernel.kernel(19).mul_(0)  # a caller scribbling on a returned (cached) kernel
        layer.kernel.discrete_parameters()[1].mul_(2)
    check()
    with torch.no_grad():
        layer.kernel.kernel(40)  # a longer kernel, then shorter ones are its prefix
    check()


def test_no_cache_and_no_silent_double_backward_when_training():
    layer = make_layer(init="legs")
    K = layer.kernel.kernel(12)
    assert K.requires_grad and layer.kernel.kernel(12).requires_grad  # never served from a cache under autograd
    u = torch.randn(1, 12, layer.H, requires_grad=True)
    y, _ = layer(u)
    (g,) = torch.autograd.grad(y.square().sum(), u, create_graph=True)
    with pytest.raises(RuntimeError):  # second derivatives are not implemented: an error, not a wrong number
        g.sum().backward()
