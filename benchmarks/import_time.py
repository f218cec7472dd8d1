"""What `import s4d_hf` and `s4d-hf --help` cost, against `import torch, transformers` (issue 12's budget: at most
1.5 s more; `--help` under 2 s).

    python benchmarks/import_time.py [--repeats 5]

Each command runs in a fresh interpreter, interleaved with the others, `--repeats` times; prints the best and the
median wall time of each, and the differences to the baseline.
"""

import argparse
import statistics
import subprocess
import sys
import time

COMMANDS = {
    "import torch, transformers": [sys.executable, "-c", "import torch, transformers"],
    "import s4d_hf": [sys.executable, "-c", "import s4d_hf"],
    "s4d-hf --help": [sys.executable, "-m", "s4d_hf_cli", "--help"],
}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=5)
    args = parser.parse_args()
    times = {name: [] for name in COMMANDS}
    for _ in range(args.repeats):
        for name, command in COMMANDS.items():
            start = time.perf_counter()
            subprocess.run(command, check=True, stdout=subprocess.DEVNULL)
            times[name].append(time.perf_counter() - start)
    base = times["import torch, transformers"]
    for name, values in times.items():
        best, median = min(values), statistics.median(values)
        extra = f"  (+{best - min(base):.2f} s best, +{median - statistics.median(base):.2f} s median)" \
            if name == "import s4d_hf" else ""
        print(f"{name:28s} best {best:.2f} s  median {median:.2f} s{extra}")


if __name__ == "__main__":
    main()
