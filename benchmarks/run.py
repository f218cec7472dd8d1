"""Benchmarks of the S4D layer against the naive paper algorithm, a fixed-kernel limit and recurrent baselines.

Not a test: never run in CI. One run measures everything in one process (timings; the variants interleaved and the
median of several repeats taken, so that a change in machine load hits them all alike) plus one fresh subprocess
per peak-memory figure.

    python benchmarks/run.py --out benchmarks/results.json
    python benchmarks/report.py benchmarks/results.json      # tables in benchmarks/BENCHMARKS.md + block.png

Sections (``--sections``):
  block       one S4D block (S4DLayer: SSM convolution + D -> GELU -> Linear -> GLU), H=256, N=64, B=2, for
              L in 1k/4k/16k/64k: training forward, forward+backward, inference forward (eval, no_grad), time and
              peak memory, for
                ours   S4DLayer as shipped;
                naive  the paper's two-line kernel (``ssm_s4d.reference_kernel``),
                       K = 2·Re(einsum(C·B̄, exp(log Ā ⊗ arange(L)))), which
                       materialises the (H, N/2, L) Vandermonde matrix, followed by the paper's FFT convolution
                       (torch.fft under autograd); naive_ftz: the same with subnormals flushed to zero (timed only);
                fixed  the same block with a precomputed kernel (no kernel computation, no kernel gradient): the
                       FFT-convolution limit any kernel algorithm can approach.
  generation  per-token decoding time at contexts 512 / 4k / 8k, batch 1: our recurrent cache (S4DForCausalLM,
              one `step` per layer and token), recompute-per-token (the full forward on the whole sequence for
              every new token, use_cache=False), and transformers' MambaForCausalLM of similar size (pure-torch
              path: neither mamba_ssm nor causal_conv1d is installed).
  decode      (issue 17) per-token decoding, S4D vs MambaForCausalLM of the same non-embedding size, batch 1 and 16:
              a generate() loop and the bare model step, interleaved, then a profile of each batch-1 step;
              --decode-compile adds one layer's torch.compile'd recurrent step against the eager one.
  versus      (issue 17) one S4D block vs one Transformer encoder layer (BertLayer, SDPA), L = 1k ... 64k.
  compile     (issue 17) torch.compile per head, training and inference, over 5 lengths: graphs and speed.
              (decode, versus and compile are not in the default --sections.)
  long        peak memory of one layer's inference forward (H=64, N=64, B=1) at three lengths, a linear fit, the
              longest L that fits in 24 GiB, and one measured run at L = 1,048,576 (also the naive kernel's fit).

Peak memory (CPU): each figure comes from a fresh subprocess that builds the layer and its inputs, runs the variant
once at a small length (one-time allocations: thread pools, FFT plans), releases freed heap (malloc_trim), resets
the kernel's resident-set high-water mark (``echo 5 > /proc/self/clear_refs``), runs the measured call once, and
reads VmHWM from /proc/self/status. Reported: VmHWM - VmRSS just before the call, i.e. the memory the call itself
needed on top of the process, its module and its inputs (the analogue of torch.cuda.max_memory_allocated).
"""

import argparse
import contextlib
import ctypes
import datetime
import gc
import json
import os
import platform
import re
import statistics
import subprocess
import sys
import time
from pathlib import Path

import torch
import torch.nn.functional as F

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from s4d_hf.modeling.ssm_kernels_s4d import fft_conv  # noqa: E402
from s4d_hf.modeling.ssm_s4d import S4DLayer, reference_kernel  # noqa: E402

GiB = 2**30
# --device / --autocast (sections block, decode, versus; generation, long and compile stay on the CPU)
DEVICE = "cpu"
AUTOCAST = "none"


def autocast():
    """The --autocast context (bf16 autocast on DEVICE, or nothing)."""
    if AUTOCAST == "bf16":
        return torch.autocast(device_type=torch.device(DEVICE).type, dtype=torch.bfloat16)
    return contextlib.nullcontext()


def on_device(x: torch.Tensor) -> torch.Tensor:
    return x.to(DEVICE) if DEVICE != "cpu" else x
BLOCK = dict(H=256, N=64, B=2)
BLOCK_LENGTHS = [1024, 4096, 16384, 65536]
LONG = dict(H=64, N=64, B=1)
LONG_FIT_LENGTHS = [65536, 131072, 262144]
LONG_NAIVE_FIT_LENGTHS = [16384, 32768, 65536]
LONG_RUN_LENGTH = 1_048_576
BUDGET_BYTES = 24 * GiB
CONTEXTS = [512, 4096, 8192]
DECODE_BATCHES = [1, 16]
SECTIONS = ["block", "generation", "long", "decode", "versus", "compile"]
COMPILE_LENGTHS = [256, 384, 512, 768, 1024]
VERSUS = dict(H=256, N=64, B=2)
VERSUS_LENGTHS = [1024, 2048, 4096, 8192, 16384, 32768, 65536]
VARIANTS = ["ours", "naive", "fixed"]
# Timed only (its memory is naive's): the naive algorithm with the CPU flushing subnormal floats to zero, to show how
# much of naive's time is subnormal arithmetic (its exp(l·log Ā) table underflows through the subnormal range).
TIMED_VARIANTS = ["ours", "naive", "naive_ftz", "fixed"]


# ----------------------------------------------------------------------------------------------------------------
# The three block variants
# ----------------------------------------------------------------------------------------------------------------


def make_layer(H: int, N: int, seed: int = 0) -> S4DLayer:
    """An S4D layer (S4D-LegS, ZOH, the library's defaults) with reproducible random weights."""
    torch.manual_seed(seed)
    layer = S4DLayer(H, d_state=N)
    layer.kernel.reset_parameters()
    torch.nn.init.normal_(layer.D)
    return layer.to(DEVICE)


def naive_forward(layer: S4DLayer, x: torch.Tensor) -> torch.Tensor:
    """The paper's layer: its kernel (S4D §3, its listing: ``reference_kernel``, the full (H, N/2, L) Vandermonde
    matrix), FFT convolution with torch.fft under autograd, then the same D/GELU/GLU."""
    u = x.float().transpose(1, 2)
    L = u.shape[-1]
    C, log_dA, dB = layer.kernel.discrete_parameters()
    K = reference_kernel(C * dB, log_dA, L)
    y = torch.fft.irfft(torch.fft.rfft(u, n=2 * L)[:, None] * torch.fft.rfft(K, n=2 * L)[None], n=2 * L)[..., :L]
    return layer._ssm_output(y, u, x.dtype)


class FixedKernel:
    """The same block with a kernel computed once beforehand: the cost of everything but the kernel."""

    def __init__(self, layer: S4DLayer, L: int):
        with torch.no_grad():
            self.K = layer.kernel.kernel(L).clone()

    def __call__(self, layer: S4DLayer, x: torch.Tensor) -> torch.Tensor:
        u = x.float().transpose(1, 2)
        return layer._ssm_output(fft_conv(u, self.K), u, x.dtype)


def make_transformer(H: int, seed: int = 0):
    """transformers' BertLayer (self-attention through torch's scaled_dot_product_attention, then a feed-forward of
    width H), no mask, no dropout: the Transformer encoder layer of width H that issue 17 compares one S4D block to."""
    from transformers import BertConfig
    from transformers.models.bert.modeling_bert import BertLayer

    torch.manual_seed(seed)
    config = BertConfig(hidden_size=H, num_attention_heads=H // 64, intermediate_size=H, hidden_dropout_prob=0.0,
                        attention_probs_dropout_prob=0.0)
    config._attn_implementation = "sdpa"
    return BertLayer(config).to(DEVICE)


def make_module(variant: str, H: int, N: int):
    return make_transformer(H) if variant == "transformer" else make_layer(H, N)


def variant_forward(variant: str, layer: S4DLayer, L: int):
    if variant == "transformer":
        return lambda layer, x: layer(x)
    if variant == "ours":
        return lambda layer, x: layer(x)[0]
    if variant in ("naive", "naive_ftz"):
        return naive_forward
    if variant == "fixed":
        return FixedKernel(layer, L)
    raise ValueError(f"unknown variant {variant!r}; expected one of {VARIANTS}")


# ----------------------------------------------------------------------------------------------------------------
# Measuring
# ----------------------------------------------------------------------------------------------------------------


class Clock:
    """Wall-clock and process CPU time of a region."""

    def __enter__(self):
        if DEVICE.startswith("cuda"):
            torch.cuda.synchronize()
        self.wall, self.cpu = time.perf_counter(), time.process_time()
        return self

    def __exit__(self, *exc):
        if DEVICE.startswith("cuda"):
            torch.cuda.synchronize()
        self.wall, self.cpu = time.perf_counter() - self.wall, time.process_time() - self.cpu


def median_summary(samples: list[float]) -> dict:
    return {"median_s": statistics.median(samples), "min_s": min(samples), "samples_s": samples}


def _status_kib(field: str) -> int:
    return int(re.search(rf"^{field}:\s+(\d+) kB", Path("/proc/self/status").read_text(), re.M).group(1))


def _release_freed_heap():
    gc.collect()
    try:
        ctypes.CDLL("libc.so.6").malloc_trim(0)
    except OSError:  # not glibc: the baseline may then include freed memory, which only lowers the reported peak
        pass


def peak_of(run) -> dict:
    """Peak resident memory of ``run()`` above the resident memory just before it (this process, Linux); on a GPU,
    the peak of ``torch.cuda.max_memory_allocated`` above the memory allocated before it."""
    if DEVICE.startswith("cuda"):
        torch.cuda.synchronize()
        torch.cuda.reset_peak_memory_stats()
        before = torch.cuda.memory_allocated()
        with Clock() as clock:
            run()
        return {"peak_bytes": torch.cuda.max_memory_allocated() - before, "allocated_before_bytes": before,
                "wall_s": clock.wall}
    _release_freed_heap()
    before = _status_kib("VmRSS")
    Path("/proc/self/clear_refs").write_text("5")  # reset VmHWM to the current RSS
    with Clock() as clock:
        run()
    peak = _status_kib("VmHWM")
    return {"peak_bytes": (peak - before) * 1024, "rss_before_bytes": before * 1024, "wall_s": clock.wall}


def probe(spec: dict) -> dict:
    """Body of a memory subprocess: one block call (kind=block) described by ``spec``."""
    global DEVICE, AUTOCAST
    torch.set_num_threads(spec["threads"])
    DEVICE, AUTOCAST = spec.get("device", "cpu"), spec.get("autocast", "none")
    H, N, B, L, variant, mode = (spec[k] for k in ("H", "N", "B", "L", "variant", "mode"))

    def call(layer, length):
        fwd = variant_forward(variant, layer, length)
        x = on_device(torch.randn(B, length, H)).requires_grad_(mode == "train")
        if mode == "train":
            ones = on_device(torch.ones(B, length, H))  # ones: no extra (B, L, H) tensor

            def train():
                with autocast():
                    y = fwd(layer, x)
                y.backward(ones.to(y.dtype))

            return train
        layer.eval()

        def infer():
            with torch.no_grad(), autocast():
                fwd(layer, x)

        return infer

    warmup_layer = make_module(variant, H, N)
    call(warmup_layer, 256)()
    del warmup_layer
    layer = make_module(variant, H, N)
    run = call(layer, L)
    return peak_of(run)


def measure_peak(spec: dict) -> dict:
    """Run :func:`probe` in a fresh interpreter and return its result (with the command's spec)."""
    spec = {**spec, "device": DEVICE, "autocast": AUTOCAST}
    if DEVICE.startswith("cuda"):  # the CUDA allocator's peak is per process and resettable: no subprocess needed
        gc.collect()
        torch.cuda.empty_cache()
        try:
            return {**spec, **probe(spec)}
        except torch.OutOfMemoryError as error:
            return {**spec, "error": f"OutOfMemoryError: {str(error).splitlines()[0]}"}
    command = [sys.executable, str(Path(__file__).resolve()), "--probe", json.dumps(spec)]
    done = subprocess.run(command, capture_output=True, text=True, cwd=REPO)
    if done.returncode != 0:
        last = done.stderr.strip().splitlines()[-1] if done.stderr.strip() else f"exit status {done.returncode}"
        return {**spec, "error": last}
    return {**spec, **json.loads(done.stdout.strip().splitlines()[-1])}


def linear_fit(points: list[tuple[int, int]]) -> dict:
    """Least-squares peak = intercept + slope·L, its worst relative residual, and the L where it reaches 24 GiB."""
    xs, ys = [p[0] for p in points], [p[1] for p in points]
    mx, my = statistics.fmean(xs), statistics.fmean(ys)
    slope = sum((x - mx) * (y - my) for x, y in zip(xs, ys)) / sum((x - mx) ** 2 for x in xs)
    intercept = my - slope * mx
    residual = max(abs(intercept + slope * x - y) / y for x, y in zip(xs, ys))
    return {"slope_bytes_per_step": slope, "intercept_bytes": intercept, "max_relative_residual": residual,
            "max_length_in_budget": int((BUDGET_BYTES - intercept) / slope)}


# ----------------------------------------------------------------------------------------------------------------
# Sections
# ----------------------------------------------------------------------------------------------------------------


def block_section(args) -> dict:
    H, N, B = BLOCK["H"], BLOCK["N"], BLOCK["B"]
    results = {"config": {**BLOCK, "lengths": BLOCK_LENGTHS, "repeats": args.repeats,
                          "naive_max_gb": args.naive_max_gb}, "rows": []}
    memory = {}
    for L in BLOCK_LENGTHS:  # memory first (subprocesses): it also decides which naive runs fit
        for variant in VARIANTS:
            for mode in ("train", "infer"):
                projected = None
                if variant == "naive" and L == BLOCK_LENGTHS[-1]:  # projected from the shorter lengths
                    fit = linear_fit([(l, memory[("naive", l, mode)]["peak_bytes"]) for l in BLOCK_LENGTHS[:-1]])
                    projected = fit["intercept_bytes"] + fit["slope_bytes_per_step"] * L
                if projected is not None and projected > args.naive_max_gb * GiB:
                    reason = f"projected {projected / GiB:.1f} GiB > {args.naive_max_gb} GiB"
                    memory[(variant, L, mode)] = {"skipped": reason,
                                                  "projected_peak_bytes": projected}
                    continue
                spec = dict(kind="block", variant=variant, mode=mode, L=L, H=H, N=N, B=B, threads=args.threads)
                memory[(variant, L, mode)] = measure_peak(spec)
                log(f"  memory {variant:5s} {mode:5s} L={L:6d}: "
                    f"{memory[(variant, L, mode)].get('peak_bytes', float('nan')) / 2**20:8.0f} MiB")
    for v, L, mode in list(memory):
        if v == "naive":
            naive = memory[(v, L, mode)]
            memory[("naive_ftz", L, mode)] = naive if "skipped" in naive else {"same_as": "naive"}
    for L in BLOCK_LENGTHS:
        runnable = [v for v in TIMED_VARIANTS if "skipped" not in memory[(v, L, "train")]]
        layer = make_layer(H, N)
        forwards = {v: variant_forward(v, layer, L) for v in runnable}
        x = on_device(torch.randn(B, L, H)).requires_grad_()
        grad = on_device(torch.randn(B, L, H))
        samples = {v: {"fwd": [], "fwd_bwd": [], "fwd_bwd_cpu": [], "infer": [], "infer_cpu": []} for v in runnable}
        for repeat in range(args.repeats + 1):  # the first round is a warm-up, not recorded
            for v in runnable:
                torch.set_flush_denormal(v == "naive_ftz")
                layer.train()
                layer.zero_grad(set_to_none=True)
                x.grad = None
                with Clock() as total:
                    with Clock() as forward, autocast():
                        y = forwards[v](layer, x)
                    y.backward(grad.to(y.dtype))
                del y
                layer.eval()
                with torch.no_grad(), Clock() as infer, autocast():
                    forwards[v](layer, x)
                torch.set_flush_denormal(False)
                if repeat:
                    s = samples[v]
                    s["fwd"].append(forward.wall)
                    s["fwd_bwd"].append(total.wall)
                    s["fwd_bwd_cpu"].append(total.cpu)
                    s["infer"].append(infer.wall)
                    s["infer_cpu"].append(infer.cpu)
        for v in TIMED_VARIANTS:
            row = {"L": L, "variant": v, "memory_train": memory[(v, L, "train")],
                   "memory_infer": memory[(v, L, "infer")]}
            if v in samples:
                row.update({k: median_summary(vals) for k, vals in samples[v].items()})
            results["rows"].append(row)
            if v in samples:
                log(f"  time   {v:5s} L={L:6d}: fwd {row['fwd']['median_s']:.3f}s  "
                    f"fwd+bwd {row['fwd_bwd']['median_s']:.3f}s"
                    f"  infer {row['infer']['median_s']:.3f}s")
        del layer, forwards, x, grad
        gc.collect()
    return results


def generation_section(args) -> dict:
    import transformers
    from transformers import MambaConfig, MambaForCausalLM

    from s4d_hf import S4DConfig, S4DForCausalLM

    transformers.logging.set_verbosity_error()  # the "falling back to the PyTorch implementation" notices
    vocab = 1024
    torch.manual_seed(0)
    s4d = S4DForCausalLM(S4DConfig(vocab_size=vocab, d_model=256, n_layers=10, d_state=64, prenorm=True)).eval()
    mamba = MambaForCausalLM(MambaConfig(vocab_size=vocab, hidden_size=256, num_hidden_layers=4, state_size=16,
                                         expand=2)).eval()

    def non_embedding(model):
        return sum(p.numel() for n, p in model.named_parameters() if "embed" not in n and "lm_head" not in n)

    results = {"config": {"batch": 1, "vocab": vocab, "contexts": CONTEXTS, "steps": args.gen_steps,
                          "s4d": "d_model 256, 10 layers, d_state 64",
                          "mamba": "hidden 256, 4 layers, state 16, expand 2",
                          "s4d_non_embedding_params": non_embedding(s4d),
                          "mamba_non_embedding_params": non_embedding(mamba)}, "rows": []}

    def cached_decoder(model):
        """A callable decoding one token per call through the model's cache (as generate() does)."""
        state = {}

        def start(prompt):
            out = model(prompt, use_cache=True)
            state.update(cache=out.cache, token=out.logits[:, -1:].argmax(-1))

        def step():
            out = model(state["token"], cache=state["cache"], use_cache=True)
            state["token"] = out.logits[:, -1:].argmax(-1)

        return start, step

    def recompute_decoder(model):
        state = {}

        def start(prompt):
            state["seq"] = prompt

        def step():
            logits = model(state["seq"], use_cache=False).logits[:, -1]
            state["seq"] = torch.cat([state["seq"], logits.argmax(-1, keepdim=True)], dim=1)

        return start, step

    with torch.no_grad():
        decoders = {}
        for T in CONTEXTS:  # prefill every context first, then time them all interleaved
            prompt = torch.randint(0, vocab, (1, T))
            for name, make in (("s4d_recurrent", lambda: cached_decoder(s4d)),
                               ("s4d_recompute", lambda: recompute_decoder(s4d)),
                               ("mamba_recurrent", lambda: cached_decoder(mamba))):
                start, step = make()
                start(prompt)
                decoders[(T, name)] = step
        samples = {key: [] for key in decoders}
        rounds = max(3, args.gen_steps // 10)
        for r in range(rounds + 1):  # the first round is a warm-up
            for (T, name), step in decoders.items():
                for _ in range(1 if name == "s4d_recompute" else 10):
                    with Clock() as clock:
                        step()
                    if r:
                        samples[(T, name)].append(clock.wall)
        for (T, name), values in samples.items():
            results["rows"].append({"context": T, "method": name, **median_summary(values)})
            log(f"  generation {name:16s} context {T:5d}: {statistics.median(values) * 1e3:8.2f} ms/token")
    return results


def decode_section(args) -> dict:
    """Issue 17: per-token decoding time of S4D vs MambaForCausalLM (pure torch) with about the same non-embedding
    parameter count, batch 1 and 16, interleaved: a generate() loop (greedy, a fixed number of new tokens after a
    prefill; per token = (time of prefill + 1 + n tokens - time of prefill + 1 token) / n) and the bare model step
    (one model call with the cache, as generate() makes it), in wall-clock and process CPU time. report.py gives the
    ratios' median and spread over the rounds, each round timing both models back to back."""
    import transformers
    from transformers import MambaConfig, MambaForCausalLM

    from s4d_hf import S4DConfig, S4DForCausalLM

    transformers.logging.set_verbosity_error()
    vocab, prompt_len, new = 1024, 128, args.decode_tokens
    torch.manual_seed(0)
    models = {
        "s4d": S4DForCausalLM(S4DConfig(vocab_size=vocab, d_model=256, n_layers=10, d_state=64, prenorm=True)).eval(),
        "mamba": MambaForCausalLM(MambaConfig(vocab_size=vocab, hidden_size=256, num_hidden_layers=4, state_size=16,
                                              expand=2)).eval(),
    }
    models = {name: model.to(DEVICE) for name, model in models.items()}

    def non_embedding(model):
        return sum(p.numel() for n, p in model.named_parameters() if "embed" not in n and "lm_head" not in n)

    results = {"config": {"vocab": vocab, "prompt": prompt_len, "new_tokens": new, "batches": DECODE_BATCHES,
                          "rounds": args.decode_rounds, "s4d": "d_model 256, 10 layers, d_state 64",
                          "mamba": "hidden 256, 4 layers, state 16, expand 2",
                          "s4d_non_embedding_params": non_embedding(models["s4d"]),
                          "mamba_non_embedding_params": non_embedding(models["mamba"])}, "rows": []}
    samples = {}
    with torch.no_grad():
        prompts = {B: on_device(torch.randint(0, vocab, (B, prompt_len))) for B in DECODE_BATCHES}
        caches = {}
        for r in range(args.decode_rounds + 1):  # the first round is a warm-up
            for B in DECODE_BATCHES:
                # the order alternates between rounds, so that neither model always runs right after the other
                for name, model in (list(models.items()) if r % 2 else list(models.items())[::-1]):
                    kwargs = dict(do_sample=False, pad_token_id=0)
                    with Clock() as one:
                        model.generate(prompts[B], max_new_tokens=1, min_new_tokens=1, **kwargs)
                    with Clock() as many:
                        model.generate(prompts[B], max_new_tokens=1 + new, min_new_tokens=1 + new, **kwargs)
                    if (B, name) not in caches:
                        out = model(prompts[B], use_cache=True)
                        caches[(B, name)] = [out.cache, out.logits[:, -1:].argmax(-1)]
                    cache, token = caches[(B, name)]
                    steps = []
                    for _ in range(10):
                        with Clock() as step:
                            out = model(token, cache=cache, use_cache=True)
                        token = out.logits[:, -1:].argmax(-1)
                        steps.append(step)
                    caches[(B, name)][1] = token
                    if r:  # wall-clock and process CPU time (the latter leaves out the time other jobs held the core)
                        for clock in ("wall", "cpu"):
                            samples.setdefault((B, name, "generate", clock), []).append(
                                (getattr(many, clock) - getattr(one, clock)) / new)
                            samples.setdefault((B, name, "step", clock), []).append(
                                statistics.median(getattr(s, clock) for s in steps))
    for (B, name, how, clock), values in samples.items():
        if clock == "wall":
            results["rows"].append({"batch": B, "model": name, "how": how, **median_summary(values),
                                    "cpu": median_summary(samples[(B, name, how, "cpu")])})
            log(f"  decode B={B:2d} {name:5s} {how:8s}: {statistics.median(values) * 1e3:7.2f} ms/token (CPU time "
                f"{statistics.median(samples[(B, name, how, 'cpu')]) * 1e3:.2f} ms)")
    with torch.no_grad():
        results["profile"] = {name: profile_step(model, *caches[(1, name)]) for name, model in models.items()}
    for name, p in results["profile"].items():
        top = ", ".join(f"{t['op']} {t['calls_per_token']:.0f}x {t['self_cpu_us_per_token']:.0f} us" for t in p["top"][:4])
        log(f"  profile B= 1 {name:5s}: {p['ops_per_token']:.0f} aten ops per token, {top}")
    if args.decode_compile:
        results["compiled_step"] = [compiled_step_probe(B, args.decode_rounds) for B in DECODE_BATCHES]
    return results


def profile_step(model, cache, token, steps: int = 50) -> dict:
    """Where a batch-1 model step spends its time: torch.profiler over ``steps`` calls (after the timed rounds, so
    that its overhead touches no timing), per token: the aten ops dispatched (views included, nested ones too) and
    the ten ops with the most self CPU time. Times under the profiler are inflated; the counts are exact."""
    from torch.profiler import ProfilerActivity, profile

    with profile(activities=[ProfilerActivity.CPU]) as prof:
        for _ in range(steps):
            token = model(token, cache=cache, use_cache=True).logits[:, -1:].argmax(-1)
    events = prof.key_averages()
    top = sorted(events, key=lambda e: -e.self_cpu_time_total)[:10]
    return {"steps": steps, "ops_per_token": sum(e.count for e in events) / steps,
            "self_cpu_us_per_token": sum(e.self_cpu_time_total for e in events) / steps,
            "top": [{"op": e.key, "calls_per_token": e.count / steps, "self_cpu_us_per_token":
                     e.self_cpu_time_total / steps} for e in top]}


def _real_pairs_step(x, u, a, b, W, D):
    """``ssm_kernels_s4d.fused_step`` in real arithmetic (inductor generates no code for complex tensors), for
    torch.compile: x (B, H, N2, 2) the state's real view, updated in place; u (B, 1, H); Ā, B̄ (H, N2, 2) and
    W (Ck, H, N2, 2) real pairs; D (Ck, H). Returns z (B, Ck, H)."""
    re, im = x[..., 0], x[..., 1]
    v = u.view(u.shape[0], -1, 1)
    new_re = a[..., 0] * re - a[..., 1] * im + b[..., 0] * v
    new_im = a[..., 0] * im + a[..., 1] * re + b[..., 1] * v
    x[..., 0] = new_re
    x[..., 1] = new_im
    return (new_re[:, None] * W[..., 0] + new_im[:, None] * W[..., 1]).sum(-1) + D * u


def compiled_step_probe(B: int, rounds: int) -> dict:
    """``--decode-compile``: one layer's recurrent step of the decode benchmark's S4D (H=256, N=64) as a
    torch.compile'd function (:func:`_real_pairs_step`, inductor) against the eager ``fused_step`` that generate()
    runs: the compile time (first call, caches disabled) and the median time per call over interleaved rounds of 50
    calls."""
    import torch._inductor.config

    from s4d_hf.modeling.ssm_kernels_s4d import decode_tensors, fused_step

    layer = make_layer(256, 64).cpu().eval()
    with torch.no_grad():
        dA, dB, W, D = tensors = decode_tensors(*layer.kernel.step_parameters(), layer.D)
        state = 0.1 * torch.randn(B, 256, 32, dtype=torch.complex64)
        u = torch.randn(B, 1, 256)
        real = (torch.view_as_real(dA), dB.view(256, 32, 2), W.view(*W.shape[:2], 32, 2), D)
        pairs = torch.view_as_real(state).view(B, 1, 256, -1)
        compiled = torch.compile(_real_pairs_step, dynamic=False)
        before = state.clone()
        try:  # compiled from scratch: inductor's on-disk caches would hold the kernel of an earlier run
            with Clock() as compile_clock, torch._inductor.config.patch(force_disable_caches=True):
                got = compiled(torch.view_as_real(state), u, *real)
        except Exception as error:  # no C++ compiler, an unsupported op: the eager step is what runs anyway
            return {"batch": B, "error": f"{type(error).__name__}: {str(error).splitlines()[0]}"}
        after, state[:] = state.clone(), before
        expected = fused_step(u, state, pairs, tensors)
        error = max((got - expected).abs().max().item(), (after - state).abs().max().item())
        calls = {"compiled": lambda: compiled(torch.view_as_real(state), u, *real),
                 "eager": lambda: fused_step(u, state, pairs, tensors)}
        samples = {name: [] for name in calls}
        for _ in range(rounds):
            for name, call in calls.items():
                with Clock() as clock:
                    for _ in range(50):
                        call()
                samples[name].append(clock.wall / 50)
    row = {"batch": B, "compile_s": compile_clock.wall, "max_abs_error": error,
           **{f"{name}_median_s": statistics.median(values) for name, values in samples.items()}}
    log(f"  compiled step B={B:2d}: compile {row['compile_s']:.1f} s, {row['compiled_median_s'] * 1e6:.0f} us vs eager "
        f"{row['eager_median_s'] * 1e6:.0f} us per call (max abs difference {error:.1e})")
    return row


def versus_section(args) -> dict:
    """Issue 17: one S4D block (``S4DLayer``, H=256, N=64) vs one Transformer encoder layer of the same width
    (:func:`make_transformer`: transformers' BertLayer with SDPA attention), B=2, forward+backward and inference
    forward, L = 1k ... 64k: time (interleaved, median) and peak memory (fresh subprocess). The Transformer stops at
    the first L whose projected time (4x the previous: attention is quadratic) exceeds ``--versus-max-s`` or whose
    projected peak exceeds ``--versus-max-gb``."""
    H, N, B = VERSUS["H"], VERSUS["N"], VERSUS["B"]
    s4d, transformer = make_layer(H, N), make_transformer(H)
    results = {"config": {**VERSUS, "lengths": VERSUS_LENGTHS, "max_s": args.versus_max_s,
                          "max_gb": args.versus_max_gb,
                          "s4d_params": sum(p.numel() for p in s4d.parameters()),
                          "transformer_params": sum(p.numel() for p in transformer.parameters()),
                          "transformer": f"BertLayer, hidden {H}, {H // 64} heads, intermediate {H}, sdpa"},
               "rows": []}
    modules = {"ours": s4d, "transformer": transformer}
    stopped = {}
    previous = {}
    for L in VERSUS_LENGTHS:
        repeats = args.repeats if L <= 4096 else max(1, args.repeats // 2) if L <= 16384 else 1
        runnable = []
        for v in modules:
            if v in stopped:
                continue
            if v in previous:
                t_prev, m_prev = previous[v]
                scale = 4 if v == "transformer" else 2
                if t_prev * scale > args.versus_max_s:
                    stopped[v] = f"projected {t_prev * scale:.0f} s > {args.versus_max_s:.0f} s from L={L:,}"
                    continue
                if m_prev * 2 > args.versus_max_gb * GiB:
                    stopped[v] = f"projected {m_prev * 2 / GiB:.1f} GiB > {args.versus_max_gb} GiB from L={L:,}"
                    continue
            runnable.append(v)
        memory = {}
        for v in runnable:
            for mode in ("train", "infer"):
                memory[(v, mode)] = measure_peak(dict(kind="block", variant=v, mode=mode, L=L, H=H, N=N, B=B,
                                                      threads=args.threads))
        x = on_device(torch.randn(B, L, H)).requires_grad_()
        grad = on_device(torch.randn(B, L, H))
        samples = {v: {"fwd_bwd": [], "infer": []} for v in runnable}
        for repeat in range(repeats + (1 if L <= 4096 else 0)):  # a warm-up round at the short lengths
            for v in runnable:
                module, fwd = modules[v], variant_forward(v, modules[v], L)
                module.train()
                module.zero_grad(set_to_none=True)
                x.grad = None
                with Clock() as total:
                    with autocast():
                        y = fwd(module, x)
                    y.backward(grad.to(y.dtype))
                del y
                module.eval()
                with torch.no_grad(), Clock() as infer, autocast():
                    fwd(module, x)
                if repeat or L > 4096:
                    samples[v]["fwd_bwd"].append(total.wall)
                    samples[v]["infer"].append(infer.wall)
        for v in modules:
            row = {"L": L, "variant": v}
            if v in samples:
                row.update({k: median_summary(vals) for k, vals in samples[v].items()})
                row.update({"memory_train": memory[(v, "train")], "memory_infer": memory[(v, "infer")]})
                previous[v] = (row["fwd_bwd"]["median_s"], memory[(v, "train")].get("peak_bytes", 0))
                log(f"  versus {v:11s} L={L:6d}: fwd+bwd {row['fwd_bwd']['median_s']:7.2f}s  "
                    f"infer {row['infer']['median_s']:7.2f}s  peak train "
                    f"{memory[(v, 'train')].get('peak_bytes', float('nan')) / 2**20:7.0f} MiB")
            else:
                row["skipped"] = stopped.get(v, "not run")
            results["rows"].append(row)
        del x, grad
        gc.collect()
    return results


def compile_section(args) -> dict:
    """Issue 17: torch.compile(model) (inductor) for each head, training step (forward+backward) and inference
    forward, over 5 sequence lengths: graphs compiled (torch._dynamo counters) and time per call against eager
    (median of the calls after the compiling one, interleaved eager/compiled)."""
    from torch._dynamo.utils import counters

    from s4d_hf import S4DConfig, S4DForCausalLM, S4DForSequenceClassification

    lengths = COMPILE_LENGTHS
    base = dict(d_model=128, n_layers=2, d_state=64)
    heads = {
        "classifier (input_values)": lambda: S4DForSequenceClassification(
            S4DConfig(input_dim=1, num_labels=10, **base)),
        "classifier (input_ids)": lambda: S4DForSequenceClassification(S4DConfig(vocab_size=256, num_labels=4, **base)),
        "causal LM": lambda: S4DForCausalLM(S4DConfig(vocab_size=256, **base)),
    }
    results = {"config": {**base, "batch": 4, "lengths": lengths, "repeats": args.repeats}, "rows": []}
    for head, make in heads.items():
        for mode in ("train", "infer"):
            torch.manual_seed(0)
            model = make()
            model.train(mode == "train")
            torch._dynamo.reset()
            counters.clear()
            compiled = torch.compile(model)

            def inputs(L):
                if "values" in head:
                    return {"input_values": torch.randn(4, L)}, torch.randint(0, 10, (4,))
                ids = torch.randint(0, 256, (4, L))
                return {"input_ids": ids}, ids[:, 1:] if "LM" in head else torch.randint(0, 4, (4,))

            def call(m, batch):
                # the loss outside the model: the heads' label checks read label values, a graph break under compile
                batch, labels = batch
                if mode == "train":
                    logits = m(**batch).logits
                    logits = logits[:, :-1].flatten(0, 1) if logits.dim() == 3 else logits
                    F.cross_entropy(logits, labels.flatten()).backward()
                else:
                    with torch.no_grad():
                        m(**batch)

            row = {"head": head, "mode": mode, "per_length": []}
            for L in lengths:
                batch = inputs(L)
                with Clock() as first:
                    call(compiled, batch)
                eager, comp = [], []
                for _ in range(args.repeats):
                    with Clock() as c:
                        call(model, batch)
                    eager.append(c.wall)
                    with Clock() as c:
                        call(compiled, batch)
                    comp.append(c.wall)
                row["per_length"].append({"L": L, "first_call_s": first.wall, "eager": median_summary(eager),
                                          "compiled": median_summary(comp)})
                log(f"  compile {head:26s} {mode:5s} L={L:5d}: first {first.wall:6.1f}s  eager "
                    f"{statistics.median(eager) * 1e3:7.1f} ms  compiled {statistics.median(comp) * 1e3:7.1f} ms")
            row["unique_graphs"] = counters["stats"]["unique_graphs"]
            row["frames"] = dict(counters["frames"])
            row["recompiles"] = sum(v for k, v in counters["recompiles"].items()) if counters["recompiles"] else 0
            results["rows"].append(row)
            log(f"  compile {head} {mode}: {row['unique_graphs']} graphs for {len(lengths)} lengths")
    return results


def long_section(args) -> dict:
    H, N, B = LONG["H"], LONG["N"], LONG["B"]
    results = {"config": {**LONG, "mode": "inference forward (eval, no_grad)", "budget_bytes": BUDGET_BYTES}}
    for variant, lengths in (("ours", LONG_FIT_LENGTHS), ("naive", LONG_NAIVE_FIT_LENGTHS)):
        points = []
        for L in lengths:
            m = measure_peak(dict(kind="block", variant=variant, mode="infer", L=L, H=H, N=N, B=B,
                                  threads=args.threads))
            points.append(m)
            log(f"  long {variant} L={L}: {m.get('peak_bytes', float('nan')) / 2**20:.0f} MiB")
        results[f"{variant}_points"] = points
        results[f"{variant}_fit"] = linear_fit([(m["L"], m["peak_bytes"]) for m in points])
    fit = results["ours_fit"]
    expected = fit["intercept_bytes"] + fit["slope_bytes_per_step"] * LONG_RUN_LENGTH
    if expected > 0.5 * BUDGET_BYTES:
        results["run"] = {"L": LONG_RUN_LENGTH,
                          "skipped": f"the fit predicts {expected / GiB:.1f} GiB; not run on a shared machine"}
    else:
        m = measure_peak(dict(kind="block", variant="ours", mode="infer", L=LONG_RUN_LENGTH, H=H, N=N, B=B,
                              threads=args.threads))
        results["run"] = {**m, "predicted_peak_bytes": expected}
        log(f"  long ours L={LONG_RUN_LENGTH}: {m.get('peak_bytes', float('nan')) / GiB:.2f} GiB "
            f"in {m.get('wall_s', 0):.1f}s")
    return results


# ----------------------------------------------------------------------------------------------------------------
# Driver
# ----------------------------------------------------------------------------------------------------------------


def log(message: str):
    print(message, file=sys.stderr, flush=True)


def tiny_op_latency_us(threads: int) -> float:
    """Median time of a 256-element GELU with ``threads`` intra-op threads (see 'Threads' in BENCHMARKS.md)."""
    before = torch.get_num_threads()
    torch.set_num_threads(threads)
    x, samples = torch.randn(1, 1, 256), []
    for _ in range(30):
        with Clock() as clock:
            F.gelu(x)
        samples.append(clock.wall)
    torch.set_num_threads(before)
    return statistics.median(samples) * 1e6


def machine() -> dict:
    cpuinfo = Path("/proc/cpuinfo").read_text()
    model = re.search(r"model name\s*:\s*(.*)", cpuinfo)
    meminfo = Path("/proc/meminfo").read_text()
    return {
        "cpu": model.group(1) if model else platform.processor(), "cpu_count": os.cpu_count(),
        "mem_total_bytes": int(re.search(r"MemTotal:\s+(\d+)", meminfo).group(1)) * 1024,
        "torch": torch.__version__, "python": platform.python_version(), "threads": torch.get_num_threads(),
        "loadavg_start": os.getloadavg(),
        "tiny_op_us": {"threads_used": tiny_op_latency_us(torch.get_num_threads()),
                       "two_threads": tiny_op_latency_us(2)},
        "date": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
    }


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--out", type=Path, default=REPO / "benchmarks" / "results.json")
    parser.add_argument("--sections", default="block,generation,long",
                        help="comma-separated subset of block, generation, long")
    parser.add_argument("--repeats", type=int, default=5, help="timed repeats per block configuration (median)")
    parser.add_argument("--gen-steps", type=int, default=80,
                        help="timed recurrent decoding steps per method and context (recompute: a tenth)")
    parser.add_argument("--decode-tokens", type=int, default=64, help="new tokens per generate() in 'decode'")
    parser.add_argument("--decode-rounds", type=int, default=7, help="interleaved rounds of 'decode' (median)")
    parser.add_argument("--decode-compile", action="store_true",
                        help="'decode': also time one layer's torch.compile'd recurrent step against the eager one")
    parser.add_argument("--versus-max-s", type=float, default=60.0,
                        help="'versus': stop a variant once its projected fwd+bwd time exceeds this")
    parser.add_argument("--versus-max-gb", type=float, default=8.0,
                        help="'versus': stop a variant once its projected peak memory exceeds this")
    parser.add_argument("--device", default="cpu",
                        help="cpu or cuda[:i]: where the block, decode and versus sections run (GPU timings "
                             "synchronise; GPU peak memory is torch.cuda.max_memory_allocated)")
    parser.add_argument("--autocast", choices=("none", "bf16"), default="none",
                        help="run the block and versus forwards under bf16 autocast on --device")
    parser.add_argument("--threads", type=int, default=1,
                        help="torch intra-op threads (default 1: see 'Threads' in BENCHMARKS.md)")
    parser.add_argument("--naive-max-gb", type=float, default=8.0,
                        help="skip naive configurations whose projected peak exceeds this (shared machine)")
    parser.add_argument("--quick", action="store_true", help="tiny sizes: a smoke test of the script, not results")
    parser.add_argument("--probe", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.probe:
        print(json.dumps(probe(json.loads(args.probe))))
        return 0
    sections = [s.strip() for s in args.sections.split(",") if s.strip()]
    unknown = set(sections) - set(SECTIONS)
    if unknown:
        parser.error(f"--sections: unknown {sorted(unknown)}; expected a subset of {', '.join(SECTIONS)}")
    if args.quick:
        global BLOCK_LENGTHS, CONTEXTS, LONG_FIT_LENGTHS, LONG_NAIVE_FIT_LENGTHS, LONG_RUN_LENGTH
        BLOCK_LENGTHS, CONTEXTS = [256, 1024, 4096, 32768], [64, 256]
        LONG_FIT_LENGTHS, LONG_NAIVE_FIT_LENGTHS, LONG_RUN_LENGTH = [4096, 8192, 16384], [1024, 2048, 4096], 65536
        args.repeats, args.gen_steps, args.naive_max_gb = 1, 10, 0.5
        args.decode_tokens, args.decode_rounds = 4, 1
        global VERSUS_LENGTHS
        VERSUS_LENGTHS = [256, 512]
        global COMPILE_LENGTHS
        COMPILE_LENGTHS = [32, 48, 64, 80, 96]
    global DEVICE, AUTOCAST
    DEVICE, AUTOCAST = args.device, args.autocast
    if DEVICE.startswith("cuda") and not torch.cuda.is_available():
        parser.error("--device cuda: no CUDA device is visible")
    torch.set_num_threads(args.threads)
    results = {"command": " ".join([Path(sys.executable).name, *sys.argv]), "machine": machine()}
    results["machine"].update(device=DEVICE, autocast=AUTOCAST,
                              gpu=torch.cuda.get_device_name(DEVICE) if DEVICE.startswith("cuda") else None)
    runners = {"block": block_section, "generation": generation_section, "long": long_section,
               "decode": decode_section, "versus": versus_section, "compile": compile_section}
    for name in sections:
        log(f"[{name}]")
        with Clock() as clock:
            results[name] = runners[name](args)
        results[name]["section_wall_s"] = clock.wall
    results["machine"]["loadavg_end"] = os.getloadavg()
    args.out.parent.mkdir(parents=True, exist_ok=True)
    tmp = args.out.with_name(args.out.name + ".tmp")
    tmp.write_text(json.dumps(results, indent=1))
    tmp.replace(args.out)
    log(f"wrote {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
