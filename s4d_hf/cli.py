"""The ``s4d-hf`` command: one entry point, one sub-command per job.

Each sub-command lives in its own module and is imported only when called, so ``s4d-hf --help`` stays fast.
"""

import argparse
import importlib
import sys

# sub-command -> (module with ``add_arguments(parser)`` and ``run(args) -> int``, one-line help)
COMMANDS = {
    "info": ("s4d_hf.cli", "show the installed versions and the registered S4D classes"),
    "train": ("s4d_hf.train", "fine-tune S4D on audio, image, time-series or text data (Trainer or Accelerate)"),
    "push": ("s4d_hf.hub.push", "check a checkpoint folder and upload it to the Hugging Face Hub"),
    "evaluate": ("s4d_hf.hub.evaluate", "recompute a checkpoint folder's test metrics (JSON on the last line)"),
    "release": ("s4d_hf.hub.release", "measure a trained folder (test metrics, baseline, plots) and write its card"),
    "convert": ("s4d_hf.conversion.cli", "convert a state-spaces/s4 S4D checkpoint into a verified Hugging Face folder"),
}


def add_arguments(parser: argparse.ArgumentParser) -> None:
    pass


def run(args: argparse.Namespace) -> int:
    import torch
    import transformers

    import s4d_hf

    print(f"s4d-hf {s4d_hf.__version__}, transformers {transformers.__version__}, torch {torch.__version__}")
    print("registered: " + ", ".join(s4d_hf.__all__))
    return 0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="s4d-hf", description="S4D state space models for Hugging Face.")
    sub = parser.add_subparsers(dest="command", required=True)
    for name, (module_name, help_text) in COMMANDS.items():
        p = sub.add_parser(name, help=help_text, description=help_text)
        p.set_defaults(_module=module_name)
        importlib.import_module(module_name).add_arguments(p)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    return importlib.import_module(args._module).run(args)


if __name__ == "__main__":
    sys.exit(main())
