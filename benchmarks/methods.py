"""Method comparisons from the papers around S4D, at equal fine-tuning steps, several seeds on the same splits.

    ptd        init="legs" (S4D-LegS) vs init="legs-ptd" (S4-PTD; Yu, Mahoney, Erichson, ICLR 2024)
    spt        from scratch vs self-pretraining then fine-tuning (SPT; Amos, Berant, Gupta, ICLR 2024)
    ptd-noise  the models `ptd` trained, re-scored on test inputs plus a high-frequency perturbation (PTD's claim is
               robustness to it): level·σ·(-1)^t, a tone at the Nyquist frequency, σ the train split's per-channel
               std of the raw input (images: pixels clipped to [0, 1] afterwards). No training; run `ptd` first.

Every run is one ``python -m s4d_hf.train`` command (printed and logged), with ``--seed S`` (model init and data
order) and ``--data-seed 0`` (the same train/eval/test splits for every seed). The models are small and the runs
short so that a whole comparison fits a 2-core CPU; they are not the shipped checkpoints' recipes.

    python benchmarks/methods.py ptd [--datasets tecator,plaid] [--seeds 0 1 2] [--work DIR]
    python benchmarks/methods.py spt ...
    python benchmarks/methods.py ptd-noise [--levels 0.1 0.3 1]

Results are merged into ``benchmarks/methods_results.json`` (per seed, mean, std, the commands, wall time) and
printed as a markdown table. Runs whose folder already holds all_results.json are reused (delete --work to redo).
``s4d-hf release FOLDER --methods benchmarks/methods_results.json`` copies a dataset's rows into its model card.
Not a test; never run in CI.
"""

import argparse
import json
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

HERE = Path(__file__).resolve().parent
RESULTS = HERE / "methods_results.json"

# One small setting per modality. "steps": fine-tuning optimizer steps; "spt_steps": self-pretraining steps.
SETUPS = {
    "tecator": {
        "task": "time-series-regression", "metric": "rmse", "options": [],
        "size": ["--d-model", "32", "--n-layers", "2", "--d-state", "16", "--bidirectional"],
        "train": ["--batch-size", "16", "--lr", "5e-3", "--eval-steps", "25"], "steps": 300, "spt_steps": 100,
    },
    "plaid": {
        "task": "time-series-classification", "metric": "accuracy", "options": ["downsample=4"],
        "size": ["--d-model", "32", "--n-layers", "2", "--d-state", "32", "--bidirectional"],
        "train": ["--batch-size", "32", "--lr", "1e-2", "--eval-steps", "50"], "steps": 200, "spt_steps": 100,
    },
    "fashion-mnist": {
        "task": "image-classification", "metric": "accuracy",
        "options": ["max_train_samples=5000", "max_eval_samples=1000", "max_test_samples=2000"],
        "size": ["--d-model", "32", "--n-layers", "2", "--d-state", "32", "--bidirectional"],
        "train": ["--batch-size", "32", "--lr", "1e-2", "--eval-steps", "100"], "steps": 300, "spt_steps": 150,
    },
    "spoken-digits": {
        "task": "audio-classification", "metric": "accuracy", "options": ["n_per_class=40"],
        "size": ["--d-model", "32", "--n-layers", "2", "--d-state", "32", "--bidirectional"],
        "train": ["--batch-size", "16", "--lr", "1e-2", "--eval-steps", "50"], "steps": 150, "spt_steps": 75,
    },
    "shakespeare": {
        "task": "causal-lm", "metric": "bits_per_byte",
        "options": ["max_train_samples=4000", "max_eval_samples=100", "max_test_samples=200"],
        "size": ["--d-model", "64", "--n-layers", "2", "--d-state", "32"],
        "train": ["--batch-size", "16", "--lr", "5e-3", "--eval-steps", "100"], "steps": 200, "spt_steps": None,
    },
}
LOWER_IS_BETTER = {"rmse", "bits_per_byte"}
ARMS = {"ptd": ("legs", "legs-ptd"), "spt": ("scratch", "spt-then-fine-tune")}


def train(work: Path, name: str, args: list[str]) -> tuple[dict, float, str]:
    """Run one training command unless its folder is complete; return (all_results, seconds, command)."""
    out = work / name
    cmd = [sys.executable, "-m", "s4d_hf.train", *args, "--output-dir", str(out), "--overwrite", "--no-progress"]
    shown = "python -m s4d_hf.train " + " ".join(args)
    done = out / "all_results.json"
    if not done.is_file():
        print(f"  {shown}", flush=True)
        start = time.time()
        with open(work / f"{name}.log", "w") as log:
            subprocess.run(cmd, check=True, stdout=log, stderr=subprocess.STDOUT)
        (out / "wall_seconds.txt").write_text(f"{time.time() - start:.1f}\n")
    seconds = float((out / "wall_seconds.txt").read_text()) if (out / "wall_seconds.txt").is_file() else float("nan")
    return json.loads(done.read_text()), seconds, shown


def compare(method: str, dataset: str, seeds: list[int], work: Path) -> dict:
    setup = SETUPS[dataset]
    task, metric = setup["task"], setup["metric"]
    options = [arg for option in setup["options"] for arg in ("--dataset-option", option)]
    data = ["--dataset", dataset, *options, "--data-seed", "0"]
    finetune = ["--task", task, *data, *setup["train"], "--max-steps", str(setup["steps"])]
    values = {arm: [] for arm in ARMS[method]}
    seconds, commands = 0.0, []
    for seed in seeds:
        runs = []
        if method == "ptd":
            for init in ARMS["ptd"]:
                runs.append((init, f"{dataset}-{init}-{seed}", [*finetune, *setup["size"], "--init", init,
                                                                  "--seed", str(seed)]))
        else:
            backbone = work / f"{dataset}-spt-{seed}"
            pretrain = ["--task", "self-pretraining", *data, *setup["size"], *setup["train"],
                        "--max-steps", str(setup["spt_steps"]), "--seed", str(seed)]
            runs.append((None, backbone.name, pretrain))
            runs.append(("spt-then-fine-tune", f"{dataset}-spt-ft-{seed}",
                         [*finetune, "--init-from", str(backbone), "--seed", str(seed)]))
            runs.append(("scratch", f"{dataset}-scratch-{seed}", [*finetune, *setup["size"], "--seed", str(seed)]))
        for arm, name, args in runs:
            results, took, shown = train(work, name, args)
            seconds += took
            commands.append(shown)
            if arm is not None:  # the self-pretraining run itself has no test metric to compare
                values[arm].append(results[f"test_{metric}"])
    return {
        "method": method, "dataset": dataset, "task": task, "metric": metric,
        "lower_is_better": metric in LOWER_IS_BETTER, "seeds": seeds, "steps": setup["steps"],
        **({"spt_steps": setup["spt_steps"]} if method == "spt" else {}),
        "arms": {arm: {"per_seed": v, "mean": float(np.mean(v)), "std": float(np.std(v))} for arm, v in values.items()},
        "model": " ".join(setup["size"]), "dataset_options": setup["options"],
        "wall_minutes": round(seconds / 60, 1), "commands": commands,
    }


def noise_robustness(dataset: str, seeds: list[int], work: Path, levels: list[float]) -> dict:
    """Test metric of each trained `ptd` run under the Nyquist-tone perturbation, per level (0 = clean)."""
    from s4d_hf.hub.evaluation import predict_logits, run_splits

    setup = SETUPS[dataset]
    task, metric = setup["task"], setup["metric"]
    all_levels = [0.0, *levels]
    folders = {(init, seed): work / f"{dataset}-{init}-{seed}" for seed in seeds for init in ARMS["ptd"]}
    for folder in folders.values():
        if not (folder / "all_results.json").is_file():
            raise SystemExit(f"{folder} is missing: run `python benchmarks/methods.py ptd --datasets {dataset}` "
                             f"with the same --work and --seeds first")
    # every run used --data-seed 0 and the same options: one load of the splits serves them all
    _, splits = run_splits(next(iter(folders.values())))
    sigma = np.concatenate([np.asarray(ex["input_values"], np.float64) for ex in splits.train]).std(0)
    labels = np.asarray([ex["labels"] for ex in splits.test], dtype=np.float64).reshape(len(splits.test), -1)
    perturbed = []  # the test split once per level, in level order
    for level in all_levels:
        for ex in splits.test:
            x = np.asarray(ex["input_values"], np.float64)
            tone = np.where(np.arange(len(x)) % 2 == 0, 1.0, -1.0)[:, None]
            x = x + level * sigma * tone
            if task == "image-classification":
                x = np.clip(x, 0.0, 1.0)
            perturbed.append({**ex, "input_values": x.astype(np.float32)})
    values = {init: {str(level): [] for level in all_levels} for init in ARMS["ptd"]}
    for (init, _), folder in folders.items():
        outputs = np.split(predict_logits(folder, task, splits, perturbed), len(all_levels))
        for level, out in zip(all_levels, outputs):
            if metric == "rmse":
                score = float(np.sqrt(((out.reshape(labels.shape) - labels) ** 2).mean()))
            else:
                score = float((out.argmax(-1) == labels[:, 0]).mean())
            values[init][str(level)].append(score)
    return {
        "method": "ptd-noise", "dataset": dataset, "task": task, "metric": metric,
        "lower_is_better": metric in LOWER_IS_BETTER, "seeds": seeds, "levels": all_levels,
        "arms": {init: {level: {"per_seed": v, "mean": float(np.mean(v)), "std": float(np.std(v))}
                        for level, v in by_level.items()} for init, by_level in values.items()},
        "model": " ".join(setup["size"]), "dataset_options": setup["options"],
        "perturbation": "x + level * train_std * (-1)^t (Nyquist tone); images clipped to [0, 1]",
    }


def noise_table(rows: list[dict]) -> str:
    lines = ["| dataset | metric | level | legs | legs-ptd | seeds |", "|---|---|---|---|---|---|"]
    for row in rows:
        for level in row["levels"]:
            cells = [f"{row['arms'][i][str(level)]['mean']:.4g} ± {row['arms'][i][str(level)]['std']:.2g}"
                     for i in ARMS["ptd"]]
            lines.append(f"| {row['dataset']} | {row['metric']} | {level:g} | {cells[0]} | {cells[1]} | "
                         f"{len(row['seeds'])} |")
    return "\n".join(lines)


def table(rows: list[dict]) -> str:
    lines = ["| comparison | dataset | metric | steps | arm A | arm B | seeds |", "|---|---|---|---|---|---|---|"]
    for row in rows:
        a, b = ARMS[row["method"]]
        cells = [f"{arm} {row['arms'][arm]['mean']:.4g} ± {row['arms'][arm]['std']:.2g}" for arm in (a, b)]
        better = "lower" if row["lower_is_better"] else "higher"
        lines.append(f"| {row['method']} | {row['dataset']} | {row['metric']} ({better} is better) | "
                     f"{row['steps']} | {cells[0]} | {cells[1]} | {len(row['seeds'])} |")
    return "\n".join(lines)


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("method", choices=[*sorted(ARMS), "ptd-noise"])
    parser.add_argument("--levels", type=float, nargs="+", default=[0.1, 0.3, 1.0],
                        help="ptd-noise: perturbation amplitudes in train-std units [0.1 0.3 1]")
    parser.add_argument("--datasets", default=None, help=f"comma-separated, from {', '.join(SETUPS)} [all that apply]")
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    parser.add_argument("--work", default="/tmp/s4d-methods", help="where the runs go [/tmp/s4d-methods]")
    parser.add_argument("--results", default=str(RESULTS), help=f"JSON to merge results into [{RESULTS.name}]")
    args = parser.parse_args(argv)
    names = args.datasets.split(",") if args.datasets else list(SETUPS)
    unknown = [n for n in names if n not in SETUPS]
    if unknown:
        parser.error(f"--datasets: unknown {unknown}; expected some of {list(SETUPS)}")
    if args.method == "ptd-noise":
        names = [n for n in names if SETUPS[n]["task"] != "causal-lm"]  # a byte sequence has no additive noise
    if args.method == "spt":
        skipped = [n for n in names if SETUPS[n]["spt_steps"] is None]
        for name in skipped:
            print(f"{name}: skipped for spt (its fine-tuning task is next-byte prediction, the SPT objective itself)")
        names = [n for n in names if n not in skipped]
    work = Path(args.work)
    work.mkdir(parents=True, exist_ok=True)
    path = Path(args.results)
    stored = json.loads(path.read_text()) if path.is_file() else {"rows": []}
    if args.method == "ptd-noise":
        for name in names:
            row = noise_robustness(name, args.seeds, work, args.levels)
            stored["noise_rows"] = [r for r in stored.get("noise_rows", []) if r["dataset"] != name] + [row]
            stored["noise_rows"].sort(key=lambda r: list(SETUPS).index(r["dataset"]))
            path.write_text(json.dumps(stored, indent=1) + "\n")
            print(noise_table([row]), flush=True)
        return 0
    for name in names:
        print(f"{args.method} on {name}:", flush=True)
        row = compare(args.method, name, args.seeds, work)
        stored["rows"] = [r for r in stored["rows"] if (r["method"], r["dataset"]) != (args.method, name)] + [row]
        stored["rows"].sort(key=lambda r: (r["method"], list(SETUPS).index(r["dataset"])))
        path.write_text(json.dumps(stored, indent=1) + "\n")  # after every dataset: a long run can be stopped
        print(table([row]), flush=True)
    print(table(stored["rows"]))
    return 0


if __name__ == "__main__":
    sys.exit(main())
