"""Render benchmarks/results.json (written by run.py) as the tables of BENCHMARKS.md and a plot.

    python benchmarks/report.py benchmarks/results.json \
        [--markdown benchmarks/BENCHMARKS.md] [--plot benchmarks/block.png]

The tables replace what lies between the ``<!-- results:begin -->`` and ``<!-- results:end -->`` markers of the
markdown file; everything else in it is left alone. Every number comes from the JSON file.
"""

import argparse
import json
import statistics
import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent
BEGIN, END = "<!-- results:begin -->", "<!-- results:end -->"
MiB, GiB = 2**20, 2**30
TARGET_L = 16384


def block_rows(results: dict) -> dict:
    return {(r["L"], r["variant"]): r for r in results["block"]["rows"]}


def paired_ratio(a: dict, b: dict, key: str) -> float:
    """Median over rounds of a/b, each round timing both variants back to back (robust to slow load drifts)."""
    return statistics.median(x / y for x, y in zip(a[key]["samples_s"], b[key]["samples_s"]))


def _cpu_ratio(a: dict, b: dict) -> str:
    """'; CPU time R x': the ratio of two decode rows' median process CPU times (absent in older results files)."""
    return f"; CPU time {a['cpu']['median_s'] / b['cpu']['median_s']:.2f}x" if "cpu" in a and "cpu" in b else ""


def targets(results: dict) -> list[tuple[str, str, str, bool]]:
    """(target, measured, how, met) for each target of issue 7 that this results file covers."""
    out = []
    if "block" in results:
        rows = block_rows(results)
        ours, naive, fixed, ftz = (rows.get((TARGET_L, v)) for v in ("ours", "naive", "fixed", "naive_ftz"))
        if ours and naive and "fwd_bwd" in naive:
            speedup = naive["fwd_bwd"]["median_s"] / ours["fwd_bwd"]["median_s"]
            cpu = naive["fwd_bwd_cpu"]["median_s"] / ours["fwd_bwd_cpu"]["median_s"]
            extra = ""
            if ftz and "fwd_bwd" in ftz:
                extra = (f"; against naive with subnormals flushed to zero "
                         f"{ftz['fwd_bwd']['median_s'] / ours['fwd_bwd']['median_s']:.1f}x")
            out.append(("fwd+bwd L=16k: naive / ours >= 5", f"{speedup:.1f}x",
                        f"wall medians {naive['fwd_bwd']['median_s']:.2f} s / {ours['fwd_bwd']['median_s']:.2f} s; "
                        f"CPU time {cpu:.1f}x; paired {paired_ratio(naive, ours, 'fwd_bwd'):.1f}x{extra}",
                        speedup >= 5))
        if ours and fixed:
            ratio = ours["fwd_bwd"]["median_s"] / fixed["fwd_bwd"]["median_s"]
            cpu = ours["fwd_bwd_cpu"]["median_s"] / fixed["fwd_bwd_cpu"]["median_s"]
            out.append(("fwd+bwd L=16k: ours / fixed kernel <= 1.25", f"{ratio:.2f}x",
                        f"wall medians {ours['fwd_bwd']['median_s']:.2f} s / {fixed['fwd_bwd']['median_s']:.2f} s; "
                        f"CPU time {cpu:.2f}x; paired {paired_ratio(ours, fixed, 'fwd_bwd'):.2f}x", ratio <= 1.25))
        if ours and naive and "peak_bytes" in naive["memory_train"]:
            m_ours, m_naive = ours["memory_train"]["peak_bytes"], naive["memory_train"]["peak_bytes"]
            out.append(("peak memory fwd+bwd L=16k: ours / naive <= 1/5", f"1/{m_naive / m_ours:.1f}",
                        f"{m_ours / MiB:.0f} MiB / {m_naive / MiB:.0f} MiB", m_ours * 5 <= m_naive))
    if "long" in results and "peak_bytes" in results["long"].get("run", {}):
        run = results["long"]["run"]
        out.append((f"one layer forward, L={run['L']:,}, H={run['H']}, B={run['B']}: within 24 GiB",
                    f"{run['peak_bytes'] / GiB:.2f} GiB", f"measured peak, {run['wall_s']:.1f} s",
                    run["peak_bytes"] <= results["long"]["config"]["budget_bytes"]))
    if "generation" in results:
        gen = {(r["context"], r["method"]): r["median_s"] for r in results["generation"]["rows"]}
        contexts = sorted({c for c, _ in gen})
        lo, hi = contexts[0], contexts[-1]
        flat = gen[(hi, "s4d_recurrent")] / gen[(lo, "s4d_recurrent")]
        out.append((f"per-token time flat: context {hi} / {lo} <= 1.2", f"{flat:.2f}x",
                    f"{gen[(hi, 's4d_recurrent')] * 1e3:.2f} ms / {gen[(lo, 's4d_recurrent')] * 1e3:.2f} ms",
                    flat <= 1.2))
        if 4096 in contexts:
            speed = gen[(4096, "s4d_recompute")] / gen[(4096, "s4d_recurrent")]
            out.append(("per-token at context 4096: recompute / recurrent >= 20", f"{speed:.0f}x",
                        f"{gen[(4096, 's4d_recompute')] * 1e3:.1f} ms / {gen[(4096, 's4d_recurrent')] * 1e3:.2f} ms",
                        speed >= 20))
    if "decode" in results:
        d = {(r["batch"], r["model"], r["how"]): r for r in results["decode"]["rows"]}
        for how in ("generate", "step"):
            if (1, "s4d", how) in d:
                s4d, mamba = d[(1, "s4d", how)]["median_s"], d[(1, "mamba", how)]["median_s"]
                pairs = [a / b for a, b in zip(d[(1, "s4d", how)]["samples_s"], d[(1, "mamba", how)]["samples_s"])]
                out.append((f"decode batch 1 ({how}): S4D / Mamba per-token time <= 0.67", f"{s4d / mamba:.2f}x",
                            f"{s4d * 1e3:.2f} ms / {mamba * 1e3:.2f} ms; paired {statistics.median(pairs):.2f}x "
                            f"({min(pairs):.2f}-{max(pairs):.2f} over {len(pairs)} rounds)"
                            + _cpu_ratio(d[(1, "s4d", how)], d[(1, "mamba", how)]), s4d <= 0.67 * mamba))
            if (16, "s4d", how) in d:
                s4d, mamba = d[(16, "s4d", how)]["median_s"], d[(16, "mamba", how)]["median_s"]
                pairs = [b / a for a, b in zip(d[(16, "s4d", how)]["samples_s"], d[(16, "mamba", how)]["samples_s"])]
                out.append((f"decode batch 16 ({how}): S4D tokens/s > Mamba tokens/s",
                            f"{mamba / s4d:.2f}x", f"{16 / s4d:,.0f} / {16 / mamba:,.0f} tokens/s; paired "
                            f"{statistics.median(pairs):.2f}x ({min(pairs):.2f}-{max(pairs):.2f})"
                            + _cpu_ratio(d[(16, "mamba", how)], d[(16, "s4d", how)]), s4d < mamba))
    if "versus" in results:
        v = {(r["L"], r["variant"]): r for r in results["versus"]["rows"]}
        ours, tr = v.get((TARGET_L, "ours")), v.get((TARGET_L, "transformer"))
        if ours and tr and "fwd_bwd" in ours and "fwd_bwd" in tr:
            speed = tr["fwd_bwd"]["median_s"] / ours["fwd_bwd"]["median_s"]
            out.append(("fwd+bwd L=16k: Transformer / S4D >= 5", f"{speed:.1f}x",
                        f"{tr['fwd_bwd']['median_s']:.2f} s / {ours['fwd_bwd']['median_s']:.2f} s; inference "
                        f"{tr['infer']['median_s'] / ours['infer']['median_s']:.1f}x", speed >= 5))
            m_o, m_t = ours["memory_train"].get("peak_bytes"), tr["memory_train"].get("peak_bytes")
            if m_o and m_t:
                out.append(("peak memory fwd+bwd L=16k: Transformer / S4D >= 10", f"{m_t / m_o:.1f}x",
                            f"{m_t / MiB:,.0f} MiB / {m_o / MiB:,.0f} MiB", m_t >= 10 * m_o))
    return out


def crossover(results: dict, key: str, memory: bool = False) -> str:
    """The first measured L from which S4D stays ahead of the Transformer (time, or peak memory)."""
    v = {(r["L"], r["variant"]): r for r in results["versus"]["rows"]}
    lengths = sorted({L for L, _ in v})

    def value(r):
        if memory:
            return r.get(key, {}).get("peak_bytes")
        return r.get(key, {}).get("median_s")

    pairs = [(L, value(v[(L, "ours")]), value(v[(L, "transformer")])) for L in lengths
             if value(v.get((L, "ours"), {})) and value(v.get((L, "transformer"), {}))]
    ahead = [L for L, o, t in pairs if o < t]
    if not pairs:
        return "n/a"
    if len(ahead) == len(pairs):
        return f"S4D ahead at every measured L (from {pairs[0][0]:,})"
    behind = [L for L, o, t in pairs if o >= t]
    if behind[-1] == pairs[-1][0]:
        return f"Transformer still ahead at L = {behind[-1]:,}"
    first = min(L for L, o, t in pairs if L > behind[-1])
    return f"between L = {behind[-1]:,} and {first:,}"


def mib(memory: dict) -> str:
    if "same_as" in memory:
        return f"= {memory['same_as']}"
    if "peak_bytes" in memory:
        return f"{memory['peak_bytes'] / MiB:,.0f}"
    if "projected_peak_bytes" in memory:
        return f"({memory['projected_peak_bytes'] / MiB:,.0f} projected, not run)"
    return memory.get("error", "-")


def ms(row: dict, key: str) -> str:
    return f"{row[key]['median_s'] * 1e3:,.0f}" if key in row else "not run"


def markdown(results: dict) -> str:
    m = results["machine"]
    lines = [
        f"Measured {m['date']} on {m['cpu']} ({m['cpu_count']} cores shared with other jobs; load average "
        f"{', '.join(f'{x:.1f}' for x in m['loadavg_start'])} at the start, "
        f"{', '.join(f'{x:.1f}' for x in m['loadavg_end'])} at the end), torch {m['torch']}, "
        f"{m['threads']} intra-op thread(s). Command: `{results['command']}`.",
        "",
    ]
    if m.get("tiny_op_us"):
        t = m["tiny_op_us"]
        lines += [f"Latency of one 256-element GELU in this process: {t['threads_used']:.0f} µs with the threads used, "
                  f"{t['two_threads']:.0f} µs with 2 threads (see *Threads* above).", ""]
    rows = targets(results)
    if rows:
        lines += ["| target | measured | details | met |", "|---|---|---|---|"]
        lines += [f"| {t} | **{v}** | {d} | {'yes' if ok else '**no**'} |" for t, v, d, ok in rows]
        lines.append("")
    if "block" in results:
        cfg = results["block"]["config"]
        lines += [f"### One S4D block, H={cfg['H']}, N={cfg['N']}, B={cfg['B']} (median of {cfg['repeats']} "
                  "interleaved repeats; peak = extra resident memory of one call, fresh subprocess)", "",
                  "| L | variant | forward (ms) | forward+backward (ms) | inference forward (ms) | "
                  "peak fwd+bwd (MiB) | peak inference (MiB) |", "|---:|---|---:|---:|---:|---:|---:|"]
        for r in results["block"]["rows"]:
            lines.append(f"| {r['L']:,} | {r['variant']} | {ms(r, 'fwd')} | {ms(r, 'fwd_bwd')} | {ms(r, 'infer')} | "
                         f"{mib(r['memory_train'])} | {mib(r['memory_infer'])} |")
        lines.append("")
    if "generation" in results:
        g = results["generation"]
        cfg = g["config"]
        lines += [f"### Generation, batch 1: milliseconds per new token (median of {cfg['steps']}+ steps)", "",
                  f"S4D: {cfg['s4d']} ({cfg['s4d_non_embedding_params']:,} non-embedding parameters). "
                  f"Mamba: {cfg['mamba']} ({cfg['mamba_non_embedding_params']:,}), transformers' pure-torch path.", "",
                  "| context | S4D recurrent (ours) | S4D recompute per token | Mamba recurrent |",
                  "|---:|---:|---:|---:|"]
        table = {(r["context"], r["method"]): r["median_s"] for r in g["rows"]}
        for c in cfg["contexts"]:
            lines.append(f"| {c:,} | {table[(c, 's4d_recurrent')] * 1e3:.2f} | "
                         f"{table[(c, 's4d_recompute')] * 1e3:.1f} | "
                         f"{table[(c, 'mamba_recurrent')] * 1e3:.2f} |")
        lines.append("")
    if "decode" in results:
        cfg = results["decode"]["config"]
        d = {(r["batch"], r["model"], r["how"]): r["median_s"] for r in results["decode"]["rows"]}
        lines += [f"### Decoding vs Mamba: milliseconds per new token (median of {cfg['rounds']} interleaved rounds)",
                  "",
                  f"S4D: {cfg['s4d']} ({cfg['s4d_non_embedding_params']:,} non-embedding parameters). "
                  f"Mamba: {cfg['mamba']} ({cfg['mamba_non_embedding_params']:,}), transformers' pure-torch path. "
                  f"generate(): greedy, prompt {cfg['prompt']}, {cfg['new_tokens']} new tokens after the first; "
                  "step: one model call with the cache.", "",
                  "| batch | measured | S4D (ms/token) | Mamba (ms/token) | S4D / Mamba | S4D tokens/s | "
                  "Mamba tokens/s |",
                  "|---:|---|---:|---:|---:|---:|---:|"]
        for B in cfg["batches"]:
            for how in ("generate", "step"):
                s, m = d[(B, "s4d", how)], d[(B, "mamba", how)]
                lines.append(f"| {B} | {how} | {s * 1e3:.2f} | {m * 1e3:.2f} | {s / m:.2f} | {B / s:,.0f} | "
                             f"{B / m:,.0f} |")
        lines.append("")
    if "versus" in results:
        vs = results["versus"]
        cfg = vs["config"]
        lines += [f"### One S4D block vs one Transformer encoder layer, H={cfg['H']}, B={cfg['B']}", "",
                  f"S4D: `S4DLayer`, N={cfg['N']} ({cfg['s4d_params']:,} parameters). Transformer: "
                  f"{cfg['transformer']} ({cfg['transformer_params']:,} parameters). Time: median of interleaved "
                  "repeats (3 up to 4k, 1 from 16k); peak: extra resident memory of one call, fresh subprocess. "
                  f"The Transformer stops when its projected time exceeds {cfg['max_s']:.0f} s or its projected "
                  f"peak {cfg['max_gb']} GiB.", "",
                  "| L | model | forward+backward (ms) | inference forward (ms) | peak fwd+bwd (MiB) | "
                  "peak inference (MiB) |", "|---:|---|---:|---:|---:|---:|"]
        for r in vs["rows"]:
            name = "S4D" if r["variant"] == "ours" else "Transformer"
            if "skipped" in r:
                lines.append(f"| {r['L']:,} | {name} | not run | not run | {r['skipped']} | |")
                continue
            lines.append(f"| {r['L']:,} | {name} | {ms(r, 'fwd_bwd')} | {ms(r, 'infer')} | "
                         f"{mib(r['memory_train'])} | {mib(r['memory_infer'])} |")
        lines += ["", f"- crossover, forward+backward time: {crossover(results, 'fwd_bwd')}; inference time: "
                  f"{crossover(results, 'infer')}; peak memory fwd+bwd: "
                  f"{crossover(results, 'memory_train', memory=True)}.", ""]
    if "compile" in results:
        cp = results["compile"]
        cfg = cp["config"]
        lines += [f"### torch.compile (inductor), d_model {cfg['d_model']}, {cfg['n_layers']} layers, N "
                  f"{cfg['d_state']}, batch {cfg['batch']}, lengths {', '.join(map(str, cfg['lengths']))}", "",
                  "| head | mode | graphs for 5 lengths | first call per length (s) | eager / compiled per length |",
                  "|---|---|---:|---|---|"]
        for r in cp["rows"]:
            first = ", ".join(f"{p['first_call_s']:.1f}" for p in r["per_length"])
            speed = ", ".join(f"{p['eager']['median_s'] / p['compiled']['median_s']:.2f}x" for p in r["per_length"])
            lines.append(f"| {r['head']} | {r['mode']} | {r['unique_graphs']} | {first} | {speed} |")
        lines.append("")
    if "long" in results:
        lg = results["long"]
        cfg = lg["config"]
        lines += [f"### Longest sequence in 24 GiB: one layer, {cfg['mode']}, "
                  f"H={cfg['H']}, N={cfg['N']}, B={cfg['B']}", "",
                  "| variant | L | peak (MiB) |", "|---|---:|---:|"]
        for variant in ("ours", "naive"):
            for p in lg[f"{variant}_points"]:
                lines.append(f"| {variant} | {p['L']:,} | {p['peak_bytes'] / MiB:,.0f} |")
        run = lg.get("run", {})
        if "peak_bytes" in run:
            lines.append(f"| ours (measured) | {run['L']:,} | {run['peak_bytes'] / MiB:,.0f} |")
        lines.append("")
        for variant in ("ours", "naive"):
            f = lg[f"{variant}_fit"]
            lines.append(f"- {variant}: peak ≈ {f['intercept_bytes'] / MiB:,.0f} MiB "
                         f"+ {f['slope_bytes_per_step']:,.0f} "
                         f"bytes × L (worst residual {f['max_relative_residual']:.1%}): at most "
                         f"**L ≈ {f['max_length_in_budget']:,}** in 24 GiB.")
        if "peak_bytes" in run:
            lines.append(f"- measured at L = {run['L']:,}: {run['peak_bytes'] / GiB:.2f} GiB (the fit predicted "
                         f"{run['predicted_peak_bytes'] / GiB:.2f} GiB), {run['wall_s']:.1f} s.")
        elif run:
            lines.append(f"- L = {run.get('L', '?'):,}: {run.get('skipped', run.get('error'))}")
        lines.append("")
    return "\n".join(lines)


def plot(results: dict, path: Path) -> bool:
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        print("matplotlib is not installed: no plot (pip install matplotlib)", file=sys.stderr)
        return False
    panels = [k for k in ("block", "generation") if k in results]
    if not panels:
        return False
    fig, axes = plt.subplots(1, len(panels) + ("block" in results), figsize=(5 * (len(panels) + 1), 4))
    axes = list(axes) if hasattr(axes, "__len__") else [axes]
    style = {"ours": ("C0", "o"), "naive": ("C3", "s"), "naive_ftz": ("C1", "x"), "fixed": ("C2", "^")}
    if "block" in results:
        rows = results["block"]["rows"]
        time_ax, mem_ax = axes.pop(0), axes.pop(0)
        for variant, (color, marker) in style.items():
            pts = [(r["L"], r["fwd_bwd"]["median_s"]) for r in rows if r["variant"] == variant and "fwd_bwd" in r]
            if pts:
                time_ax.plot(*zip(*pts), color=color, marker=marker, label=variant)
            pts = [(r["L"], r["memory_train"]["peak_bytes"] / MiB) for r in rows
                   if r["variant"] == variant and "peak_bytes" in r["memory_train"]]
            if pts:
                mem_ax.plot(*zip(*pts), color=color, marker=marker, label=variant)
        cfg = results["block"]["config"]
        for ax, title, unit in ((time_ax, "forward+backward time", "seconds"), (mem_ax, "peak memory, fwd+bwd", "MiB")):
            ax.set(xscale="log", yscale="log", xlabel="sequence length L", ylabel=unit,
                   title=f"S4D block {title}\nH={cfg['H']}, N={cfg['N']}, B={cfg['B']}")
            ax.legend()
            ax.grid(True, which="both", alpha=0.3)
    if "generation" in results:
        ax = axes.pop(0)
        g = results["generation"]
        names = {"s4d_recurrent": "S4D recurrent (ours)", "s4d_recompute": "S4D recompute", "mamba_recurrent": "Mamba"}
        for i, (method, label) in enumerate(names.items()):
            pts = sorted((r["context"], r["median_s"] * 1e3) for r in g["rows"] if r["method"] == method)
            ax.plot(*zip(*pts), marker="o", color=f"C{i + 4}", label=label)
        ax.set(xscale="log", yscale="log", xlabel="context length", ylabel="ms per token", title="generation, batch 1")
        ax.legend()
        ax.grid(True, which="both", alpha=0.3)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    return True


def plot_versus(results: dict, path: Path) -> bool:
    """Time and peak memory (forward+backward) of one S4D block vs one Transformer layer, by L."""
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        print("matplotlib is not installed: no plot (pip install matplotlib)", file=sys.stderr)
        return False
    rows = results["versus"]["rows"]
    fig, (time_ax, mem_ax) = plt.subplots(1, 2, figsize=(10, 4))
    for variant, label, color in (("ours", "S4D block", "C0"), ("transformer", "Transformer layer (SDPA)", "C3")):
        for key, style in (("fwd_bwd", "-"), ("infer", "--")):
            pts = [(r["L"], r[key]["median_s"]) for r in rows if r["variant"] == variant and key in r]
            if pts:
                time_ax.plot(*zip(*pts), style, color=color, marker="o",
                             label=f"{label}, {'fwd+bwd' if key == 'fwd_bwd' else 'inference'}")
            mkey = "memory_train" if key == "fwd_bwd" else "memory_infer"
            pts = [(r["L"], r[mkey]["peak_bytes"] / MiB) for r in rows
                   if r["variant"] == variant and "peak_bytes" in r.get(mkey, {})]
            if pts:
                mem_ax.plot(*zip(*pts), style, color=color, marker="o",
                            label=f"{label}, {'fwd+bwd' if key == 'fwd_bwd' else 'inference'}")
    cfg = results["versus"]["config"]
    for ax, title, unit in ((time_ax, "time", "seconds"), (mem_ax, "peak memory", "MiB")):
        ax.set(xscale="log", yscale="log", xlabel="sequence length L", ylabel=unit,
               title=f"S4D block vs Transformer layer: {title}\nH={cfg['H']}, B={cfg['B']}")
        ax.legend(fontsize=7)
        ax.grid(True, which="both", alpha=0.3)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    return True


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("results", type=Path)
    parser.add_argument("--markdown", type=Path, default=HERE / "BENCHMARKS.md")
    parser.add_argument("--plot", type=Path, default=HERE / "block.png")
    parser.add_argument("--markers", default="results",
                        help="write between <!-- NAME:begin --> and <!-- NAME:end --> (default: results); e.g. "
                             "'decode' for a results file of run.py --sections decode")
    args = parser.parse_args(argv)
    BEGIN, END = f"<!-- {args.markers}:begin -->", f"<!-- {args.markers}:end -->"
    results = json.loads(args.results.read_text())
    text = args.markdown.read_text()
    if BEGIN not in text or END not in text:
        raise SystemExit(f"{args.markdown}: missing the {BEGIN} / {END} markers")
    head, rest = text.split(BEGIN, 1)
    _, tail = rest.split(END, 1)
    args.markdown.write_text(f"{head}{BEGIN}\n{markdown(results)}\n{END}{tail}")
    if ("block" in results or "generation" in results) and plot(results, args.plot):
        print(f"wrote {args.plot}")
    if "versus" in results and plot_versus(results, args.plot.with_name("versus.png")):
        print(f"wrote {args.plot.with_name('versus.png')}")
    print(f"updated {args.markdown}")
    for target, value, details, met in targets(results):
        print(f"{'met ' if met else 'MISS'}  {target}: {value} ({details})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
