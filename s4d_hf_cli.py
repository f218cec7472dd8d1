"""The ``s4d-hf`` command: one entry point, one sub-command per job.

This module sits beside the ``s4d_hf`` package rather than inside it: importing anything in ``s4d_hf`` runs the
package's ``__init__``, which registers S4D with transformers and so imports torch (seconds). Here ``s4d-hf --help``
and a mistyped command answer at once; each sub-command's module in :mod:`s4d_hf.cli` (``add_arguments(parser)`` and
``run(args) -> int``) is imported only when that command is called or its own ``--help`` is asked for.

Exit codes (see :mod:`s4d_hf.cli.common`): 0 done, 1 a failure while running, 2 a usage error (a bad flag value, a
missing or malformed input file, a refused folder), 130 interrupted. Every error is ONE line on stderr,
``s4d-hf CMD: error: ...``; ``s4d-hf --debug CMD ...`` shows the traceback instead.
"""

import argparse
import importlib
import os
import sys

# sub-command -> (module with ``add_arguments(parser)`` and ``run(args) -> int``, one-line help)
COMMANDS = {
    "info": ("s4d_hf.cli.info", "show the installed versions and the registered S4D classes"),
    "train": ("s4d_hf.cli.train", "fine-tune S4D on audio, image, time-series or text data (Trainer or Accelerate)"),
    "push": ("s4d_hf.cli.push", "check a checkpoint folder and upload it to the Hugging Face Hub"),
    "evaluate": ("s4d_hf.cli.evaluate", "recompute a checkpoint folder's test metrics (JSON on the last line)"),
    "baseline": ("s4d_hf.cli.baseline", "train and test a same-size Transformer with an S4D run's data and budget"),
    "release": ("s4d_hf.cli.release", "measure a trained folder (test metrics, baseline, plots) and write its card"),
    "convert": ("s4d_hf.cli.convert", "convert a state-spaces/s4 S4D checkpoint into a verified Hugging Face folder"),
    "remote-code": ("s4d_hf.cli.remote_code", "refresh a saved folder's code copies, auto_map and custom_pipelines"),
}


class Parser(argparse.ArgumentParser):
    """An argument error is one line (``s4d-hf train: error: argument --batch-size: ...``) and exit code 2."""

    def error(self, message):
        hint = f" (see {self.prog} --help)" if "required" in message else ""
        self.exit(2, f"{self.prog}: error: {' '.join(message.split())}{hint}\n")


def build_parser(command: str | None = None) -> argparse.ArgumentParser:
    """The parser of every sub-command, or (``command`` given) one in which only that sub-command has its arguments:
    the others are listed with their help line, without importing their modules."""
    parser = Parser(prog="s4d-hf", description="S4D state space models for Hugging Face.")
    parser.add_argument("--debug", action="store_true", help="show the traceback of an error")
    sub = parser.add_subparsers(dest="command", required=True)
    for name, (module_name, help_text) in COMMANDS.items():
        p = sub.add_parser(name, help=help_text, description=help_text)
        p.set_defaults(_module=module_name)
        p.add_argument("--debug", action="store_true", default=argparse.SUPPRESS, help="show the traceback of an error")
        if command is None or name == command:
            importlib.import_module(module_name).add_arguments(p)
    return parser


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else list(argv)
    # The top-level parser has no options but -h and --debug, so its first positional argument is the sub-command;
    # anything else (none, -h, a typo) builds a parser with no sub-command module imported, which prints the usage.
    command = next((arg for arg in argv if not arg.startswith("-")), None)
    args = build_parser(command if command in COMMANDS else "").parse_args(argv)
    args._argv = argv[argv.index(command) + 1:]
    try:
        return importlib.import_module(args._module).run(args)
    except Exception as error:  # noqa: BLE001 - every error is one line unless --debug
        if args.debug or os.environ.get("S4D_HF_DEBUG"):
            raise
        text = " ".join(str(error).split()) or type(error).__name__
        code = getattr(error, "exit_code", None)
        if code is None:  # not a UsageError or CommandFailed: a bug, or an error nobody expected
            code, text = 1, f"unexpected {type(error).__name__}: {text} (run with --debug for the traceback)"
        print(f"s4d-hf {args.command}: error: {text}", file=sys.stderr)
        return code


if __name__ == "__main__":
    sys.exit(main())
