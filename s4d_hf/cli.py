"""The ``s4d-hf`` info command (versions and registered classes); ``python -m s4d_hf.cli`` runs the whole CLI.

The command-line entry point itself is the top-level module ``s4d_hf_cli`` (see why there).
"""

import argparse
import sys

from s4d_hf_cli import COMMANDS, build_parser, main

__all__ = ["COMMANDS", "build_parser", "main", "add_arguments", "run"]


def add_arguments(parser: argparse.ArgumentParser) -> None:
    pass


def run(args: argparse.Namespace) -> int:
    import torch
    import transformers

    import s4d_hf

    print(f"s4d-hf {s4d_hf.__version__}, transformers {transformers.__version__}, torch {torch.__version__}")
    print("registered: " + ", ".join(s4d_hf.__all__))
    return 0


if __name__ == "__main__":
    sys.exit(main())
