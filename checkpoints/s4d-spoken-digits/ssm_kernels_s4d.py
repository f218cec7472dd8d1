"""The fast paths of the S4D layer in ``ssm_s4d.py``: the same numbers as its formulas, in less time and memory.

* :func:`vandermonde_kernel`  K = 2·Re(CB · V_L(Ā)) without forming the (H, N2, L) Vandermonde matrix, with a
  hand-written backward: the numbers of ``ssm_s4d.reference_kernel``;
* :func:`fft_conv`            the causal (or two-sided) convolution with K by real FFTs, with a hand-written backward;
* :func:`forward_state`       the state after a whole input, as one contraction instead of a loop over time;
* :class:`InferenceCache`     discrete parameters and kernels kept between calls while no gradient flows;
* :func:`fused_step`          the decoding step of generate(): Ā, B̄, C and D prepared once per cache
  (:func:`decode_tensors`, :class:`DecodeCache`), the state updated in place;
* :func:`real_kernel`, :func:`direct_conv`, :func:`real_step`  the same numbers without complex tensors or FFTs,
  for ONNX export (``s4d_hf/export.py``).

``tests/test_kernel_paths.py`` checks each, forward and backward, against the reference kernel, an explicit Toeplitz
sum and the recurrence, in float64. This module imports nothing from the package (``ssm_s4d.py`` imports it).
"""

import math

import torch
import torch.nn.functional as F
from torch.autograd.function import once_differentiable


# ----------------------------------------------------------------------------------------------------------------
# The kernel K = 2·Re(CB · V_L(Ā)) (paper §3.2, eq. 5-6) in O(H·N2·sqrt(L)) memory
# ----------------------------------------------------------------------------------------------------------------


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
    if (torch.is_grad_enabled() and log_dA.requires_grad) or torch.compiler.is_compiling():  # traced: no out=
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
    Equal, up to float32 rounding, to ``ssm_s4d.reference_kernel(CB, log_dA, L)``.
    """
    if _traced(L):  # real arithmetic (inductor generates no code for complex operators), no integer arithmetic on L
        return real_kernel(torch.view_as_real(CB.to(torch.complex64)), torch.view_as_real(log_dA.to(torch.complex64)),
                           L)
    return _VandermondeKernel.apply(CB, log_dA, L)


def _traced(n) -> bool:
    """Whether the length n may be symbolic: torch.export passes SymInts, torch.compile's dynamo shows them as ints.
    A symbolic L must not meet integer arithmetic (``ceil(sqrt(L))``, a padded length Q·M, the smooth FFT length
    search): it would pin L to the traced value (torch.export: a constraint violation for a dynamic ``Dim``;
    torch.compile: a recompilation per length)."""
    return isinstance(n, torch.SymInt) or torch.compiler.is_compiling()


def _symbolic_powers(log_dA: torch.Tensor, L) -> torch.Tensor:
    """Ā^l (H, N2, L) for l = 0..L-1, for a symbolic L (torch.compile / torch.export, see :func:`_traced`).

    The √L split of :class:`_VandermondeKernel` needs ceil(sqrt(L)) and a padded length Q·M, which symbolic shapes
    cannot reason about: they would pin L to the traced value. This form has no integer arithmetic on L; it forms the
    Vandermonde matrix (the reference's memory, O(H·N2·L)) unless the compiler fuses it into the contraction, and its
    gradient is autograd's.
    """
    t = torch.arange(L, device=log_dA.device, dtype=torch.float32)
    return _powers(log_dA[..., None], t)


# ----------------------------------------------------------------------------------------------------------------
# The convolution y = K * u (paper §3.2) by real FFTs
# ----------------------------------------------------------------------------------------------------------------


def fast_fft_length(n: int) -> int:
    """Smallest length >= n whose only prime factors are 2, 3 and 5 (cheap FFT sizes); n must be >= 1.

    A symbolic length (torch.compile / torch.export with a dynamic L) is returned as it is: any n works, and
    searching would pin it to the traced value."""
    if _traced(n):
        return n
    if n < 1:  # the loop below would never end on 0
        raise ValueError(f"fast_fft_length: n must be a positive length; got {n}")
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
# The state after a whole input (state forwarding), without a loop over time
# ----------------------------------------------------------------------------------------------------------------


def forward_state(u: torch.Tensor, log_dA: torch.Tensor, dB: torch.Tensor, state: torch.Tensor | None) -> torch.Tensor:
    """The state after the whole input: x_L = Ā^L x_0 + Σ_s Ā^{L-1-s} B̄ u_s, computed as one contraction.

    u (B, H, L) float, log_dA/dB (H, N2) complex, state (B, H, N2) complex or None -> (B, H, N2) complex64.
    """
    L, N2 = u.shape[-1], log_dA.shape[-1]
    if _traced(L):  # see _symbolic_powers
        x = torch.einsum("bhl,hnl->bhn", u.flip(-1).to(torch.complex64), _symbolic_powers(log_dA, L)) * dB
        return x if state is None else x + torch.exp(log_dA * L) * state.to(torch.complex64)
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


# ----------------------------------------------------------------------------------------------------------------
# The inference cache
# ----------------------------------------------------------------------------------------------------------------


class InferenceCache:
    """Values derived from a module's parameters (discrete parameters, kernels), kept between calls.

    Used only while no autograd graph is recorded through the parameters (inference, or a frozen SSM) and ``rate``
    is a plain number; otherwise every value is recomputed. The store is emptied whenever any parameter differs from
    the copy taken when it was filled, whatever changed it (optimizer step, ``load_state_dict``, in-place edits
    through ``.data``, ``.to()``): comparing values costs O(H·N), nothing next to a kernel, and cannot miss a change
    the way version counters miss edits made through ``.data``. A stored tensor that a caller modified in place is
    detected by its version counter and recomputed.
    """

    def __init__(self, max_entries: int = 8):  # a few rates x (discrete parameters, step parameters, kernel)
        self.max_entries = max_entries
        self._snapshot: list[torch.Tensor] | None = None
        self._entries: dict = {}

    def _store(self, module: torch.nn.Module, rate) -> dict | None:
        """The entries valid for ``module``'s current parameters, or None when nothing may be cached."""
        params = list(module.parameters())
        if (
            isinstance(rate, torch.Tensor)
            or (torch.is_grad_enabled() and any(p.requires_grad for p in params))
            or torch.compiler.is_compiling()
        ):
            return None
        snapshot = self._snapshot
        if snapshot is None or len(snapshot) != len(params) or not all(
            s.shape == p.shape and s.dtype == p.dtype and s.device == p.device and torch.equal(s, p)
            for s, p in zip(snapshot, params)
        ):
            self._snapshot = [p.detach().clone() for p in params]
            self._entries = {}
        return self._entries

    def memoised(self, module: torch.nn.Module, rate, key, compute=None):
        """``compute()`` (a tuple of tensors) stored under ``key``; the stored value while none of its tensors was
        modified in place since (a valid stored value is returned, and kept, even when ``compute`` is given).
        ``compute=None`` only looks up (None if absent)."""
        cache = self._store(module, rate)
        if cache is None:
            return None if compute is None else compute()
        entry = cache.get(key)
        if entry is not None and all(t._version == v for t, v in zip(*entry)):
            return entry[0]
        if compute is None:
            return None
        value = compute()
        if key not in cache and len(cache) >= self.max_entries:
            cache.pop(next(iter(cache)))  # oldest first
        cache[key] = (value, [t._version for t in value])
        return value


# ----------------------------------------------------------------------------------------------------------------
# Fast decoding: the recurrence with everything that does not depend on the token precomputed
# ----------------------------------------------------------------------------------------------------------------


def step_tensors(C: torch.Tensor, dA: torch.Tensor, dB: torch.Tensor) -> tuple[torch.Tensor, ...]:
    """The recurrence x_t = Ā x_{t-1} + B̄ u_t, y_t = 2·Re(C x_t) rearranged for one fused update per token.

    C (Ck, H, N2), Ā and B̄ (H, N2) complex -> (Ā (H, N2) complex64, B̄ as real pairs (H, N2, 2), W (H, Ck, 2·N2)) with
    W[h, c, 2n] = 2·Re C[c, h, n], W[h, c, 2n + 1] = -2·Im C[c, h, n], so that for the state x seen as real pairs
    (Re, Im), 2·Re Σ_n C x = Σ_k x_k W[k]: one real dot product per feature and channel (``vecdot``: on CPU several
    times faster than a batched matrix product of H tiny matrices). Detached: for inference only.
    """
    dA = dA.detach().to(torch.complex64).contiguous()
    dB = torch.view_as_real(dB.detach().to(torch.complex64)).contiguous()
    W = torch.view_as_real(2 * C.detach().to(torch.complex64).conj())  # (Ck, H, N2, 2): (2 Re C, -2 Im C)
    W = W.reshape(W.shape[0], W.shape[1], -1).transpose(0, 1).contiguous()  # (H, Ck, 2·N2)
    return dA, dB, W


def decode_tensors(C: torch.Tensor, dA: torch.Tensor, dB: torch.Tensor, D: torch.Tensor) -> tuple[torch.Tensor, ...]:
    """The step tensors of :func:`step_tensors` laid out and scaled for :func:`fused_step`, with the D skip.

    C (Ck, H, N2), Ā and B̄ (H, N2) complex, D (Ck, H) -> (Ā (H, N2) complex64, B̄ (H, 2·N2) as interleaved
    (Re, Im) pairs, W (Ck, H, 2·N2) = (2 Re C, -2 Im C) / √2, D / √2 (Ck, H)). W is channel-major so that the output
    is (B, Ck, H), the layer's c·H + h order, without a copy; the 1/√2 makes the step's output the argument of erf in
    GELU(y) = y/2·(1 + erf(y/√2)) (see ``S4DLayer.decode_step``). Detached: for inference only.
    """
    dA, dB, W = step_tensors(C, dA, dB)
    return (dA, dB.reshape(dB.shape[0], -1), (W.transpose(0, 1) * _SQRT1_2).contiguous(),
            (D.detach().float() * _SQRT1_2).contiguous())


_SQRT1_2 = math.sqrt(0.5)


def fused_step(u: torch.Tensor, state: torch.Tensor, pairs: torch.Tensor, tensors: tuple) -> torch.Tensor:
    """One recurrent step with the D skip, updating ``state`` (B, H, N2) complex64 **in place**:

        x <- Ā x + B̄ u,     z = (2·Re(C x) + D u) / √2

    u (B, 1, H) float32, ``pairs`` the state's memory seen as real (Re, Im) pairs (B, 1, H, 2·N2)
    (:meth:`DecodeCache.pairs`), ``tensors`` from :func:`decode_tensors` -> z (B, Ck, H) float32. Four kernels: the
    complex ``mul_``, an ``addcmul_`` on the real pairs, their dot product with W per channel and feature
    (``vecdot``: on CPU several times faster than a batched matrix product of H tiny matrices), and the D skip."""
    dA, dB, W, D = tensors
    state.mul_(dA)
    pairs.addcmul_(dB, u.view(*u.shape, 1))
    return torch.linalg.vecdot(pairs, W).addcmul_(D, u)


def real_step(u: torch.Tensor, state: torch.Tensor, dA: torch.Tensor, dB: torch.Tensor, W: torch.Tensor):
    """:func:`fused_step` without complex numbers and without in-place updates (ONNX has neither complex tensors
    nor a use for in-place ops): state (B, H, N2, 2) real pairs, Ā and B̄ (H, N2, 2) real pairs, W as in
    :func:`step_tensors`. Returns (y (B, Ck, H), next state (B, H, N2, 2))."""
    a_re, a_im = dA[..., 0], dA[..., 1]
    x_re, x_im = state[..., 0], state[..., 1]
    u = u[:, :, None]
    new = torch.stack([a_re * x_re - a_im * x_im + dB[..., 0] * u, a_re * x_im + a_im * x_re + dB[..., 1] * u], -1)
    y = torch.einsum("bhk,hck->bch", new.reshape(*new.shape[:2], -1), W)
    return y, new


class DecodeCache:
    """Per-layer values of a generation, kept with its recurrent state in the cache: the tensors of
    :func:`decode_tensors` for one rate, computed once per cache (no per-token discretisation, ``exp`` or tiling) and
    recomputed when a parameter changed since (checked per token by the parameters' version counters and storage,
    which every optimizer step, ``load_state_dict``, in-place edit and ``.to()`` changes: a few Python attribute
    reads; edits through ``.data`` bypass version counters, but every new cache starts from values compared by
    :class:`InferenceCache`); and the real view of the state tensor that :func:`fused_step` updates."""

    __slots__ = ("key", "tensors", "state", "state_pairs")

    def __init__(self):
        self.key = self.tensors = self.state = self.state_pairs = None

    @staticmethod
    def parameter_key(params, rate) -> tuple:
        return (rate, *[(p._version, p.data_ptr()) for p in params])

    def get(self, params, rate, compute):
        key = self.parameter_key(params, rate)
        if key != self.key:
            self.tensors, self.key = compute(), key
        return self.tensors

    def pairs(self, state: torch.Tensor) -> torch.Tensor:
        """``state`` (B, H, N2) complex64, contiguous, seen as real (Re, Im) pairs (B, 1, H, 2·N2): the same memory.
        Kept while the cache holds the same state tensor (a beam reorder replaces it)."""
        if state is not self.state:
            self.state, self.state_pairs = state, torch.view_as_real(state).view(state.shape[0], 1, state.shape[1], -1)
        return self.state_pairs


# ----------------------------------------------------------------------------------------------------------------
# Real arithmetic only (ONNX has no complex tensors, and onnxruntime's DFT does not take a dynamic length)
# ----------------------------------------------------------------------------------------------------------------


def real_kernel(CB: torch.Tensor, log_dA: torch.Tensor, L) -> torch.Tensor:
    """:func:`vandermonde_kernel` from real pairs: CB (Ck, H, N2, 2), log Ā (H, N2, 2) -> K (Ck, H, L), with
    K[l] = 2·Σ_n |Ā_n|^l (Re CB_n cos(l·arg Ā_n) - Im CB_n sin(l·arg Ā_n)). Forms the (H, N2, L) tables (O(H·N2·L)
    memory): for export, where the graph must run any L."""
    t = torch.arange(L, device=log_dA.device, dtype=torch.float32)
    magnitude = torch.exp(F.threshold(log_dA[..., 0, None] * t, _UNDERFLOW_EXPONENT, -math.inf))
    phase = log_dA[..., 1, None] * t
    return 2 * (torch.einsum("chn,hnl->chl", CB[..., 0], magnitude * torch.cos(phase))
                - torch.einsum("chn,hnl->chl", CB[..., 1], magnitude * torch.sin(phase)))


def direct_conv(u: torch.Tensor, K: torch.Tensor, bidirectional: bool = False) -> torch.Tensor:
    """:func:`fft_conv` as a depthwise ``conv1d`` (O(L²) per feature instead of O(L log L), no FFT):
    u (B, H, L), K (Ck, H, L) -> (B, C, H, L), the same causal / two-sided sums."""
    B, H, L = u.shape

    def causal(x, k):  # y[t] = Σ_{s<=t} k[t-s] x[s], for every channel c of k (C, H, L)
        weight = k.flip(-1).transpose(0, 1).reshape(-1, 1, k.shape[-1])  # (H·C, 1, L): output channel h·C + c
        y = F.conv1d(F.pad(x, (k.shape[-1] - 1, 0)), weight, groups=H)  # (B, H·C, L)
        return y.reshape(B, H, k.shape[0], L).transpose(1, 2)

    if not bidirectional:
        return causal(u, K)
    K_f, K_b = K.chunk(2, dim=0)
    # anti-causal: y[t] += Σ_{s>t} K_b[s-t-1] u[s], a causal sum over the reversed input with K_b delayed by one
    K_b = F.pad(K_b, (1, 0))[..., :L]
    return causal(u, K_f) + causal(u.flip(-1), K_b).flip(-1)
