"""``s4d-hf remote-code FOLDER...``: refresh each saved folder's code copies, auto_map and custom_pipelines
(:func:`s4d_hf.hub.remote_code.make_portable`).

Every folder is checked before any is changed (exit code 2, one line): it exists, its config.json is a JSON object
with model_type "s4d", and its processor file, if any, is valid JSON. A write that fails exits with code 1.
"""

import argparse
from pathlib import Path

from s4d_hf.cli.common import CommandFailed, UsageError, check_folder, one_line, read_json
from s4d_hf.hub.remote_code import folder_task, make_portable

PROCESSOR_FILES = ("preprocessor_config.json", "tokenizer_config.json")


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("folders", nargs="+", metavar="FOLDER", help="saved S4D folders (config.json + processor)")


def check_saved_folder(path: str) -> Path:
    folder = check_folder(path, "FOLDER")
    if not (folder / "config.json").is_file():
        raise UsageError(f"FOLDER {folder}: no config.json (not a saved model folder)")
    config = read_json(folder / "config.json")
    if config.get("model_type") != "s4d":
        raise UsageError(f"{folder / 'config.json'}: model_type is {config.get('model_type')!r}, expected 's4d'")
    for name in PROCESSOR_FILES:
        if (folder / name).exists():
            read_json(folder / name)
    return folder


def run(args: argparse.Namespace) -> int:
    folders = [check_saved_folder(folder) for folder in args.folders]
    for folder in folders:
        try:
            names = make_portable(folder)
        except OSError as e:
            raise CommandFailed(f"{folder}: {one_line(e)}") from e
        print(f"{folder}: task {folder_task(folder) or 'none'}; code {', '.join(names)}")
    return 0
