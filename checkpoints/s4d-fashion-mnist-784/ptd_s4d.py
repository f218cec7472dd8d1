"""S4-PTD, the perturb-then-diagonalise initialisation (``init="legs-ptd"``) of the S4D layer in ``ssm_s4d.py``.

Yu, Nigmetov, Morozov, Mahoney, Erichson, "Robustifying State-space Models for Long Sequences via Approximate
Diagonalization" (ICLR 2024), arXiv:2310.01698, §4: perturb HiPPO-LegS, then diagonalise. HiPPO-LegS itself is here
too (S4D-LegS in ``ssm_s4d.py`` diagonalises its normal part). Float64 throughout; imports nothing from the package.
"""

import functools
import math

import torch


def hippo_legs(N: int) -> tuple[torch.Tensor, torch.Tensor]:
    """The HiPPO-LegS matrices: A_nk = -sqrt(2n+1)sqrt(2k+1) (n > k), -(n+1) (n = k), 0 (n < k); B_n = sqrt(2n+1)."""
    q = torch.arange(N, dtype=torch.float64)
    r = torch.sqrt(2 * q + 1)
    A = -torch.tril(r[:, None] * r[None, :], diagonal=-1) - torch.diag(q + 1)
    return A, r.clone()


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
    # Matrices this small gain nothing from threads and lose much to contention for them on a loaded machine.
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
         rescaling to ‖E‖₂ = eps. The admissible iterate with the smallest κ is kept (gradient descent lowers κ
         1.6-5x below the random start's for N = 8 ... 64).

    Why ``eps`` is absolute, and 0.5. The paper's strong-convergence bound, |G_PTD(iω) - G_S4(iω)| <= about
    (2 ln N + 4)·‖E‖ uniformly in ω, is in the absolute norm of E, so a fixed ‖E‖ gives the same closeness to S4
    at every N. A fixed ratio ‖E‖/‖A‖ would not: ‖A‖₂ grows like N² (2.6e3 at N = 64, so a ratio of 1e-2 would
    mean ‖E‖₂ = 26). Stability sets the scale: max_ω ‖(iω - A)⁻¹‖₂ is 1.66 (N = 8) ... 1.82 (N = 64), below 2
    (tested), so any E with ‖E‖₂ <= 0.5 keeps every eigenvalue of A + E in the open left half plane; past
    1/max_ω ‖(iω - A)⁻¹‖₂ ≈ 0.55 some E make A + E unstable. Relative to ‖A‖₂ the default is 1.2e-2 at N = 8,
    3.1e-3 at N = 16, 1.9e-4 at N = 64.

    Eigenvalues: A + E is real, so its eigenvalues come in conjugate pairs. The N/2 with Im < 0 are kept, sorted by
    Im ascending (the stored A_imag = -Im A is then > 0 and far above the 1e-4 clamp of ``ssm_s4d.inv_transform``).
    The 2·Re kernel convention supplies the other half. A real eigenvalue would have no partner, so any draw or iterate
    with one is rejected. Re λ is not -1/2 as in S4D-LegS: it lies between about -0.85 and -11.9 (N = 8) ...
    -448 (N = 64), and is checked to be < 0. In real mode (``is_real``) the caller keeps the real parts, as for
    the other inits.

    Eigenvectors: unit norm. Each is rotated so that its B̃_k is real and >= 0, because eig's phases are
    arbitrary. The other half of Ṽ is the complex conjugate of the kept half. B̃ is larger than S4D-LegS's
    (‖B̃‖₂ = 39 at N = 8, 317 at N = 16, 7.6e3 at N = 64, against ‖B‖₂ = N): Ṽ is not unitary.

    C: the paper also maps C to C̃ = C Ṽ. Our C is drawn at random in the diagonal basis, so only A and B come from
    this function.

    Returns (Λ (N/2,), B̃ (N/2,), Ṽ (N, N/2), E (N, N)): complex128 for the first three, float64 for E. Deterministic
    and independent of the global RNG; E is cached per (N, eps, seed, steps), since its search costs O(steps · N³).
    ``python tests/test_ptd.py`` prints the κ(Ṽ) and the transfer-function errors against S4 that the defaults give
    (quoted in the README).
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
