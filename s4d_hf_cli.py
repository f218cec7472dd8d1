"""The ``s4d-hf`` command: one entry point, one sub-command per job.

This module sits beside the ``s4d_hf`` package rather than inside it: importing anything in ``s4d_hf`` runs the
package's ``__init__``, which registers S4D with transformers and so imports torch (seconds). Here ``s4d-hf --help``
and a mistyped command answer at once; each sub-command's module (``add_arguments(parser)`` and
``run(args) -> int``) is imported only when that command is called or its own ``--help`` is asked for.
"""

import argparse
import importlib
import sys

# sub-command -> (module with ``add_arguments(parser)`` and ``run(args) -> int``, one-line help)
COMMANDS = {
    "info": ("s4d_hf.cli", "show the installed versions and the registered S4D classes"),
    "train": ("s4d_hf.train", "fine-tune S4D on audio, image, time-series or text data (Trainer or Accelerate)"),
    "push": ("s4d_hf.hub.push", "check a checkpoint folder and upload it to the Hugging Face Hub"),
    "evaluate": ("s4d_hf.hub.evaluation", "recompute a checkpoint folder's test metrics (JSON on the last line)"),
    "release": ("s4d_hf.hub.release", "measure a trained folder (test metrics, baseline, plots) and write its card"),
    "convert": ("s4d_hf.conversion.cli", "convert a state-spaces/s4 S4D checkpoint into a verified Hugging Face folder"),
    "remote-code": ("s4d_hf.hub.remote_code", "refresh a saved folder's code copies, auto_map and custom_pipelines"),
}


def build_parser(command: str | None = None) -> argparse.ArgumentParser:
    """The parser of every sub-command, or (``command`` given) one in which only that sub-command has its arguments:
    the others are listed with their help line, without importing their modules."""
    parser = argparse.ArgumentParser(prog="s4d-hf", description="S4D state space models for Hugging Face.")
    sub = parser.add_subparsers(dest="command", required=True)
    for name, (module_name, help_text) in COMMANDS.items():
        p = sub.add_parser(name, help=help_text, description=help_text)
        p.set_defaults(_module=module_name)
        if command is None or name == command:
            importlib.import_module(module_name).add_arguments(p)
    return parser


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else list(argv)
    # The top-level parser has no options but -h, so its first positional argument is the sub-command; anything
    # else (none, -h, a typo) builds a parser with no sub-command module imported, which prints the usage.
    command = next((arg for arg in argv if not arg.startswith("-")), None)
    args = build_parser(command if command in COMMANDS else "").parse_args(argv)
    return importlib.import_module(args._module).run(args)


if __name__ == "__main__":
    sys.exit(main())
