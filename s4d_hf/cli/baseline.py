"""``s4d-hf baseline FOLDER``: train and test a same-size Transformer with the S4D run's data, batch size and number
of optimizer steps (:func:`s4d_hf.training.transformer_baseline.train_transformer_baseline`), and write
``FOLDER/transformer_baseline.json`` (``--output`` elsewhere), which ``s4d-hf release FOLDER`` puts in the card. The
last line printed is a JSON summary: the test metrics, both parameter counts, wall time and peak memory.

Checked before anything is loaded (exit code 2, one line): the flag values, the folder (as for ``s4d-hf evaluate``:
config.json, model.safetensors, training_args.json and the data file it names), a task with a Transformer baseline,
all_results.json with the run's ``global_step``, and the folder of ``--output``.
"""

import argparse
import json
import shlex
from pathlib import Path

import torch

from s4d_hf.cli.common import UsageError, read_json, usage_errors
from s4d_hf.cli.evaluate import check_run_folder
from s4d_hf.cli.options import COUNT, POSITIVE
from s4d_hf.hub.evaluation import plain_output_when_logged, read_run_args
from s4d_hf.staging import write_atomically
from s4d_hf.training.transformer_baseline import DEFAULT_LR, OUTPUT_NAME, TASKS, train_transformer_baseline


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("folder", help="a folder written by `s4d-hf train`")
    parser.add_argument("--lr", type=POSITIVE, default=DEFAULT_LR,
                        help=f"the Transformer's peak learning rate (AdamW, warmup + cosine) [{DEFAULT_LR:g}]")
    parser.add_argument("--max-steps", type=COUNT, help="stop after N optimizer steps (a smoke run: release refuses "
                        "its JSON) [the S4D run's number of steps]")
    parser.add_argument("--output", metavar="FILE", help=f"where to write the JSON [FOLDER/{OUTPUT_NAME}]")
    parser.add_argument("--device", choices=("cpu", "cuda"), help="[cuda when available, else cpu]")


def run(args: argparse.Namespace) -> int:
    folder = check_run_folder(args.folder)
    with usage_errors():
        run_args = read_run_args(folder)
    if run_args["task"] not in TASKS:
        raise UsageError(f"{folder / 'training_args.json'}: task {run_args['task']!r} has no Transformer baseline; "
                         f"expected one of {', '.join(TASKS)}")
    results = read_json(folder / "all_results.json", required=("global_step",))
    steps = results["global_step"]
    if not isinstance(steps, int) or isinstance(steps, bool) or steps < 1:
        raise UsageError(f"{folder / 'all_results.json'}: 'global_step' must be a positive integer (the run's "
                         f"optimizer steps); got {steps!r}")
    output = Path(args.output) if args.output else folder / OUTPUT_NAME
    if not output.parent.is_dir():
        raise UsageError(f"--output {output}: no such folder {output.parent}")
    if output.is_dir():
        raise UsageError(f"--output {output}: a folder; expected a file name")
    if args.device == "cuda" and not torch.cuda.is_available():
        raise UsageError("--device cuda: no CUDA GPU is available")
    argv = getattr(args, "_argv", None) or []
    command = "s4d-hf baseline " + " ".join(shlex.quote(str(a)) for a in argv if a != "--debug")
    with usage_errors(ValueError, KeyError), plain_output_when_logged():
        result = train_transformer_baseline(folder, lr=args.lr, max_steps=args.max_steps, device=args.device,
                                            command=command)
    write_atomically(output, json.dumps(result, indent=2, sort_keys=True) + "\n")
    summary = {"test_metrics": result["test_metrics"], "output": str(output),
               **{k: result[k] for k in ("train_runtime", "peak_memory_bytes", "device", "optimizer_steps")},
               "non_embedding_parameters": {"transformer": result["transformer"]["non_embedding_parameters"],
                                            "s4d": result["s4d"]["non_embedding_parameters"]}}
    print(json.dumps(summary, sort_keys=True))
    return 0
