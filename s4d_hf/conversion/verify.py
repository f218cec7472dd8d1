"""Proof that a conversion is exact, computed before anything is written.

1. **kernels**   - every layer's SSM kernel K (Ck, H, L) computed here directly from the *source* tensors, in float64,
                   with the source's own conventions (state-spaces/s4: ``models/s4/s4d.py``'s ``+i·A_imag``,
                   ``models/s4/s4.py``'s ``-i·A_imag``, the h mod n_ssm tiling, zoh/bilinear), against the converted
                   model's ``S4DKernel.kernel(L)``.
2. **logits**    - the source architecture re-implemented here from its tensors (float64; the convolution as an
                   explicit Toeplitz product, with the bidirectional off-by-one; GELU, the Conv1d/Linear + GLU head;
                   the norms where the source puts them; the decoder's pooling) on a random input, against the
                   converted model's logits.
3. **round trip** - the converted model's state dict exported back to the source key layout equals the source
                   tensor for tensor (``torch.equal``).

None of this calls the S4D-HF math in ``s4d_hf.modeling``: it is an independent implementation of the formulas.
"""

import math
from dataclasses import dataclass

import torch

from .plan import Plan, export_state_dict


@dataclass
class Check:
    """One verification: the largest absolute difference and the tolerance it was held to."""

    name: str
    max_abs_diff: float
    tolerance: float
    detail: str = ""

    @property
    def passed(self) -> bool:
        return self.max_abs_diff <= self.tolerance  # False for NaN

    def line(self) -> str:
        verdict = "ok" if self.passed else "FAILED"
        return f"{self.name:<34} max |diff| {self.max_abs_diff:.3g}  (tolerance {self.tolerance:.3g})  {verdict}" + (
            f"  [{self.detail}]" if self.detail else "")


def _max_abs(a: torch.Tensor, b: torch.Tensor) -> float:
    return float((a.double() - b.double()).abs().max()) if a.numel() else 0.0


def _scaled(tolerance: float, reference: torch.Tensor) -> float:
    """Relative tolerance for large values, absolute below 1."""
    return tolerance * max(1.0, float(reference.abs().max()) if reference.numel() else 1.0)


# ----------------------------------------------------------------------------------------------------------------
# The source model, re-implemented from its tensors (float64)
# ----------------------------------------------------------------------------------------------------------------


def _positive(p: torch.Tensor, kind: str) -> torch.Tensor:
    """The reference's param_transform: stored parameter -> positive value (dt, or -Re A)."""
    if kind == "exp":
        return torch.exp(p)
    if kind == "softplus":
        return torch.logaddexp(p, torch.zeros_like(p))  # log(1 + e^p)
    if kind == "relu":
        return p.clamp(min=0) + 1e-4
    if kind == "none":
        return p
    raise ValueError(f"unknown transform {kind!r}")


def reference_kernel(state_dict: dict[str, torch.Tensor], plan: Plan, i: int, L: int) -> torch.Tensor:
    """K[c, h, l] = 2·Re Σ_n C[c,h,n] · B̄[h,n] · Ā[h,n]^l for layer ``i``, l = 0..L-1, from the source tensors.

    Deliberately not ``ssm_s4d.reference_kernel``: an independent implementation, from the source's own tensors and
    conventions, is what the converted model is verified against. Returns (Ck, H, L) float64.
    """
    opt = plan.values
    p = plan.layout.layer.format(i=i)

    def get(name):
        return state_dict[p + name].double()

    if plan.layout.layer_kind == "minimal":  # models/s4/s4d.py S4DKernel.forward
        dt = torch.exp(get("kernel.log_dt"))[:, None]  # (H, 1)
        A = torch.complex(-torch.exp(get("kernel.log_A_real")), get("kernel.A_imag"))  # Im A = +A_imag here
        B = torch.ones_like(A)
        C = torch.view_as_complex(get("kernel.C").contiguous())[None]  # (1, H, N2)
        disc = "zoh"
    else:  # models/s4/s4.py SSMKernelDiag
        H = get("layer.D").shape[1]
        dt = _positive(get("layer.kernel.inv_dt"), opt["dt_transform"])  # (H, 1) or (H, N2)
        A_real = -_positive(get("layer.kernel.A_real"), opt["real_transform"])
        tile = torch.arange(H) % A_real.shape[0]  # feature h uses copy h mod n_ssm
        if opt["is_real"]:
            A = A_real[tile].to(torch.complex128)
            B = get("layer.kernel.B")[0][tile].to(torch.complex128)
            C = get("layer.kernel.C").to(torch.complex128)
        else:
            A = torch.complex(A_real, -get("layer.kernel.A_imag"))[tile]
            B = torch.view_as_complex(get("layer.kernel.B").contiguous())[0][tile]
            C = torch.view_as_complex(get("layer.kernel.C").contiguous())
        disc = opt["disc"]
    dtA = dt * A
    steps = torch.arange(L, dtype=torch.float64)
    if disc == "zoh":
        dB = B * (torch.exp(dtA) - 1) / A
        powers = torch.exp(dtA[..., None] * steps)  # (H, N2, L)
    else:  # bilinear
        dA = (1 + dtA / 2) / (1 - dtA / 2)
        dB = B * dt / (1 - dtA / 2)
        powers = dA[..., None] ** steps
    return 2 * torch.einsum("chn,hnl->chl", C * dB, powers).real


def _norm(state_dict, prefix: str, kind: str, eps: float, x: torch.Tensor) -> torch.Tensor:
    """LayerNorm over features, or BatchNorm1d in eval mode (running statistics), on (B, L, H)."""
    w, b = state_dict[prefix + "weight"].double(), state_dict[prefix + "bias"].double()
    if kind == "layer":
        mean = x.mean(-1, keepdim=True)
        var = ((x - mean) ** 2).mean(-1, keepdim=True)
        return (x - mean) / torch.sqrt(var + eps) * w + b
    mean, var = state_dict[prefix + "running_mean"].double(), state_dict[prefix + "running_var"].double()
    return (x - mean) / torch.sqrt(var + eps) * w + b


def _layer(state_dict, plan: Plan, i: int, x: torch.Tensor) -> torch.Tensor:
    """One S4D layer on (B, L, H) -> (B, L, H): y = K * u + D·u -> GELU -> output_linear -> GLU (or identity)."""
    opt = plan.values
    p = plan.layout.layer.format(i=i)
    u = x.transpose(1, 2)  # (B, H, L)
    L = u.shape[-1]
    Lk = L if opt["l_max"] is None else min(L, opt["l_max"])
    K = reference_kernel(state_dict, plan, i, Lk)  # (Ck, H, Lk)
    if plan.layout.layer_kind == "minimal":
        D = state_dict[p + "D"].double()[None]  # (1, H)
        W = state_dict[p + "output_linear.0.weight"].double()[..., 0]  # Conv1d(H, 2H, 1) weight
    else:
        D = state_dict[p + "layer.D"].double()  # (Cch, H)
        W = state_dict[p + "output_linear.0.weight"].double()
    bias = state_dict[p + "output_linear.0.bias"].double()
    Cch = D.shape[0]
    # Toeplitz matrices: lag d = t - s. Causal taps K_f[d] for 0 <= d < Lk; with bidirectional, the backward
    # kernel's taps K_b[s - t - 1] for 1 <= s - t <= Lk (the reference's deliberate off-by-one).
    t = torch.arange(L)
    d = t[:, None] - t[None, :]
    T = K[:Cch][..., d.clamp(0, Lk - 1)] * ((d >= 0) & (d < Lk))
    if opt["bidirectional"]:
        T = T + K[Cch:][..., (-d - 1).clamp(0, Lk - 1)] * ((d < 0) & (-d <= Lk))
    y = torch.einsum("chts,bhs->bcht", T, u) + D[None, :, :, None] * u[:, None]  # (B, Cch, H, L)
    y = y.reshape(y.shape[0], -1, L)  # feature index c·H + h
    y = 0.5 * y * (1 + torch.erf(y / math.sqrt(2)))  # exact GELU
    z = torch.einsum("of,bfl->bol", W, y) + bias[:, None]
    if opt["final_act"] == "glu":
        H = z.shape[1] // 2
        z = z[:, :H] * torch.sigmoid(z[:, H:])
    return z.transpose(1, 2)


def reference_logits(state_dict: dict[str, torch.Tensor], plan: Plan, inputs: torch.Tensor) -> torch.Tensor:
    """The source model's output for ``inputs`` ((B, L) token ids or (B, L, d_input) values): (B, num_labels)."""
    opt = plan.values
    lay = plan.layout
    W = state_dict[lay.encoder + "weight"].double()
    x = W[inputs] if opt.get("vocab_size") else inputs.double() @ W.T + state_dict[lay.encoder + "bias"].double()
    for i in range(plan.n_layers):
        norm = lambda h: _norm(state_dict, lay.norm.format(i=i), opt["norm"], opt["layer_norm_eps"], h)  # noqa: E731
        if opt["prenorm"]:
            x = x + _layer(state_dict, plan, i, norm(x))
        else:
            x = norm(x + _layer(state_dict, plan, i, x))
    if opt["prenorm"] and opt["final_norm"]:
        x = _norm(state_dict, lay.final_norm, opt["norm"], opt["layer_norm_eps"], x)
    pooled = x.mean(1) if opt["pooling"] == "mean" else x[:, -1]
    return pooled @ state_dict[lay.decoder + "weight"].double().T + state_dict[lay.decoder + "bias"].double()


# ----------------------------------------------------------------------------------------------------------------
# The checks
# ----------------------------------------------------------------------------------------------------------------


def random_inputs(plan: Plan, batch: int = 2, length: int = 64, seed: int = 0) -> torch.Tensor:
    generator = torch.Generator().manual_seed(seed)
    opt = plan.values
    if opt.get("vocab_size"):
        return torch.randint(0, opt["vocab_size"], (batch, length), generator=generator)
    return torch.randn(batch, length, opt["input_dim"], generator=generator)


def model_logits(model, plan: Plan, inputs: torch.Tensor) -> torch.Tensor:
    key = "input_ids" if plan.options.get("vocab_size") else "input_values"
    with torch.no_grad():
        return model(**{key: inputs}).logits


def verify_conversion(state_dict: dict[str, torch.Tensor], plan: Plan, model, tolerance: float = 1e-4,
                      kernel_length: int = 128, input_length: int = 64) -> list[Check]:
    """Run checks 1-3 of the module docstring. ``tolerance`` is relative to max(1, max |reference|)."""
    checks = []
    with torch.no_grad():
        for i in range(plan.n_layers):
            reference = reference_kernel(state_dict, plan, i, kernel_length)
            converted = model.s4d.layers[i].mixer.kernel.kernel(kernel_length)
            checks.append(Check(f"kernel layer {i} (L={kernel_length})", _max_abs(converted, reference),
                                _scaled(tolerance, reference)))
        inputs = random_inputs(plan, length=input_length)
        reference = reference_logits(state_dict, plan, inputs)
        converted = model_logits(model, plan, inputs)
        diff = _max_abs(converted, reference) if torch.isfinite(converted).all() else float("nan")
        checks.append(Check(f"logits (random input {tuple(inputs.shape)})", diff, _scaled(tolerance, reference)))

    exported = export_state_dict(model.state_dict(), plan)
    worst, inexact = 0.0, []
    for key in plan.source_keys:
        a, b = exported[key], state_dict[key]
        if a.shape != b.shape or a.dtype != b.dtype:
            inexact.append(key)
            worst = float("inf")
            continue
        if not torch.equal(a, b):
            inexact.append(key)
            worst = max(worst, _max_abs(a, b))
    detail = f"{len(plan.source_keys)} tensors" + (f"; differ: {', '.join(inexact[:4])}" if inexact else ", exact")
    if inexact and not worst > 0:  # torch.equal failed on equal magnitudes: NaNs
        worst = float("nan")
    checks.append(Check("round trip to the source layout", worst, 0.0, detail))
    return checks
