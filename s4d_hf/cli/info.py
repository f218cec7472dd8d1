"""``s4d-hf info``: the installed versions and the registered S4D classes."""

import argparse

import torch
import transformers

import s4d_hf


def add_arguments(parser: argparse.ArgumentParser) -> None:
    pass


def run(args: argparse.Namespace) -> int:
    print(f"s4d-hf {s4d_hf.__version__}, transformers {transformers.__version__}, torch {torch.__version__}")
    print("registered: " + ", ".join(s4d_hf.__all__))
    return 0
