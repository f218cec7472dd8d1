"""Render benchmarks/results.json (written by run.py) as the tables of BENCHMARKS.md and a plot.

    python benchmarks/report.py benchmarks/results.json [--markdown benchmarks/BENCHMARKS.md] [--plot benchmarks/block.png]

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
                        f"CPU time {cpu:.1f}x; paired {paired_ratio(naive, ours, 'fwd_bwd'):.1f}x{extra}", speedup >= 5))
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
                    f"{gen[(hi, 's4d_recurrent')] * 1e3:.2f} ms / {gen[(lo, 's4d_recurrent')] * 1e3:.2f} ms", flat <= 1.2))
        if 4096 in contexts:
            speed = gen[(4096, "s4d_recompute")] / gen[(4096, "s4d_recurrent")]
            out.append(("per-token at context 4096: recompute / recurrent >= 20", f"{speed:.0f}x",
                        f"{gen[(4096, 's4d_recompute')] * 1e3:.1f} ms / {gen[(4096, 's4d_recurrent')] * 1e3:.2f} ms",
                        speed >= 20))
    return out


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
                  "| context | S4D recurrent (ours) | S4D recompute per token | Mamba recurrent |", "|---:|---:|---:|---:|"]
        table = {(r["context"], r["method"]): r["median_s"] for r in g["rows"]}
        for c in cfg["contexts"]:
            lines.append(f"| {c:,} | {table[(c, 's4d_recurrent')] * 1e3:.2f} | {table[(c, 's4d_recompute')] * 1e3:.1f} | "
                         f"{table[(c, 'mamba_recurrent')] * 1e3:.2f} |")
        lines.append("")
    if "long" in results:
        lg = results["long"]
        cfg = lg["config"]
        lines += [f"### Longest sequence in 24 GiB: one layer, {cfg['mode']}, H={cfg['H']}, N={cfg['N']}, B={cfg['B']}", "",
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
            lines.append(f"- {variant}: peak ≈ {f['intercept_bytes'] / MiB:,.0f} MiB + {f['slope_bytes_per_step']:,.0f} "
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


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("results", type=Path)
    parser.add_argument("--markdown", type=Path, default=HERE / "BENCHMARKS.md")
    parser.add_argument("--plot", type=Path, default=HERE / "block.png")
    args = parser.parse_args(argv)
    results = json.loads(args.results.read_text())
    text = args.markdown.read_text()
    if BEGIN not in text or END not in text:
        raise SystemExit(f"{args.markdown}: missing the {BEGIN} / {END} markers")
    head, rest = text.split(BEGIN, 1)
    _, tail = rest.split(END, 1)
    args.markdown.write_text(f"{head}{BEGIN}\n{markdown(results)}\n{END}{tail}")
    if plot(results, args.plot):
        print(f"wrote {args.plot}")
    print(f"updated {args.markdown}")
    for target, value, details, met in targets(results):
        print(f"{'met ' if met else 'MISS'}  {target}: {value} ({details})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
