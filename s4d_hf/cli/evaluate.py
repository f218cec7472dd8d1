"""``s4d-hf evaluate FOLDER``: recompute a checkpoint folder's test metrics
(:func:`s4d_hf.hub.evaluation.evaluate_folder`); the last line printed is a JSON object keyed by the card's metric
types.

Checked before anything is loaded (exit code 2, one line): the flag values, the folder (config.json loads as an
S4DConfig, model.safetensors is complete), its training_args.json (valid JSON with ``task`` and ``dataset``) and the
data file it or ``--dataset`` names.

A folder trained outside s4d-hf (no training_args.json; see :mod:`s4d_hf.hub.own_training`) takes ``--dataset SPEC
--task TASK`` and the 🤗 dataset column/split flags of ``s4d-hf train``: the command its card shows.
"""

import argparse
import json
from pathlib import Path

from s4d_hf.cli.common import UsageError, check_data_file, check_folder, check_model_folder, usage_errors
from s4d_hf.cli.options import COUNT, KeyValues, add_dataset_arguments, key_value
from s4d_hf.hub.evaluation import evaluate_folder, plain_output_when_logged, read_run_args
from s4d_hf.training.data.core import TASKS
from s4d_hf.training.data.hf_datasets import hf_dataset_options


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("folder", help="a checkpoint folder written by `s4d-hf train`")
    parser.add_argument("--dataset", help="evaluate on this dataset SPEC instead of the run's own test split")
    parser.add_argument("--dataset-option", action=KeyValues, type=key_value, metavar="KEY=VALUE",
                        help="options of the built-in --dataset (repeatable)")
    parser.add_argument("--split", default="test", choices=("test", "eval"), help="[test]")
    parser.add_argument("--sampling-rate", type=COUNT,
                        help="audio: resample the clips to this rate before the processor")
    parser.add_argument("--rate-policy", choices=("rate", "resample"), help="audio: override the processor's policy")
    parser.add_argument("--max-samples", type=COUNT, help="evaluate on the first N examples only")
    parser.add_argument("--task", choices=TASKS, help="with --dataset, for a folder trained outside s4d-hf (no "
                        "training_args.json): the task to read --dataset as")
    add_dataset_arguments(parser)


def check_run_folder(path: str) -> Path:
    """A folder ``s4d-hf train`` wrote: the model folder checks, training_args.json, the run's data file."""
    folder = check_folder(path, "FOLDER")
    with usage_errors():
        run_args = read_run_args(folder)  # first: its message says what folder this command needs
    check_model_folder(folder, "FOLDER")
    if not run_args.get("data_dir"):  # with data_dir, dataset names a 🤗 datasets builder
        check_data_file(run_args["dataset"], f"{folder / 'training_args.json'}: dataset")
    return folder


def run(args: argparse.Namespace) -> int:
    dataset_args = hf_dataset_options(args)
    if dataset_args and args.dataset is None:
        raise UsageError("the dataset column/split flags need --dataset")
    if args.task is not None:  # a folder trained outside s4d-hf
        folder = check_folder(args.folder, "FOLDER")
        if (folder / "training_args.json").is_file():
            raise UsageError(f"--task: for a folder trained outside s4d-hf; {folder} has training_args.json, whose "
                             "task evaluate uses")
        if args.dataset is None:
            raise UsageError("--task needs --dataset: the data to evaluate the folder on")
        check_model_folder(folder, "FOLDER")
    else:
        folder = check_run_folder(args.folder)
    if args.dataset is not None and not args.data_dir:
        check_data_file(args.dataset, "--dataset")
    with usage_errors(), plain_output_when_logged():
        metrics = evaluate_folder(folder, dataset=args.dataset, dataset_options=args.dataset_option,
                                  split=args.split, sampling_rate=args.sampling_rate, rate_policy=args.rate_policy,
                                  max_samples=args.max_samples, task=args.task, dataset_args=dataset_args or None)
    print(json.dumps(metrics, sort_keys=True))
    return 0
