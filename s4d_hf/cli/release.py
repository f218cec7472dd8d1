"""``s4d-hf release FOLDER``: measure a finished ``s4d-hf train`` folder and write its card
(:func:`s4d_hf.hub.release.release`; ``--baseline-only``: :func:`s4d_hf.hub.release.baseline`).

Checked before anything is measured (exit code 2, one line): the folder (as for ``s4d-hf evaluate``), its
training_args.json ``command`` and all_results.json, every ``--extra`` and the ``--methods`` file.

A folder trained another way (a plain ``Trainer.save_model`` / ``save_pretrained``: no training_args.json) takes
``--dataset SPEC --task TASK`` (and the 🤗 dataset column/split flags of ``s4d-hf train``) to measure its test
metrics and baseline, and/or ``--info INFO.json`` (card keys, see :mod:`s4d_hf.hub.cards`), and
``--training-command`` (how it was trained): :func:`s4d_hf.hub.own_training.release_own_training`. It must hold its processor (refused
otherwise, with how to save one); its ``training_args.bin`` is never read.
"""

import argparse
import json
from pathlib import Path

from s4d_hf.cli.common import UsageError, check_data_file, check_folder, check_model_folder, read_json, usage_errors
from s4d_hf.cli.evaluate import check_run_folder
from s4d_hf.cli.options import COUNT, add_dataset_arguments
from s4d_hf.hub.evaluation import plain_output_when_logged, read_run_args
from s4d_hf.hub.own_training import baseline_own, release_own_training
from s4d_hf.hub.release import baseline, check_extras, release
from s4d_hf.training.data.core import TASKS
from s4d_hf.training.data.hf_datasets import hf_dataset_options


def _extra(text: str) -> str:
    """``real``, ``unseen``, ``families`` or ``rate:HZ`` with a positive integer HZ (an argparse ``type``)."""
    kind, _, hz = text.partition(":")
    if text in ("real", "unseen", "families") or kind == "rate" and _is_count(hz):
        return text
    raise argparse.ArgumentTypeError(f"expected 'real', 'unseen', 'families' or 'rate:HZ' (a positive integer HZ); "
                                     f"got {text!r}")


def _is_count(text: str) -> bool:
    try:
        COUNT(text)
    except argparse.ArgumentTypeError:
        return False
    return True


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("folder", help="a folder written by `s4d-hf train`")
    parser.add_argument("--extra", action="append", default=[], metavar="KIND[:ARG]", type=_extra,
                        help="audio: 'real' (recorded digits), 'unseen' (spoken-digits-unseen voices), 'families' "
                        "(accuracy per voice family) or 'rate:HZ' (clips at another sampling rate)")
    parser.add_argument("--methods", metavar="JSON", help="benchmarks/methods_results.json: copy this dataset's "
                        "PTD/SPT comparison rows into the card")
    parser.add_argument("--baseline-only", action="store_true", help="print the same-split baseline and stop")
    parser.add_argument("--dataset-id", help="the dataset id for the card metadata (default: the dataset name)")
    own = parser.add_argument_group("a folder trained another way (Trainer.save_model / save_pretrained, no "
                                    "training_args.json)")
    own.add_argument("--dataset", metavar="SPEC", help="measure the test metrics and baseline on this dataset (as "
                     "`s4d-hf train --dataset` reads it; eval/test splits carved with seed 0 where it has none)")
    own.add_argument("--task", choices=TASKS, help="the task to read --dataset as")
    own.add_argument("--info", metavar="JSON", help="the card's info keys (s4d_hf/hub/cards.py): with --dataset they "
                     "override the defaults (command, license, limitations, dataset.*); alone they must give task, "
                     "metrics and dataset")
    own.add_argument("--training-command", metavar="TEXT",
                     help="how the weights were trained, for the card's Training section")
    add_dataset_arguments(parser)


def run(args: argparse.Namespace) -> int:
    folder = check_folder(args.folder, "FOLDER")
    own_flags = [flag for flag, value in (("--dataset", args.dataset), ("--task", args.task), ("--info", args.info),
                                          ("--training-command", args.training_command)) if value is not None]
    own_flags += ["--" + name.replace("_", "-") for name in hf_dataset_options(args)]
    if (folder / "training_args.json").is_file():
        if own_flags:
            raise UsageError(f"{', '.join(own_flags)}: for a folder trained outside s4d-hf; {folder} has "
                             "training_args.json (an s4d-hf train run), whose own dataset and task release uses")
    else:
        return _run_own(folder, args)
    folder = check_run_folder(args.folder)
    if not args.baseline_only:
        with usage_errors():
            run_args = read_run_args(folder)
        if not isinstance(run_args.get("command"), str) or not run_args["command"]:
            raise UsageError(f"{folder / 'training_args.json'}: no 'command'; retrain with this version of s4d-hf")
        read_json(folder / "all_results.json")
        with usage_errors(ValueError):
            check_extras(run_args, args.extra)
        if args.methods is not None:
            methods = read_json(Path(args.methods), "--methods", required=("rows",))
            if not isinstance(methods["rows"], list):
                raise UsageError(f"--methods {args.methods}: 'rows' must be a list (written by benchmarks/methods.py)")
    with usage_errors(ValueError, KeyError), plain_output_when_logged():
        if args.baseline_only:
            print(json.dumps(baseline(folder), sort_keys=True))
            return 0
        info = release(folder, extras=args.extra, dataset_id=args.dataset_id, methods=args.methods)
    print(json.dumps({"metrics": info["metrics"], "baseline": info["baseline"]["value"]}, sort_keys=True))
    return 0


def _run_own(folder: Path, args: argparse.Namespace) -> int:
    """A folder without training_args.json: --dataset/--task and/or --info."""
    if args.dataset is None and args.info is None:
        raise UsageError(f"FOLDER {folder}: no training_args.json (not an s4d-hf train run): pass --dataset SPEC "
                         "--task TASK to measure it, or --info INFO.json with the card's facts")
    if (args.dataset is None) != (args.task is None):
        raise UsageError("--dataset and --task go together: the dataset to measure on and the task to read it as")
    if args.dataset is None and hf_dataset_options(args):
        raise UsageError("the dataset column/split flags need --dataset")
    for flag, given in (("--extra", args.extra), ("--methods", args.methods)):
        if given:
            raise UsageError(f"{flag}: only for folders written by s4d-hf train")
    info = read_json(Path(args.info), "--info") if args.info is not None else None
    if args.baseline_only and args.dataset is None:
        raise UsageError("--baseline-only needs --dataset and --task for a folder without training_args.json")
    check_model_folder(folder, "FOLDER")
    if args.dataset is not None and not args.data_dir:
        check_data_file(args.dataset, "--dataset")
    dataset_args = hf_dataset_options(args)
    with usage_errors(ValueError, KeyError, TypeError), plain_output_when_logged():
        if args.baseline_only:
            print(json.dumps(baseline_own(args.dataset, args.task, dataset_args), sort_keys=True))
            return 0
        info = release_own_training(folder, task=args.task, dataset=args.dataset, dataset_args=dataset_args,
                                    info=info, dataset_id=args.dataset_id, command=args.training_command)
    base = info["baseline"]["value"] if info.get("baseline") else None
    print(json.dumps({"metrics": info["metrics"], "baseline": base}, sort_keys=True))
    return 0
