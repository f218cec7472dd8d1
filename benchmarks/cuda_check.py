"""CUDA readiness in one command (issue 17): correctness against the CPU, then the block and generation benchmarks.

    python benchmarks/cuda_check.py [--out benchmarks/cuda_results.json]     # under 10 minutes on one GPU

1. Correctness, each on the GPU against the same module on the CPU (float32; bf16 autocast against float32 with a
   bf16-sized tolerance): the kernel K, the convolution (forward and input/parameter gradients), state forwarding,
   the recurrent step and the in-place decoding step, a classifier's logits, and ``generate()`` (greedy tokens
   equal, and the CUDA cache path equal to the CUDA full forward).
2. Benchmarks: ``benchmarks/run.py --device cuda`` for the block and versus (fp32 and bf16 autocast) and decoding sections,
   with smaller repeat counts (the GPU timings synchronise; memory is ``torch.cuda.max_memory_allocated``).

Exits with status 1 if a check fails, 2 when no CUDA device is visible. Not run in CI.
"""

import argparse
import json
import subprocess
import sys
import time
from pathlib import Path

import torch

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))


def checks(device: str) -> list[tuple[str, float, float]]:
    """(name, max abs error, tolerance) for every correctness check."""
    from s4d_hf import S4DConfig, S4DForCausalLM, S4DForSequenceClassification
    from s4d_hf.modeling.ssm_kernels_s4d import DecodeCache
    from s4d_hf.modeling.ssm_s4d import S4DLayer

    out = []

    def compare(name, a, b, tol):
        err = (a.detach().cpu().double() - b.detach().cpu().double()).abs().max().item()
        out.append((name, err, tol))
        print(f"{'ok  ' if err <= tol else 'FAIL'} {name}: {err:.2e} (tolerance {tol:.0e})", flush=True)

    torch.manual_seed(0)
    cpu = S4DLayer(64, d_state=32, channels=2)
    cpu.kernel.reset_parameters()
    torch.nn.init.normal_(cpu.D)
    gpu = S4DLayer(64, d_state=32, channels=2).to(device)
    gpu.load_state_dict(cpu.state_dict())
    for L in (100, 4096):
        with torch.no_grad():
            compare(f"kernel L={L}", gpu.kernel.kernel(L), cpu.kernel.kernel(L), 1e-4)
    x = torch.randn(2, 1000, 64)
    xc = x.clone().requires_grad_()
    xg = x.to(device).requires_grad_()
    yg, _ = gpu(xg)
    yc, _ = cpu(xc)
    compare("convolution forward", yg, yc, 1e-4)
    g = torch.randn_like(yc)
    yg.backward(g.to(device))
    yc.backward(g)
    compare("convolution grad input", xg.grad, xc.grad, 1e-4)
    compare("convolution grad C", gpu.kernel.C.grad, cpu.kernel.C.grad, 1e-3 * cpu.kernel.C.grad.abs().max().item())
    with torch.no_grad():
        _, sg = gpu(x.to(device), return_state=True)
        _, sc = cpu(x, return_state=True)
        compare("state forwarding", torch.view_as_real(sg), torch.view_as_real(sc), 1e-4)
        u = torch.randn(3, 64)
        state = torch.randn(3, 64, 16, dtype=torch.complex64)
        (a, sa), (b, sb) = gpu.step(u.to(device), state.to(device)), cpu.step(u, state)
        compare("step output", a, b, 1e-4)
        compare("step state", torch.view_as_real(sa), torch.view_as_real(sb), 1e-4)
        gstate = state.to(device)
        c = gpu.eval().decode_step(u.to(device), gstate, DecodeCache())
        compare("in-place decoding step", c, b, 1e-4)
        with torch.autocast(device_type="cuda", dtype=torch.bfloat16):
            yb, _ = gpu(x.to(device))
        compare("bf16 autocast forward vs fp32", yb.float(), yc, 5e-2 * yc.abs().max().item())

    torch.manual_seed(0)
    clf = S4DForSequenceClassification(S4DConfig(input_dim=3, d_model=64, n_layers=2, d_state=32, num_labels=5)).eval()
    xs = torch.randn(4, 500, 3)
    with torch.no_grad():
        expected = clf(input_values=xs).logits
        compare("classifier logits", clf.to(device)(input_values=xs.to(device)).logits, expected, 1e-4)
    torch.manual_seed(0)
    lm = S4DForCausalLM(S4DConfig(vocab_size=64, d_model=64, n_layers=2, d_state=32)).eval()
    with torch.no_grad():
        lm.lm_head.weight.mul_(8)  # sharper logits: no near-ties between CPU and GPU argmax
    prompt = torch.randint(0, 64, (2, 16))
    tokens_cpu = lm.generate(prompt, max_new_tokens=20, do_sample=False)
    lm.to(device)
    tokens_gpu = lm.generate(prompt.to(device), max_new_tokens=20, do_sample=False)
    out.append(("generate tokens equal", float((tokens_gpu.cpu() != tokens_cpu).sum()), 0.0))
    print(f"{'ok  ' if torch.equal(tokens_gpu.cpu(), tokens_cpu) else 'FAIL'} generate: greedy tokens CPU == GPU")
    with torch.no_grad():
        full = lm(tokens_gpu[:, :-1], use_cache=False).logits[:, prompt.shape[1] - 1:]
        cache = lm(prompt.to(device), use_cache=True)
        steps = [cache.logits[:, -1]]
        for t in range(prompt.shape[1], tokens_gpu.shape[1] - 1):
            steps.append(lm(tokens_gpu[:, t : t + 1], cache=cache.cache, use_cache=True).logits[:, -1])
        compare("GPU cache path vs GPU full forward", torch.stack(steps, 1), full, 1e-4)
    return out


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--out", type=Path, default=REPO / "benchmarks" / "cuda_results.json")
    parser.add_argument("--skip-benchmarks", action="store_true")
    args = parser.parse_args(argv)
    if not torch.cuda.is_available():
        print("no CUDA device visible: nothing checked", file=sys.stderr)
        return 2
    start = time.perf_counter()
    print(f"device: {torch.cuda.get_device_name()}, torch {torch.__version__}", flush=True)
    results = {"device": torch.cuda.get_device_name(), "torch": torch.__version__,
               "checks": [dict(name=n, error=e, tolerance=t, ok=e <= t) for n, e, t in checks("cuda")]}
    failed = [c["name"] for c in results["checks"] if not c["ok"]]
    if not args.skip_benchmarks:
        for autocast in ("none", "bf16"):
            out = args.out.with_name(f"cuda_run_{autocast}.json")
            command = [sys.executable, str(REPO / "benchmarks" / "run.py"), "--device", "cuda", "--autocast", autocast,
                       "--sections", "block,decode,versus" if autocast == "none" else "block,versus",
                       "--repeats", "3", "--decode-rounds", "3", "--versus-max-gb", "100", "--out", str(out)]
            print("$", " ".join(command), flush=True)
            done = subprocess.run(command, cwd=REPO)
            results[f"run_{autocast}"] = {"command": " ".join(command), "returncode": done.returncode,
                                          "results": str(out)}
    results["wall_s"] = time.perf_counter() - start
    args.out.write_text(json.dumps(results, indent=1))
    print(f"{len(results['checks']) - len(failed)}/{len(results['checks'])} checks passed"
          + (f"; FAILED: {', '.join(failed)}" if failed else "") + f"; {results['wall_s']:.0f} s; wrote {args.out}")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
