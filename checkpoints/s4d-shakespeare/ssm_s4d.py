"""The S4D state space layer: parameters, initialisations, discretisation, kernel, convolution and recurrence.

Gu, Gupta, Goel, Ré, "On the Parameterization and Initialization of Diagonal State Space Models" (2022),
arXiv:2206.11893. Equation numbers below refer to that paper. The parameter names, shapes and conventions are
those of the reference implementation (state-spaces/s4, ``models/s4/s4.py``, ``SSMKernelDiag`` + ``FFTConv``), so
that its checkpoints load without renaming tensors:

* ``inv_dt``  (H, 1) or (H, N2)       the step size, dt = dt_transform(inv_dt)
* ``A_real``  (S, N2)                 Re A = -real_transform(A_real)
* ``A_imag``  (S, N2)                 Im A = -A_imag   (absent in real mode)
* ``B``       (1, S, N2, 2)           complex, stored as ``view_as_real`` (real mode: (1, S, N))
* ``C``       (Ck, H, N2, 2)          complex, stored as ``view_as_real`` (real mode: (Ck, H, N))
* ``D``       (Cch, H)                the skip connection

H is the number of features (d_model), N = d_state, N2 = N/2 stored modes (one of each conjugate pair; the kernel
is 2·Re of the sum over them, which is the same as summing over all N modes), S = n_ssm (A and B shared by the
features h with the same h mod S), Cch = channels, Ck = Cch (x2 if bidirectional). In real mode (S4D-Real with
``is_real``) N real modes are stored and the factor 2 is still applied, exactly as in the reference.

Every computation runs in float32 / complex64 whatever the surrounding autocast dtype: the complex exponentials
and the FFT lose too much precision (or are unsupported) in half precision.

This file reads top to bottom as the paper: transforms -> initialisations -> discretisation -> the kernel in its
few-line Vandermonde form (:func:`reference_kernel`) -> the SSM module -> the layer. Two siblings hold the rest:
``ssm_kernels_s4d.py`` the fast paths the layer runs (the same kernel in O(sqrt(L)) memory, the FFT convolution with
hand-written backward passes, the inference cache), ``ptd_s4d.py`` the S4-PTD initialisation (``init="legs-ptd"``).
"""

import math

import torch
import torch.nn.functional as F
from torch import nn

from .ptd_s4d import hippo_legs, legs_ptd
from .ssm_kernels_s4d import (
    DecodeCache, InferenceCache, decode_tensors, fft_conv, forward_state, fused_step, vandermonde_kernel,
)


INITS = ("legs", "inv", "lin", "real", "diag", "legs-ptd")
DISCRETIZATIONS = ("zoh", "bilinear")
DT_TRANSFORMS = ("exp", "softplus")
REAL_TRANSFORMS = ("exp", "relu", "softplus", "none")


# ----------------------------------------------------------------------------------------------------------------
# Positivity transforms (reference: param_transform / inv_transform)
# ----------------------------------------------------------------------------------------------------------------


def param_transform(param: torch.Tensor, kind: str) -> torch.Tensor:
    """Map a stored parameter to the positive value it represents (dt, or -Re A)."""
    if kind == "exp":
        return torch.exp(param)
    if kind == "softplus":
        return F.softplus(param)
    if kind == "relu":
        return F.relu(param) + 1e-4
    if kind == "none":
        return param
    raise ValueError(f"unknown transform {kind!r}; expected one of exp, softplus, relu, none")


def inv_transform(value: torch.Tensor, kind: str) -> torch.Tensor:
    """Inverse of :func:`param_transform`, used at initialisation. Values are clamped to >= 1e-4 first."""
    value = value.clamp(min=1e-4)
    if kind == "exp":
        return torch.log(value)
    if kind == "softplus":
        return torch.log(torch.expm1(value))
    if kind in ("relu", "none"):
        return value
    raise ValueError(f"unknown transform {kind!r}; expected one of exp, softplus, relu, none")


# ----------------------------------------------------------------------------------------------------------------
# Initialisations of the diagonal A and of B (paper §4, Table 1)
# ----------------------------------------------------------------------------------------------------------------


def legs_diagonal(N: int) -> tuple[torch.Tensor, torch.Tensor]:
    """S4D-LegS (paper §4.1, eq. 9): the diagonal part of the DPLR form of HiPPO-LegS.

    The normal part A + PPᵀ (P_n = sqrt(n + 1/2)) equals -1/2·I + (skew-symmetric), so it is unitarily
    diagonalisable, A + PPᵀ = V Λ V*, with Λ = -1/2 + iω. One mode of each conjugate pair is kept (the N/2 with the
    most negative ω, sorted by Im ascending, so Im A <= 0 as stored) and B is expressed in the eigenbasis,
    B̃ = V* B.
    Returns A (N/2,) and B (N/2,) as complex128.
    """
    A, B = hippo_legs(N)
    P = torch.sqrt(torch.arange(N, dtype=torch.float64) + 0.5)
    normal = A + P[:, None] * P[None, :]
    real_part = torch.diagonal(normal).mean()  # = -1/2 up to round-off
    omega, V = torch.linalg.eigh(normal.to(torch.complex128) * -1j)  # (-i)·skew is Hermitian; eigenvalues real
    order = torch.argsort(omega)
    omega, V = omega[order][: N // 2], V[:, order][:, : N // 2]
    lam = real_part + 1j * omega
    B_tilde = V.conj().T @ B.to(torch.complex128)
    return lam, B_tilde


def init_diagonal(init: str, N: int) -> tuple[torch.Tensor, torch.Tensor]:
    """A (N/2,) and B (N/2,) for one init; complex128, Re A < 0, Im A <= 0 (the stored convention).

    n = 0..N/2-1:
      lin  (S4D-Lin,  eq. 10): A_n = -1/2 - iπn
      inv  (S4D-Inv,  eq. 11): A_n = -1/2 - i(N/π)(N/(2n+1) - 1)
      real (S4D-Real):         A_n = -(n+1)
      legs (S4D-LegS, eq. 9):  see :func:`legs_diagonal`
      legs-ptd (S4-PTD):       see ``ptd_s4d.legs_ptd``
    B = 1 except for legs and legs-ptd.
    """
    n = torch.arange(N // 2, dtype=torch.float64)
    ones = torch.ones(N // 2, dtype=torch.complex128)
    if init == "lin":
        return -0.5 - 1j * math.pi * n, ones
    if init == "inv":
        return -0.5 - 1j * (N / math.pi) * (N / (2 * n + 1) - 1), ones
    if init == "real":
        return (-(n + 1)).to(torch.complex128), ones
    if init == "legs":
        lam, B = legs_diagonal(N)
        # The reference clips Im B̃ to [-2, 2] (it only affects the lowest-frequency modes).
        return lam, torch.complex(B.real, B.imag.clamp(-2.0, 2.0))
    if init == "legs-ptd":
        lam, B, _, _ = legs_ptd(N)
        return lam, B
    raise ValueError(f"unknown init {init!r}; expected one of {', '.join(INITS)}")


def init_A_B(init: str, N: int, n_ssm: int) -> tuple[torch.Tensor, torch.Tensor]:
    """A and B for ``n_ssm`` independent copies: (n_ssm, N/2) complex128 each.

    ``diag`` is the reference's mixture: the first half of the copies use S4D-Inv, the second half S4D-Lin.
    """
    inits = ["inv", "lin"] if init == "diag" else [init]
    if n_ssm % len(inits) != 0:
        raise ValueError(f"init={init!r} needs n_ssm divisible by {len(inits)}, got n_ssm={n_ssm}")
    rows = []
    for name in inits:
        A, B = init_diagonal(name, N)
        rows += [(A, B)] * (n_ssm // len(inits))
    return torch.stack([a for a, _ in rows]), torch.stack([b for _, b in rows])


# ----------------------------------------------------------------------------------------------------------------
# Discretisation (paper §3.1, eq. 4) and the convolution kernel (paper §3.2, eq. 5-6)
# ----------------------------------------------------------------------------------------------------------------


def discretize(dtA: torch.Tensor, dt: torch.Tensor, A: torch.Tensor, B: torch.Tensor, disc: str):
    """Discretise the diagonal SSM with step dt.

    zoh:       Ā = exp(dtA),                 B̄ = (exp(dtA) - 1)/A · B
    bilinear:  Ā = (1 + dtA/2)/(1 - dtA/2),  B̄ = dt/(1 - dtA/2) · B
    Returns (log Ā, B̄), with Ā^l = exp(l · log Ā).
    """
    if disc == "zoh":
        return dtA, B * (torch.exp(dtA) - 1.0) / A
    if disc == "bilinear":
        denom = 1.0 - dtA / 2
        return torch.log((1.0 + dtA / 2) / denom), B * dt / denom
    raise ValueError(f"unknown disc {disc!r}; expected one of {', '.join(DISCRETIZATIONS)}")


def reference_kernel(CB: torch.Tensor, log_dA: torch.Tensor, L: int) -> torch.Tensor:
    """The convolution kernel as the paper writes it (eq. 5-6): K = 2·Re(C̄ · V_L(Ā)), C̄ = C ∘ B̄, V_L(Ā)_nl = Ā_n^l.

        K[c,h,l] = 2·Re Σ_n CB[c,h,n] · exp(l · log Ā[h,n]),   l = 0..L-1.

    With CB = C · B̄ and log Ā from :func:`discretize`, for ZOH this is the paper's
    K_l = 2·Re Σ_n C_n B_n (exp(dtA_n) - 1)/A_n · exp(dtA_n · l), and for bilinear Ā = (1 + dtA/2)/(1 - dtA/2),
    B̄ = dt/(1 - dtA/2) · B. In real mode A, B and C are real and the factor 2 stays, as in the reference.

    CB (Ck, H, N2) and log_dA (H, N2) complex, any precision -> K (Ck, H, L) real. This forms the whole (H, N2, L)
    Vandermonde matrix; the layer computes the same numbers with ``ssm_kernels_s4d.vandermonde_kernel`` in
    O(H·N2·sqrt(L)) memory, and the tests and benchmarks hold it to this definition.
    """
    steps = torch.arange(L, dtype=log_dA.real.dtype, device=log_dA.device)
    vandermonde = torch.exp(log_dA[..., None] * steps)  # Ā^l = exp(l · log Ā), (H, N2, L)
    return 2 * torch.einsum("chn,hnl->chl", CB, vandermonde).real


# ----------------------------------------------------------------------------------------------------------------
# The SSM parameters and the three ways of running them
# ----------------------------------------------------------------------------------------------------------------


class S4DKernel(nn.Module):
    """The diagonal SSM x' = Ax + Bu, y = Cx for H features, with its discretisation and kernel.

    Holds ``inv_dt``, ``A_real``, ``A_imag``, ``B`` and ``C`` (see the module docstring). ``D`` lives in
    :class:`S4DLayer`, as in the reference.
    """

    def __init__(
        self,
        d_model: int,
        d_state: int = 64,
        channels: int = 1,
        n_ssm: int | None = None,
        init: str = "legs",
        disc: str = "zoh",
        dt_min: float = 1e-3,
        dt_max: float = 1e-1,
        dt_tie: bool = True,
        dt_transform: str = "exp",
        real_transform: str = "exp",
        is_real: bool = False,
        bidirectional: bool = False,
    ):
        super().__init__()
        self.H, self.channels = d_model, channels
        self.S = d_model if n_ssm is None else n_ssm
        self.N2 = d_state if is_real else d_state // 2  # stored modes
        self.init, self.disc = init, disc
        self.dt_min, self.dt_max, self.dt_tie = dt_min, dt_max, dt_tie
        self.dt_transform, self.real_transform = dt_transform, real_transform
        self.is_real, self.bidirectional = is_real, bidirectional
        Ck = channels * (2 if bidirectional else 1)
        f32 = dict(dtype=torch.float32)  # explicit: survives from_pretrained(dtype=bf16)
        cplx = () if is_real else (2,)
        self.inv_dt = nn.Parameter(torch.empty(self.H, 1 if dt_tie else self.N2, **f32))
        self.A_real = nn.Parameter(torch.empty(self.S, self.N2, **f32))
        if not is_real:
            self.A_imag = nn.Parameter(torch.empty(self.S, self.N2, **f32))
        self.B = nn.Parameter(torch.empty(1, self.S, self.N2, *cplx, **f32))
        self.C = nn.Parameter(torch.empty(Ck, self.H, self.N2, *cplx, **f32))
        self._inference_cache = InferenceCache()

    @torch.no_grad()
    def initial_values(self, generator: torch.Generator | None = None) -> dict[str, torch.Tensor]:
        """The reference's initialisation (S4D paper §4): dt log-uniform in [dt_min, dt_max], A and B from the init
        formula, C complex standard normal (each part N(0, 1/2)). Returns {parameter name: float32 value}."""
        N_init = 2 * self.N2  # real mode: the reference doubles d_state for the init, then keeps real parts
        A, B = init_A_B(self.init, N_init, self.S)
        u = torch.rand(self.inv_dt.shape, generator=generator, dtype=torch.float64)
        dt = torch.exp(u * (math.log(self.dt_max) - math.log(self.dt_min)) + math.log(self.dt_min))
        values = {
            "inv_dt": inv_transform(dt, self.dt_transform),
            "A_real": inv_transform(-A.real, self.real_transform),
            "C": torch.randn(self.C.shape, generator=generator) * math.sqrt(0.5),
        }
        if self.is_real:
            values["B"] = B.real[None]
        else:
            values["A_imag"] = inv_transform(-A.imag, "none")
            values["B"] = torch.view_as_real(B)[None]
        return {k: v.to(torch.float32) for k, v in values.items()}

    @torch.no_grad()
    def reset_parameters(self, generator: torch.Generator | None = None):
        for name, value in self.initial_values(generator).items():
            getattr(self, name).copy_(value)

    # -- continuous parameters -> discrete ones ------------------------------------------------------------------

    def _complex(self, p: torch.Tensor) -> torch.Tensor:
        p = p.float()
        return p.to(torch.complex64) if self.is_real else torch.view_as_complex(p.contiguous())

    def discrete_parameters(self, rate: float = 1.0):
        """Return (C (Ck,H,N2), log Ā (H,N2), B̄ (H,N2)), complex64, with dt multiplied by ``rate``.

        A and B are tiled to the H features as h -> h mod S (the reference's ``(v t)`` repeat). Cached while no
        gradient flows (see ``ssm_kernels_s4d.InferenceCache``).
        """
        return self._inference_cache.memoised(self, rate, ("discrete", rate), lambda: self._discrete_parameters(rate))

    def _discrete_parameters(self, rate: float):
        dt = param_transform(self.inv_dt.float(), self.dt_transform) * rate  # (H, 1) or (H, N2)
        A_real = -param_transform(self.A_real.float(), self.real_transform)
        A = A_real.to(torch.complex64) if self.is_real else torch.complex(A_real, -self.A_imag.float())
        B = self._complex(self.B)[0]
        repeats = self.H // self.S
        A, B = A.repeat(repeats, 1), B.repeat(repeats, 1)  # (H, N2)
        dtA = dt * A
        log_dA, dB = discretize(dtA, dt, A, B, self.disc)
        return self._complex(self.C), log_dA, dB

    def kernel(self, L: int, rate: float = 1.0) -> torch.Tensor:
        """The convolution kernel K (Ck, H, L) of paper eq. 5, K_l = C Ā^l B̄ (times 2·Re): the numbers of
        :func:`reference_kernel`, computed by ``ssm_kernels_s4d.vandermonde_kernel``.

        While no gradient flows, the first kernel computed (per rate) is kept and shorter ones are its prefix (K_l does
        not depend on L); a cached kernel modified in place by a caller is detected and recomputed.
        """
        if L < 1:
            raise ValueError(f"kernel length L must be >= 1; got L={L}")
        cached = self._inference_cache.memoised(self, rate, ("kernel", rate))
        if cached is not None and cached[0].shape[-1] >= L:
            return cached[0][..., :L]
        C, log_dA, dB = self.discrete_parameters(rate)
        K = vandermonde_kernel(C * dB, log_dA, L)
        self._inference_cache.memoised(self, rate, ("kernel", rate), lambda: (K,))  # kept only if none is cached
        return K

    def step_parameters(self, rate: float = 1.0):
        """(C (Ck,H,N2), Ā (H,N2), B̄ (H,N2)) complex64 for the recurrence, cached as :meth:`discrete_parameters`."""

        def compute():
            C, log_dA, dB = self.discrete_parameters(rate)
            return C, torch.exp(log_dA), dB

        return self._inference_cache.memoised(self, rate, ("step", rate), compute)


def _no_autocast(device_type: str):
    return torch.autocast(device_type=device_type, enabled=False)


class S4DLayer(nn.Module):
    """One S4D layer as the reference ``S4Block(mode='diag')``: SSM convolution + D skip -> GELU -> dropout ->
    Linear -> GLU. Input and output are (B, L, H).

    Three equivalent ways to run it:
      * ``forward(u)``            convolution with the kernel K (FFT), the training mode;
      * ``forward(u, state=s0)``  the same plus the contribution of an initial state, returning the final state
                                  (state forwarding, for streaming / prefill), without a loop over time;
      * ``step(u_t, state)``      one step of the recurrence x_t = Ā x_{t-1} + B̄ u_t, y_t = C x_t + D u_t
                                  (``decode_step``: the same step for generate(), in place, Ā, B̄, C prepared once).
    """

    def __init__(self, d_model: int, final_act: str = "glu", dropout: float = 0.0, l_max: int | None = None, **ssm):
        super().__init__()
        self.H = d_model
        self.l_max = l_max
        self.kernel = S4DKernel(d_model, **ssm)
        self.channels = self.kernel.channels
        self.bidirectional = self.kernel.bidirectional
        self.D = nn.Parameter(torch.empty(self.channels, d_model, dtype=torch.float32))
        self.activation = nn.GELU()
        self.dropout = nn.Dropout(dropout)
        if final_act not in ("glu", "id"):
            raise ValueError(f"final_act must be 'glu' or 'id', got {final_act!r}")
        self.final_act = final_act
        out = 2 * d_model if final_act == "glu" else d_model
        self.output_linear = nn.Linear(self.channels * d_model, out)

    def kernel_length(self, L: int, rate: float) -> int:
        return L if self.l_max is None else min(L, round(self.l_max / rate))

    def _ssm_output(self, y: torch.Tensor, u: torch.Tensor, dtype: torch.dtype) -> torch.Tensor:
        """(B, C, H, L) SSM output + D skip -> flatten channels (c·H + h) -> GELU -> dropout -> Linear -> GLU."""
        y = y + self.D.float()[None, :, :, None] * u[:, None]
        return self._output(y.flatten(1, 2).transpose(1, 2), dtype)  # (B, L, C·H)

    def _output(self, y: torch.Tensor, dtype: torch.dtype) -> torch.Tensor:
        """(..., C·H) -> GELU -> dropout -> Linear -> GLU."""
        y = self.dropout(self.activation(y.to(dtype)))
        y = self.output_linear(y)
        return F.glu(y, dim=-1) if self.final_act == "glu" else y

    def forward(
        self,
        hidden_states: torch.Tensor,
        state: torch.Tensor | None = None,
        rate: float = 1.0,
        return_state: bool = False,
    ) -> tuple[torch.Tensor, torch.Tensor | None]:
        """hidden_states (B, L, H); state (B, H, N2) complex or None. Returns (output (B, L, H), next state or None)."""
        if (state is not None or return_state) and self.bidirectional:
            raise ValueError("state forwarding needs a unidirectional layer; this layer is bidirectional")
        if hidden_states.dim() != 3 or 0 in hidden_states.shape[:2]:
            raise ValueError("hidden_states must have shape (batch, length, d_model) with batch >= 1 and length >= 1; "
                             f"got {tuple(hidden_states.shape)}")
        dtype = hidden_states.dtype
        with _no_autocast(hidden_states.device.type):
            u = hidden_states.float().transpose(1, 2)  # (B, H, L)
            L = u.shape[-1]
            K = self.kernel.kernel(self.kernel_length(L, rate), rate)
            y = fft_conv(u, K, self.bidirectional)  # (B, C, H, L)
            next_state = None
            if state is not None or return_state:
                C, log_dA, dB = self.kernel.discrete_parameters(rate)
            if state is not None:
                y = y + self._state_contribution(C, log_dA, state, L)
            if return_state:
                next_state = forward_state(u, log_dA, dB, state)
        # the D skip and output projection run under the caller's autocast (bf16/fp16 Linear with fp32 weights)
        y = self._ssm_output(y, u, dtype)
        return y, next_state

    def _state_contribution(self, C, log_dA, state, L):
        """y_state[b,c,h,l] = 2·Re Σ_n C[c,h,n] · s0[b,h,n] · Ā^{l+1}[h,n] (the free response from s0)."""
        CS = C[None] * state.to(torch.complex64)[:, None]  # (B, C, H, N2)
        b, c, h, n = CS.shape
        return vandermonde_kernel(CS.reshape(b * c, h, n), log_dA, L + 1)[..., 1:].reshape(b, c, h, L)

    def default_state(self, batch_size: int, device=None) -> torch.Tensor:
        """The zero state (B, H, N2), complex64 (real mode too: its imaginary part stays 0)."""
        return torch.zeros(batch_size, self.H, self.kernel.N2, dtype=torch.complex64, device=device)

    def step(self, u_t: torch.Tensor, state: torch.Tensor, rate: float = 1.0) -> tuple[torch.Tensor, torch.Tensor]:
        """One recurrent step (paper eq. 4): x_t = Ā x_{t-1} + B̄ u_t, y_t = 2·Re(C x_t) + D u_t.

        u_t (B, H), state (B, H, N2) complex -> (output (B, H), next state). O(H·N) per step, whatever the
        length of the past.
        """
        if self.bidirectional:
            raise ValueError("a bidirectional layer cannot be stepped: its output depends on future inputs")
        dtype = u_t.dtype
        with _no_autocast(u_t.device.type):
            u = u_t.float()
            C, dA, dB = self.kernel.step_parameters(rate)
            state = dA * state.to(torch.complex64) + dB * u[..., None]
            y = 2 * (C[None] * state[:, None]).sum(-1).real  # (B, C, H)
        y = self._ssm_output(y[..., None], u[..., None], dtype)[:, 0]
        return y, state

    def decode_step(self, u_t: torch.Tensor, state: torch.Tensor, store: DecodeCache, rate: float = 1.0):
        """:meth:`step` for generation: the same numbers, with ``state`` (B, H, N2) complex64 updated **in place**
        and Ā, B̄, C, D rearranged once per ``store`` (``ssm_kernels_s4d.fused_step``). Inference only: nothing is
        differentiable; the caller checks that no gradient is wanted. u_t (B, H) or (B, 1, H) -> output, same shape.

        The step returns z = y/√2, y = 2·Re(C x_t) + D u_t, so that the exact GELU is one ``erf`` and one ``addcmul``
        (cheaper on CPU than ``F.gelu``'s exact kernel at these sizes), its 1/√2 going into the Linear's ``alpha``:

            Linear(GELU(y)) = W·(y/2·(1 + erf(y/√2))) + b = (1/√2)·W·(z + z·erf z) + b
        """
        tensors = store.get((*self.kernel._parameters.values(), self.D), rate,
                            lambda: decode_tensors(*self.kernel.step_parameters(rate), self.D))
        u = u_t.float()
        if u.dim() == 2:
            u = u[:, None]
        z = fused_step(u, state, store.pairs(state), tensors)  # (B, C, H)
        linear = self.output_linear
        if self.training or u_t.dtype != torch.float32 or self.activation.approximate != "none" or linear.bias is None:
            y = self._output(z.flatten(1) * math.sqrt(2.0), u_t.dtype)
        else:
            y = torch.addmm(linear.bias, torch.addcmul(z, z, torch.erf(z)).flatten(1), linear.weight.t(),
                            alpha=math.sqrt(0.5))
            y = F.glu(y, dim=-1) if self.final_act == "glu" else y
        return y.view(u_t.shape)
