"""The GPU section of BENCHMARKS.md from ``cuda_results.json`` (correctness) and ``cuda_run_none.json`` (benchmarks).

    python benchmarks/report_cuda.py > /tmp/gpu_section.md      # then paste it over the "## GPU" section
"""

import json
from pathlib import Path

HERE = Path(__file__).resolve().parent


def main() -> None:
    c = json.loads((HERE / "cuda_results.json").read_text())
    d = json.loads((HERE / "cuda_run_none.json").read_text())
    m = d["machine"]
    print(f"## GPU (one {m['gpu']}, measured {m['date'][:10]})\n")
    print(f"Run once on one {m['gpu']} (torch {m['torch']}, Python {m['python']}) with the session's GPU time: "
          "`python benchmarks/cuda_check.py --skip-benchmarks` (correctness) and "
          "`python benchmarks/run.py --device cuda --autocast none --sections block,decode,versus --repeats 3 "
          "--decode-rounds 3 --versus-max-gb 100 --out benchmarks/cuda_run_none.json`; tables by "
          "`python benchmarks/report_cuda.py`. The bf16-autocast benchmark run did not fit in the GPU time and was not "
          "run (bf16 correctness was checked). Timings synchronise the device; peak memory is "
          "`torch.cuda.max_memory_allocated` above the memory allocated before the call.\n")
    print(f"**Correctness, GPU vs CPU:** {sum(x['ok'] for x in c['checks'])}/{len(c['checks'])} checks passed:\n")
    print("| check | max abs error | tolerance |\n|---|---|---|")
    for x in c["checks"]:
        print(f"| {x['name']} | {x['error']:.1e} | {x['tolerance']:.0e} |")
    b = d["block"]
    print(f"\n**One S4D block on the GPU**, H={b['config']['H']}, N={b['config']['N']}, B={b['config']['B']} "
          f"(median of {b['config']['repeats']}; ms):\n")
    print("| L | ours fwd+bwd | naive fwd+bwd | fixed-kernel fwd+bwd | ours infer | ours peak train |\n"
          "|---|---|---|---|---|---|")
    rows = {(r["L"], r["variant"]): r for r in b["rows"]}

    def ms(r, k):
        return f"{r[k]['median_s'] * 1e3:.1f}" if r and k in r else "—"

    for L in b["config"]["lengths"]:
        o, n, f = (rows.get((L, v)) for v in ("ours", "naive", "fixed"))
        print(f"| {L:,} | {ms(o, 'fwd_bwd')} | {ms(n, 'fwd_bwd')} | {ms(f, 'fwd_bwd')} | {ms(o, 'infer')} | "
              f"{o['memory_train']['peak_bytes'] / 2**20:.0f} MiB |")
    dc, cfg = d["decode"], d["decode"]["config"]
    print(f"\n**Decoding vs Mamba on the GPU** (S4D {cfg['s4d']}, {cfg['s4d_non_embedding_params']:,} non-embedding "
          f"parameters; MambaForCausalLM {cfg['mamba']}, {cfg['mamba_non_embedding_params']:,}; pure-torch path; ms per "
          f"new token, median of {cfg['rounds']} interleaved rounds):\n")
    print("| batch | how | S4D | Mamba | S4D / Mamba |\n|---|---|---|---|---|")
    times = {(r["batch"], r["model"], r["how"]): r["median_s"] for r in dc["rows"]}
    for B in cfg["batches"]:
        for how in ("generate", "step"):
            s, mm = times[(B, "s4d", how)], times[(B, "mamba", how)]
            print(f"| {B} | {how} | {s * 1e3:.2f} | {mm * 1e3:.2f} | {s / mm:.2f}x |")
    v, vc = d["versus"], d["versus"]["config"]
    print(f"\n**One S4D block vs one Transformer encoder layer on the GPU** ({vc['transformer']}; S4D "
          f"{vc['s4d_params']:,} parameters, Transformer {vc['transformer_params']:,}; B={vc['B']}; ms, median; peak = "
          "training forward+backward):\n")
    print("| L | S4D fwd+bwd | Transformer fwd+bwd | Transformer / S4D | S4D infer | Transformer infer | S4D peak | "
          "Transformer peak |\n|---|---|---|---|---|---|---|---|")
    by = {(r["L"], r["variant"]): r for r in v["rows"]}
    for L in vc["lengths"]:
        s, t = by[(L, "ours")], by[(L, "transformer")]
        if "fwd_bwd" not in t or "fwd_bwd" not in s:
            continue
        print(f"| {L:,} | {ms(s, 'fwd_bwd')} | {ms(t, 'fwd_bwd')} | "
              f"{t['fwd_bwd']['median_s'] / s['fwd_bwd']['median_s']:.1f}x | {ms(s, 'infer')} | {ms(t, 'infer')} | "
              f"{s['memory_train']['peak_bytes'] / 2**20:.0f} MiB | {t['memory_train']['peak_bytes'] / 2**20:.0f} MiB |")


if __name__ == "__main__":
    main()
