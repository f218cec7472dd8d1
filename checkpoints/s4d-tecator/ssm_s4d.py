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
"""

import functools
import math

import torch
import torch.nn.functional as F
from torch import nn
from torch.autograd.function import once_differentiable


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


def hippo_legs(N: int) -> tuple[torch.Tensor, torch.Tensor]:
    """The HiPPO-LegS matrices: A_nk = -sqrt(2n+1)sqrt(2k+1) (n > k), -(n+1) (n = k), 0 (n < k); B_n = sqrt(2n+1)."""
    q = torch.arange(N, dtype=torch.float64)
    r = torch.sqrt(2 * q + 1)
    A = -torch.tril(r[:, None] * r[None, :], diagonal=-1) - torch.diag(q + 1)
    return A, r.clone()


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


# S4-PTD (Yu, Nigmetov, Morozov, Mahoney, Erichson, "Robustifying State-space Models for Long Sequences via
# Approximate Diagonalization", ICLR 2024, arXiv:2310.01698, §4): perturb HiPPO-LegS, then diagonalise.

PTD_EPS = 0.5  # ‖E‖₂, the spectral norm of the perturbation (absolute: see legs_ptd)
PTD_SEED = 0
PTD_STEPS = 100  # projected-gradient steps on log κ(V)
PTD_MAX_DRAWS = 1000


def eigenvector_condition(V: torch.Tensor) -> torch.Tensor:
    """κ(V) = σ_max / σ_min of the eigenvector matrix V (N, N) with its columns scaled to unit norm.

    Unit columns make κ independent of the arbitrary eigenvector scaling; by van der Sluis' theorem it is within a
    factor sqrt(N) of the smallest κ over all column scalings.
    """
    V = V / torch.linalg.vector_norm(V, dim=0, keepdim=True)
    s = torch.linalg.svdvals(V)
    return s[0] / s[-1]


def _ptd_admissible(lam: torch.Tensor) -> bool:
    """Every eigenvalue strictly stable and clearly off the real axis.

    The kernel stores one mode of each conjugate pair and doubles its real part (2·Re), which is exact only when no
    eigenvalue is real: a real eigenvalue has no partner to pair with. A relative margin of 1e-3 keeps the decision
    away from round-off (and |Im| far above the 1e-4 clamp of the stored A_imag).
    """
    return bool((lam.real < 0).all() and (lam.imag.abs() > 1e-3 * lam.abs()).all())


@functools.lru_cache(maxsize=32)
def _legs_ptd_perturbation(N: int, eps: float, seed: int, steps: int) -> torch.Tensor:
    A, _ = hippo_legs(N)
    generator = torch.Generator().manual_seed(seed)
    for _ in range(PTD_MAX_DRAWS):
        G = torch.randn(N, N, generator=generator, dtype=torch.float64)
        E = G * (eps / torch.linalg.matrix_norm(G, ord=2))
        if _ptd_admissible(torch.linalg.eigvals(A + E)):
            break
    else:
        raise ValueError(
            f"legs-ptd found no perturbation of norm eps={eps} leaving HiPPO-LegS (N={N}) with only stable, non-real "
            f"eigenvalues in {PTD_MAX_DRAWS} draws; use another d_state or eps"
        )
    best_kappa, best_E = math.inf, E.clone()
    E.requires_grad_(True)
    optimizer = torch.optim.Adam([E], lr=0.02 * eps)
    # Matrices this small gain nothing from threads; on a loaded machine the eig backward ran 10-70x slower with 2.
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        with torch.enable_grad():
            for step in range(steps + 1):
                lam, V = torch.linalg.eig(A + E)
                log_kappa = torch.log(eigenvector_condition(V))
                if log_kappa.item() < best_kappa and _ptd_admissible(lam.detach()):
                    best_kappa, best_E = log_kappa.item(), E.detach().clone()
                if step == steps:
                    break
                optimizer.zero_grad()
                log_kappa.backward()
                optimizer.step()
                with torch.no_grad():  # back onto the sphere ‖E‖₂ = eps
                    E.mul_(eps / torch.linalg.matrix_norm(E, ord=2))
    finally:
        torch.set_num_threads(threads)
    return best_E


def legs_ptd(
    N: int, eps: float = PTD_EPS, seed: int = PTD_SEED, steps: int = PTD_STEPS
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
    """S4-PTD: diagonalise a perturbed HiPPO-LegS matrix, Ã = A + E = Ṽ Λ̃ Ṽ⁻¹, and take B̃ = Ṽ⁻¹ B (paper §4).

    HiPPO-LegS itself is diagonalisable only in an exponentially ill-conditioned basis: κ(V) >= 10^4.3 at N = 8,
    10^10.1 at N = 16, 10^22 at N = 32, 10^46 at N = 64 for any eigenvector matrix V (exact arithmetic in
    tests/test_ptd.py). S4D-LegS therefore drops the low-rank part of S4's DPLR form and keeps the normal part, which
    matches S4 only weakly: its transfer function G(iω) keeps spikes that do not shrink with N (paper §3). The paper
    chooses E to minimise κ(Ṽ) + γ‖E‖ (§4.2; solved there by gradient descent). Here the size of E is fixed
    instead, ‖E‖₂ = ``eps``, and κ is minimised on that sphere:

      1. E₀ = eps · G/‖G‖₂, with G a real Gaussian (Ginibre) matrix from a generator seeded with ``seed`` (the
         paper's random-perturbation result: such an E alone already gives κ(Ṽ) of about poly(N)/eps). Draws are
         repeated from the same generator until every eigenvalue of A + E is stable and non-real (see below);
      2. ``steps`` Adam steps on log κ(Ṽ) (unit-norm columns, :func:`eigenvector_condition`), each followed by
         rescaling to ‖E‖₂ = eps. The admissible iterate with the smallest κ is kept. Gradient descent improves κ
         1.6-5x over the random start (38.9 -> 24.8 at N = 8, 765 -> 168 at N = 16, 7685 -> 1587 at N = 64).

    Why ``eps`` is absolute, and 0.5. The paper's strong-convergence bound, |G_PTD(iω) - G_S4(iω)| <= about
    (2 ln N + 4)·‖E‖ uniformly in ω, is in the absolute norm of E, so a fixed ‖E‖ gives the same closeness to S4
    at every N. A fixed ratio ‖E‖/‖A‖ would not: ‖A‖₂ grows like N² (2.6e3 at N = 64, so a ratio of 1e-2 would
    mean ‖E‖₂ = 26). Stability sets the scale: max_ω ‖(iω - A)⁻¹‖₂ is 1.66 (N = 8) ... 1.82 (N = 64), below 2
    (tested), so any E with ‖E‖₂ <= 0.5 keeps every eigenvalue of A + E in the open left half plane; past
    1/max_ω ‖(iω - A)⁻¹‖₂ ≈ 0.55 some E make A + E unstable. Relative to ‖A‖₂ the default is 1.2e-2 at N = 8,
    3.1e-3 at N = 16, 1.9e-4 at N = 64.

    Measured with the defaults (``python tests/test_ptd.py``): κ(Ṽ) = 24.8 (N = 8), 168 (N = 16), 511 (N = 32),
    1587 (N = 64). Relative sup error of G(iω) against S4, for two random real C: S4-PTD 0.16 and 0.09 (N = 16),
    0.11 and 0.20 (N = 64). S4D-LegS (with B/2, the scaling under which it converges weakly): 14.6 and 2.8 (N = 16),
    33.7 and 12.2 (N = 64).

    Eigenvalues: A + E is real, so its eigenvalues come in conjugate pairs. The N/2 with Im < 0 are kept, sorted by
    Im ascending (the stored A_imag = -Im A is then > 0 and far above the 1e-4 clamp of inv_transform). The 2·Re
    kernel convention supplies the other half. A real eigenvalue would have no partner, so any draw or iterate
    with one is rejected. Re λ is not -1/2 as in S4D-LegS: it lies between about -0.85 and -11.9 (N = 8) ...
    -448 (N = 64), and is checked to be < 0. In real mode (``is_real``) the caller keeps the real parts, as for
    the other inits.

    Eigenvectors: unit norm. Each is rotated so that its B̃_k is real and >= 0, because eig's phases are
    arbitrary. The other half of Ṽ is the complex conjugate of the kept half. B̃ is larger than S4D-LegS's
    (‖B̃‖₂ = 39 at N = 8, 317 at N = 16, 7.6e3 at N = 64, against ‖B‖₂ = N): Ṽ is not unitary.

    C: the paper also maps C to C̃ = C Ṽ. Our C is drawn at random in the diagonal basis, so only A and B come from
    this function.

    Returns (Λ (N/2,), B̃ (N/2,), Ṽ (N, N/2), E (N, N)): complex128 for the first three, float64 for E. Deterministic
    and independent of the global RNG; E is cached per (N, eps, seed, steps), since its search costs
    O(steps · N³): about a second at N = 64, half a minute at N = 256 on a busy 2-core CPU, once per process.
    """
    if N < 2 or N % 2:
        raise ValueError(f"legs-ptd needs an even state size N >= 2 (one mode per conjugate pair); got N={N}")
    if not eps > 0 or steps < 0:
        raise ValueError(f"legs-ptd needs eps > 0 and steps >= 0; got eps={eps}, steps={steps}")
    A, B = hippo_legs(N)
    E = _legs_ptd_perturbation(N, float(eps), int(seed), int(steps)).clone()
    lam, V = torch.linalg.eig(A + E)
    keep = torch.nonzero(lam.imag < 0).squeeze(-1)
    keep = keep[torch.argsort(lam.imag[keep])]
    lam, V = lam[keep], V[:, keep]
    if len(keep) != N // 2 or not bool((lam.real < 0).all()):  # guaranteed by _ptd_admissible
        raise RuntimeError(f"legs-ptd: A + E (N={N}) must have N/2 conjugate pairs, all with Re < 0; got {lam}")
    V = V / torch.linalg.vector_norm(V, dim=0, keepdim=True)
    B_tilde = torch.linalg.solve(torch.cat([V, V.conj()], dim=1), B.to(torch.complex128))[: N // 2]
    phase = torch.exp(1j * B_tilde.angle())
    return lam, B_tilde.abs().to(torch.complex128), V * phase, E


def init_diagonal(init: str, N: int) -> tuple[torch.Tensor, torch.Tensor]:
    """A (N/2,) and B (N/2,) for one init; complex128, Re A < 0, Im A <= 0 (the stored convention).

    n = 0..N/2-1:
      lin  (S4D-Lin,  eq. 10): A_n = -1/2 - iπn
      inv  (S4D-Inv,  eq. 11): A_n = -1/2 - i(N/π)(N/(2n+1) - 1)
      real (S4D-Real):         A_n = -(n+1)
      legs (S4D-LegS, eq. 9):  see :func:`legs_diagonal`
      legs-ptd (S4-PTD):       see :func:`legs_ptd`
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


# Magnitudes |Ā^t| below exp(-30) ≈ 1e-13 are set to exactly 0: such terms are far below float32 resolution of any sum
# they enter, and keeping them produces subnormal floats, which make CPU matrix products and FFTs several times
# slower.
_UNDERFLOW_EXPONENT = -30.0


def _powers(log_dA: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
    """Ā^t = exp(t · log Ā), complex64, for log_dA and real exponents t broadcast together.

    Built from a real exp, cos and sin (complex exp is several times slower on CPU), written straight into the
    interleaved complex layout; magnitudes below exp(-30) become exactly 0.
    """
    magnitude = torch.exp(F.threshold(log_dA.real * t, _UNDERFLOW_EXPONENT, -math.inf))
    phase = log_dA.imag * t
    if torch.is_grad_enabled() and log_dA.requires_grad:
        return torch.complex(magnitude * torch.cos(phase), magnitude * torch.sin(phase))
    out = torch.empty(*magnitude.shape, 2, device=magnitude.device, dtype=magnitude.dtype)
    torch.mul(magnitude, torch.cos(phase), out=out[..., 0])
    torch.mul(magnitude, torch.sin(phase), out=out[..., 1])
    return torch.view_as_complex(out)


def _split_length(L: int) -> tuple[int, int]:
    """(M, Q) with M ≈ sqrt(L) and Q·M >= L: l = q·M + r, 0 <= r < M, 0 <= q < Q."""
    M = max(1, int(math.ceil(math.sqrt(L))))
    return M, (L + M - 1) // M


class _VandermondeKernel(torch.autograd.Function):
    """K = 2·Re(CB · V_L(Ā)) with l = q·M + r, Ā^l = Ā^{qM}·Ā^r, and a hand-written backward.

    Forward: W = 2·CB·Ā^{qM} (C, H, Q, N2); K[q, r] = Re Σ_n W[q, n] Ā^r[n] = Σ_n (Re W Re Ā^r - Im W Im Ā^r), one real
    matrix product of (Q × 2N2) by (2N2 × M) per feature (half the work of a complex product).
    Backward, with g = dLoss/dK and the gradient convention of torch for complex inputs (dRe + i·dIm):
        S0 = Σ_l g_l Ā^l,  S1 = Σ_l l·g_l Ā^l       (per c, h, n)
        grad CB = 2·conj(S0),  grad log Ā = 2·Σ_c conj(CB · S1)
    where Σ_l g_l l^k Ā^l = Σ_q Ā^{qM} Σ_r g[qM + r] (qM + r)^k Ā^r: again one real matrix product, of (Q × M) by
    (M × 4N2). Saved for backward: CB, Ā^r and Ā^{qM}, O(H·N2·sqrt(L)).
    """

    @staticmethod
    def forward(ctx, CB, log_dA, L):
        C_, H, N2 = CB.shape
        M, Q = _split_length(L)
        t = torch.cat([torch.arange(M), torch.arange(Q) * M]).to(device=log_dA.device, dtype=torch.float32)
        powers = _powers(log_dA[:, None, :], t[:, None])  # (H, M + Q, N2): Ā^r, r < M, then Ā^{qM}, q < Q
        V_r, V_q = powers[:, :M], powers[:, M:]
        W = torch.view_as_real((2 * CB)[:, :, None, :] * V_q)  # (C, H, Q, N2, 2)
        W[..., 1].neg_()  # Re(w·v) = Re w·Re v - Im w·Im v: (Re, -Im) pairs of W against (Re, Im) pairs of Ā^r
        K = torch.matmul(W.reshape(C_, H, Q, 2 * N2), torch.view_as_real(V_r).reshape(H, M, 2 * N2).transpose(-1, -2))
        K = K.reshape(C_, H, Q * M)[..., :L]
        ctx.save_for_backward(CB, powers)
        ctx.split = (M, Q)
        return K

    @staticmethod
    @once_differentiable
    def backward(ctx, grad_K):
        CB, powers = ctx.saved_tensors
        (M, Q), (C_, H, N2), L = ctx.split, CB.shape, grad_K.shape[-1]
        V_r, V_q = powers[:, :M], powers[:, M:]
        G = F.pad(grad_K, (0, Q * M - L)).reshape(C_, H, Q, M)
        t = torch.arange(max(M, Q), device=G.device, dtype=torch.float32)
        right = torch.view_as_real(torch.cat([V_r, V_r * t[:M, None]], dim=-1)).reshape(H, M, 4 * N2)
        PR = torch.view_as_complex(torch.matmul(G, right).reshape(C_, H, Q, 2 * N2, 2))
        P, R = PR[..., :N2], PR[..., N2:]  # Σ_r g[qM + r] Ā^r, Σ_r r·g[qM + r] Ā^r  (C, H, Q, N2)
        S0 = (P * V_q).sum(-2)
        S1 = ((R + P * (t[:Q, None] * M)) * V_q).sum(-2)
        grad_CB = 2 * S0.conj() if ctx.needs_input_grad[0] else None
        grad_log_dA = 2 * (CB * S1).conj().sum(0) if ctx.needs_input_grad[1] else None
        return grad_CB, grad_log_dA, None


def vandermonde_kernel(CB: torch.Tensor, log_dA: torch.Tensor, L: int) -> torch.Tensor:
    """K[c,h,l] = 2·Re Σ_n CB[c,h,n] · exp(l · log_dA[h,n]), l = 0..L-1 (paper eq. 6: K = C̄ · V_L(Ā)).

    CB (C, H, N2) complex, log_dA (H, N2) complex -> K (C, H, L) float32.

    Written without ever forming the (H, N2, L) Vandermonde matrix: with l = q·M + r (M ≈ sqrt(L)),
    Ā^l = Ā^{qM} · Ā^r, so the sum over n is a batched matrix product of (Q × N2) by (N2 × M) per feature h (see
    :class:`_VandermondeKernel`). Memory O(H·N2·sqrt(L)) besides the output, in the forward and the backward pass.
    """
    return _VandermondeKernel.apply(CB, log_dA, L)


def fast_fft_length(n: int) -> int:
    """Smallest length >= n whose only prime factors are 2, 3 and 5 (cheap FFT sizes)."""
    while True:
        m = n
        for p in (2, 3, 5):
            while m % p == 0:
                m //= p
        if m == 1:
            return n
        n += 1


def _circular_conv(u: torch.Tensor, K: torch.Tensor, n: int, keep_spectra: bool):
    """y = (u ⊛ K)[:L], the length-n circular convolution of the zero-padded u (B, H, L) with K (C, H, <=n)."""
    L = u.shape[-1]
    u_f = torch.fft.rfft(u, n=n)  # (B, H, n/2+1)
    K_f = torch.fft.rfft(K, n=n)  # (C, H, n/2+1)
    if keep_spectra or K.shape[0] != 1:
        y_f = u_f[:, None] * K_f[None]
    else:  # inference: multiply in place, one spectrum-sized buffer less at the peak
        y_f = u_f.mul_(K_f)[:, None]
    y = torch.fft.irfft(y_f, n=n)[..., :L]  # (B, C, H, L)
    return y, (u_f, K_f) if keep_spectra else None


def _reflect(x: torch.Tensor, n: int, length: int) -> torch.Tensor:
    """y[..., t] = x[..., (-t) mod n] for t = 0..length-1, where x holds the first m <= n entries (the rest are 0)."""
    m = x.shape[-1]
    first = max(1, n - m + 1)  # y[t] = x[n - t] needs n - t < m
    y = (torch.zeros if first > 1 else torch.empty)(*x.shape[:-1], length, dtype=x.dtype, device=x.device)
    y[..., 0] = x[..., 0]
    if first < length:
        y[..., first:] = x[..., n - length + 1 : n - first + 1].flip(-1)
    return y


def _sum_dim(x: torch.Tensor, dim: int) -> torch.Tensor:
    return x.squeeze(dim) if x.shape[dim] == 1 else x.sum(dim)


class _FFTConvolution(torch.autograd.Function):
    """:func:`_circular_conv` with a hand-written backward.

    Autograd's generic backward of ``rfft`` zero-pads the gradient to a full complex length-n signal and runs a
    complex FFT on it, for u and for K. Here the adjoints are written as correlations, one real FFT each:
        grad_u = (g ⋆ K)[:L] = irfft(G · conj(K_f))[:L],     grad_K = Σ_b (g ⋆ u)[:Lk] = irfft(Σ_b G · conj(U_f))[:Lk]
    with G = rfft(g, n) (g zero-padded to n), exact for the circular convolution computed forward. The conjugates
    are never formed (that costs a full pass over the spectra): with g̃[t] = g[(-t) mod n], rfft(g̃) = conj(G), and
    irfft(conj Z)[t] = irfft(Z)[(-t) mod n], so both products use the saved spectra as they are.
    """

    @staticmethod
    def forward(ctx, u, K, n):
        y, spectra = _circular_conv(u, K, n, keep_spectra=True)
        ctx.save_for_backward(*spectra)
        ctx.lengths = (u.shape[-1], K.shape[-1], n)
        return y

    @staticmethod
    @once_differentiable
    def backward(ctx, grad_y):
        u_f, K_f = ctx.saved_tensors
        L, Lk, n = ctx.lengths
        G_conj = torch.fft.rfft(_reflect(grad_y, n, n), n=n)  # conj(rfft(g, n)), (B, C, H, n/2+1)
        grad_u = grad_K = None
        if ctx.needs_input_grad[0]:
            grad_u = _reflect(torch.fft.irfft(_sum_dim(G_conj * K_f[None], 1), n=n), n, L)
        if ctx.needs_input_grad[1]:
            grad_K = _reflect(torch.fft.irfft(_sum_dim(G_conj * u_f[:, None], 0), n=n), n, Lk)
        return grad_u, grad_K, None


def fft_conv(u: torch.Tensor, K: torch.Tensor, bidirectional: bool = False) -> torch.Tensor:
    """Causal (or two-sided) convolution of u (B, H, L) with kernels K (Ck, H, Lk) -> (B, C, H, L).

    Unidirectional: y[t] = Σ_{0 <= t-s < Lk} K[t-s] u[s].
    Bidirectional (K = [K_f; K_b], C = Ck/2): y[t] = Σ_{s<=t} K_f[t-s] u[s] + Σ_{s>t} K_b[s-t-1] u[s].
    The anti-causal taps are shifted by one (K_b[0] multiplies u[t+1]) exactly as in the reference, so trained
    bidirectional weights reproduce.

    Computed as a circular convolution of length n >= L + Lk with a fast FFT size (no wrap-around reaches the first L
    outputs); the backward pass is :class:`_FFTConvolution`'s.
    """
    L, Lk = u.shape[-1], K.shape[-1]
    n = fast_fft_length(L + Lk)
    if bidirectional:
        K_f, K_b = K.chunk(2, dim=0)
        K = F.pad(K_f, (0, n - Lk)) + F.pad(K_b.flip(-1), (n - Lk, 0))
    if torch.is_grad_enabled() and (u.requires_grad or K.requires_grad):
        return _FFTConvolution.apply(u, K, n)
    return _circular_conv(u, K, n, keep_spectra=False)[0]


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
        gradient flows (see :meth:`_cache`).
        """
        cache = self._cache(rate)
        return _memoised(cache, ("discrete", rate), lambda: self._discrete_parameters(rate))

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
        """The convolution kernel K (Ck, H, L) of paper eq. 5, K_l = C Ā^l B̄ (times 2·Re).

        While no gradient flows, the longest kernel computed so far (per rate) is kept and shorter ones are its prefix
        (K_l does not depend on L); a cached kernel modified in place by a caller is detected and recomputed.
        """
        cache = self._cache(rate)
        longest = _memoised(cache, ("kernel", rate), None)
        if longest is not None and longest[0].shape[-1] >= L:
            return longest[0][..., :L]
        C, log_dA, dB = self.discrete_parameters(rate)
        K = vandermonde_kernel(C * dB, log_dA, L)
        _memoised(cache, ("kernel", rate), lambda: (K,))
        return K

    def step_parameters(self, rate: float = 1.0):
        """(C (Ck,H,N2), Ā (H,N2), B̄ (H,N2)) complex64 for the recurrence, cached as :meth:`discrete_parameters`."""
        cache = self._cache(rate)

        def compute():
            C, log_dA, dB = self.discrete_parameters(rate)
            return C, torch.exp(log_dA), dB

        return _memoised(cache, ("step", rate), compute)

    def _cache(self, rate) -> dict | None:
        """The store of values derived from the parameters (discrete parameters, kernels), or None when they must be
        recomputed.

        Caching is used only while no autograd graph is recorded through the parameters (inference, or a frozen SSM)
        and ``rate`` is a plain number. The store is emptied whenever any parameter differs from the copy taken when
        it was filled, whatever changed it (optimizer step, ``load_state_dict``, in-place edits through ``.data``,
        ``.to()``): comparing values costs O(H·N), nothing next to a kernel, and cannot miss a change the way version
        counters miss edits made through ``.data``.
        """
        params = list(self.parameters())
        if (
            isinstance(rate, torch.Tensor)
            or (torch.is_grad_enabled() and any(p.requires_grad for p in params))
            or torch.compiler.is_compiling()
        ):
            return None
        snapshot = getattr(self, "_cache_snapshot", None)
        if snapshot is None or len(snapshot) != len(params) or not all(
            s.shape == p.shape and s.dtype == p.dtype and s.device == p.device and torch.equal(s, p)
            for s, p in zip(snapshot, params)
        ):
            self._cache_snapshot = [p.detach().clone() for p in params]
            self._cache_entries = {}
        return self._cache_entries


_CACHE_ENTRIES = 8  # per S4DKernel: a few rates x (discrete parameters, step parameters, kernel)


def _memoised(cache: dict | None, key, compute):
    """``compute()`` (a tuple of tensors) stored under ``key`` in ``cache``; the stored value while none of its tensors
    was modified in place since. ``compute=None`` only looks up (None if absent); ``cache=None`` always computes."""
    if cache is None:
        return None if compute is None else compute()
    entry = cache.get(key)
    if entry is not None and all(t._version == v for t, v in zip(*entry)):
        return entry[0]
    if compute is None:
        return None
    value = compute()
    if key not in cache and len(cache) >= _CACHE_ENTRIES:
        cache.pop(next(iter(cache)))  # oldest first
    cache[key] = (value, [t._version for t in value])
    return value


def _no_autocast(device_type: str):
    return torch.autocast(device_type=device_type, enabled=False)


class S4DLayer(nn.Module):
    """One S4D layer as the reference ``S4Block(mode='diag')``: SSM convolution + D skip -> GELU -> dropout ->
    Linear -> GLU. Input and output are (B, L, H).

    Three equivalent ways to run it:
      * ``forward(u)``            convolution with the kernel K (FFT), the training mode;
      * ``forward(u, state=s0)``  the same plus the contribution of an initial state, returning the final state
                                  (state forwarding, for streaming / prefill), without a loop over time;
      * ``step(u_t, state)``      one step of the recurrence x_t = Ā x_{t-1} + B̄ u_t, y_t = C x_t + D u_t.
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
        y = y.flatten(1, 2).transpose(1, 2).to(dtype)  # (B, L, C·H)
        y = self.dropout(self.activation(y))
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


def forward_state(u: torch.Tensor, log_dA: torch.Tensor, dB: torch.Tensor, state: torch.Tensor | None) -> torch.Tensor:
    """The state after the whole input: x_L = Ā^L x_0 + Σ_s Ā^{L-1-s} B̄ u_s, computed as one contraction.

    u (B, H, L) float, log_dA/dB (H, N2) complex, state (B, H, N2) complex or None -> (B, H, N2) complex64.
    """
    L, N2 = u.shape[-1], log_dA.shape[-1]
    # Σ_s u_s Ā^{L-1-s} is a Vandermonde product over the reversed input; with l = L-1-s = q·M + r it becomes a
    # batched matrix product, as in vandermonde_kernel (real input times [Re; Im] of Ā^r: one real product).
    M, Q = _split_length(L)
    u_rev = F.pad(u.flip(-1), (0, Q * M - L)).reshape(*u.shape[:-1], Q, M)  # (B, H, Q, M): l = qM + r
    t = torch.arange(max(M, Q), device=u.device, dtype=torch.float32)
    V_r = torch.view_as_real(_powers(log_dA[:, None, :], t[:M, None]))  # Ā^r (H, M, N2, 2)
    V_q = _powers(log_dA[:, None, :], t[:Q, None] * M)  # Ā^{qM} (H, Q, N2)
    partial = torch.matmul(u_rev, V_r.reshape(*V_r.shape[:-2], 2 * N2))  # (B, H, Q, 2N2): (Re, Im) pairs
    partial = torch.view_as_complex(partial.reshape(*partial.shape[:-1], N2, 2))  # Σ_r u[qM + r] Ā^r
    x = (partial * V_q).sum(-2) * dB  # (B, H, N2)
    if state is not None:
        x = x + torch.exp(log_dA * L) * state.to(torch.complex64)
    return x
