"""The exit-code convention of every ``s4d-hf`` command, and the input checks several commands share.

    0  success
    1  a failure while running (verification failed, an upload failed, a bug)
    2  a usage error: a bad flag value, a missing, unreadable or malformed input file, a refused folder
    130  interrupted (``train``: a checkpoint was saved; rerun with ``--resume``)

A command's ``run(args)`` returns 0 (or 130) or raises. :func:`s4d_hf_cli.main` turns the exception into ONE line
on stderr, ``s4d-hf CMD: error: ...``, and its ``exit_code`` (:class:`UsageError` 2, :class:`CommandFailed` 1, any
other exception 1, as "unexpected"); ``s4d-hf --debug CMD ...`` shows the traceback instead. The checks below run
before a command creates anything, so a refused command leaves the file system as it found it.
"""

from __future__ import annotations

import contextlib
import json
import zipfile
from pathlib import Path

from s4d_hf.modeling.configuration_s4d import S4DConfig


class UsageError(ValueError):
    """The user's input is wrong (exit code 2); the message names the flag or file and what was expected."""

    exit_code = 2


class CommandFailed(RuntimeError):
    """The input was fine but the command's work failed (exit code 1)."""

    exit_code = 1


def one_line(error: BaseException | str) -> str:
    return " ".join(str(error).split())


@contextlib.contextmanager
def usage_errors(*types: type[BaseException], prefix: str = ""):
    """Re-raise the library's ``types`` (default: ValueError, TypeError, KeyError, OSError) as a UsageError, the
    message prefixed with ``prefix`` (e.g. the flag or file the library could not name)."""
    try:
        yield
    except UsageError:
        raise
    except (types or (ValueError, TypeError, KeyError, OSError)) as e:
        text = one_line(e.args[0] if isinstance(e, KeyError) and e.args else e) or type(e).__name__
        raise UsageError(f"{prefix}{text}") from e


def read_json(path: Path, flag: str | None = None, required: tuple[str, ...] = ()) -> dict:
    """A JSON object from ``path`` with the ``required`` keys; otherwise a UsageError naming the file (after the
    ``flag`` that named it, if any)."""
    name = f"{flag} {path}" if flag else str(path)
    if not path.is_file():
        raise UsageError(f"{name}: no such file")
    try:
        value = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError) as e:
        raise UsageError(f"{name}: cannot be read as UTF-8 text ({one_line(e)})") from e
    except ValueError as e:
        raise UsageError(f"{name}: not valid JSON ({one_line(e)})") from e
    if not isinstance(value, dict):
        raise UsageError(f"{name}: expected a JSON object, got {type(value).__name__}")
    missing = [key for key in required if key not in value]
    if missing:
        raise UsageError(f"{name}: missing key(s) {missing}")
    return value


def check_folder(path: str | Path, flag: str) -> Path:
    folder = Path(path)
    if not folder.is_dir():
        raise UsageError(f"{flag} {folder}: {'not a folder' if folder.exists() else 'no such folder'}")
    return folder


def check_model_folder(path: str | Path, flag: str = "FOLDER", weights: bool = True) -> Path:
    """A saved S4D folder: config.json loads as an S4DConfig and (``weights``) model.safetensors is a complete
    safetensors file. Raises UsageError naming the file and the problem."""
    from safetensors import safe_open
    from transformers import AutoConfig

    folder = check_folder(path, flag)
    read_json(folder / "config.json")
    try:
        config = AutoConfig.from_pretrained(folder)
    except Exception as e:  # noqa: BLE001 - a strict-dataclass field error, an unknown model_type, ...
        raise UsageError(f"{flag} {folder / 'config.json'}: does not load as a config ({type(e).__name__}: "
                         f"{one_line(e)})") from e
    if not isinstance(config, S4DConfig):
        raise UsageError(f"{flag} {folder}: not an S4D model (config.json has model_type {config.model_type!r}, "
                         "expected 's4d')")
    if weights:
        path = folder / "model.safetensors"
        if not path.is_file():
            raise UsageError(f"{flag} {folder}: model.safetensors missing")
        try:
            with safe_open(path, framework="pt") as f:
                f.keys()
        except Exception as e:  # noqa: BLE001 - safetensors raises its own error type for a truncated header/buffer
            raise UsageError(f"{flag} {path}: not a complete safetensors file ({one_line(e)})") from e
    return folder


def check_data_file(spec: str, flag: str = "--dataset") -> None:
    """A user data file named by ``flag`` is readable in its format (.npz: every array loads without pickle; .csv
    and .txt: UTF-8 text). Built-in dataset names and folders pass (their loaders check them)."""
    path = Path(spec)
    suffix = path.suffix.lower()
    if suffix not in (".npz", ".csv", ".txt") or any(c in str(spec) for c in "*?["):  # a glob: datasets reads it
        return
    if not path.exists():
        raise UsageError(f"{flag} {path}: no such file")
    if not path.is_file():
        raise UsageError(f"{flag} {path}: not a file")
    try:
        if suffix == ".npz":
            import numpy as np

            with np.load(path, allow_pickle=False) as arrays:
                for name in arrays.files:
                    arrays[name]
        else:
            path.read_text(encoding="utf-8")
    except (OSError, ValueError, EOFError, zipfile.BadZipFile, KeyError) as e:
        kind = {".npz": "a readable .npz archive (numpy arrays, no pickles)"}.get(suffix, "UTF-8 text")
        raise UsageError(f"{flag} {path}: expected {kind} ({type(e).__name__}: {one_line(e)})") from e
