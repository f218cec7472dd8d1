"""``s4d-hf release FOLDER``: measure a finished ``s4d-hf train`` folder and write its card
(:func:`s4d_hf.hub.release.release`; ``--baseline-only``: :func:`s4d_hf.hub.release.baseline`).

Checked before anything is measured (exit code 2, one line): the folder (as for ``s4d-hf evaluate``), its
training_args.json ``command`` and all_results.json, every ``--extra`` and the ``--methods`` file.
"""

import argparse
import json
from pathlib import Path

from s4d_hf.cli.common import UsageError, read_json, usage_errors
from s4d_hf.cli.evaluate import check_run_folder
from s4d_hf.cli.options import COUNT
from s4d_hf.hub.evaluation import plain_output_when_logged, read_run_args
from s4d_hf.hub.release import baseline, release


def _extra(text: str) -> str:
    """``real`` or ``rate:HZ`` with a positive integer HZ (an argparse ``type``)."""
    kind, _, hz = text.partition(":")
    if text == "real" or kind == "rate" and _is_count(hz):
        return text
    raise argparse.ArgumentTypeError(f"expected 'real' or 'rate:HZ' (a positive integer HZ); got {text!r}")


def _is_count(text: str) -> bool:
    try:
        COUNT(text)
    except argparse.ArgumentTypeError:
        return False
    return True


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("folder", help="a folder written by `s4d-hf train`")
    parser.add_argument("--extra", action="append", default=[], metavar="KIND[:ARG]", type=_extra,
                        help="audio: 'real' (recorded digits) or 'rate:HZ' (clips at another sampling rate)")
    parser.add_argument("--methods", metavar="JSON", help="benchmarks/methods_results.json: copy this dataset's "
                        "PTD/SPT comparison rows into the card")
    parser.add_argument("--baseline-only", action="store_true", help="print the same-split baseline and stop")
    parser.add_argument("--dataset-id", help="the dataset id for the card metadata (default: the dataset name)")


def run(args: argparse.Namespace) -> int:
    folder = check_run_folder(args.folder)
    if not args.baseline_only:
        with usage_errors():
            run_args = read_run_args(folder)
        if not isinstance(run_args.get("command"), str) or not run_args["command"]:
            raise UsageError(f"{folder / 'training_args.json'}: no 'command'; retrain with this version of s4d-hf")
        read_json(folder / "all_results.json")
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
