"""Reading state-spaces/s4 checkpoints without executing anything they contain.

Every file is read with ``torch.load(weights_only=True)``: tensors, numbers, strings and plain containers only.
PyTorch Lightning ``.ckpt`` files also pickle the run's Hydra config as an omegaconf ``DictConfig``; for those, and
only those, a short explicit allow-list of the omegaconf/builtin classes such a config pickles is added. Any other
pickled object makes the load fail *before* it is created, and the file is refused. General unpickling
(``weights_only=False``, which can run arbitrary code) happens only when the caller passes ``trust_pickle=True``.
"""

import collections
import hashlib
import pathlib
import pickle
import re
import sys
import typing
import warnings
import zipfile
from dataclasses import dataclass, field
from typing import Any

import torch


class ConversionError(ValueError):
    """A checkpoint that cannot be converted faithfully. The message is one line, meant for the user."""


# The classes a Lightning checkpoint of the training framework pickles besides tensors (checked on the reference
# fixtures f3a/f3c, PL 2.6, omegaconf 2.3): the DictConfig of hyper_parameters and the containers inside it.
LIGHTNING_GLOBALS = (
    "omegaconf.dictconfig.DictConfig",
    "omegaconf.listconfig.ListConfig",
    "omegaconf.base.ContainerMetadata",
    "omegaconf.base.Metadata",
    "omegaconf.nodes.AnyNode",
    "typing.Any",
    "collections.defaultdict",
    "builtins.dict",
    "builtins.list",
    "builtins.int",
)


def lightning_safe_globals() -> list:
    """The objects of :data:`LIGHTNING_GLOBALS`, for ``torch.serialization.safe_globals``. Needs omegaconf."""
    try:
        from omegaconf import DictConfig, ListConfig
        from omegaconf.base import ContainerMetadata, Metadata
        from omegaconf.nodes import AnyNode
    except ImportError as e:
        raise ConversionError(
            "reading a Lightning checkpoint's hyper_parameters needs omegaconf: pip install 's4d-hf[convert]'"
        ) from e
    return [DictConfig, ListConfig, ContainerMetadata, Metadata, AnyNode, typing.Any, collections.defaultdict,
            dict, list, int]


@dataclass
class Checkpoint:
    """What was read from SRC: the tensors, the training config if the file has one, and provenance."""

    path: pathlib.Path
    sha256: str
    container: str  # "lightning" (a PL .ckpt), "example" (example.py's {'model','acc','epoch'}), "state_dict"
    state_dict: dict[str, torch.Tensor]
    hparams: "Hparams | None" = None
    metadata: dict[str, Any] = field(default_factory=dict)  # acc/epoch, global_step, pytorch-lightning_version


def sha256_of(path: pathlib.Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def _torch_load(path: pathlib.Path, trust_pickle: bool) -> Any:
    """torch.load with the safety policy of this module; every failure becomes a one-line ConversionError."""
    if trust_pickle:
        print(f"warning: --trust-pickle: unpickling {path.name} with weights_only=False can execute arbitrary code; "
              "use it only for files you trust", file=sys.stderr)
        try:
            return torch.load(path, map_location="cpu", weights_only=False)
        except Exception as e:  # noqa: BLE001 - any failure of a trusted load is still "not a checkpoint"
            raise ConversionError(f"{path.name} could not be unpickled: {type(e).__name__}: {_first_line(e)}") from e
    try:
        with warnings.catch_warnings():  # e.g. "Detected pickle protocol 4": noise, the outcome is what matters
            warnings.simplefilter("ignore")
            return torch.load(path, map_location="cpu", weights_only=True)
    except Exception as first:  # noqa: BLE001
        blocked = _blocked_global(first)
        if blocked is None or blocked not in LIGHTNING_GLOBALS:
            raise _load_error(path, first) from first
    # A Lightning checkpoint: its hyper_parameters are an omegaconf DictConfig. Allow exactly those classes.
    try:
        with torch.serialization.safe_globals(lightning_safe_globals()), warnings.catch_warnings():
            warnings.simplefilter("ignore")
            return torch.load(path, map_location="cpu", weights_only=True)
    except ConversionError:
        raise
    except Exception as second:  # noqa: BLE001
        raise _load_error(path, second) from second


def _first_line(e: BaseException) -> str:
    text = str(e).strip()
    return text.splitlines()[0] if text else type(e).__name__


def _blocked_global(e: BaseException) -> str | None:
    """The global that torch's weights-only unpickler refused, e.g. 'posix.system' (None for other failures)."""
    match = re.search(r"GLOBAL ([\w.]+)", str(e))
    if match is None:
        return None
    name = match.group(1)
    return "builtins." + name if "." not in name else name


def _load_error(path: pathlib.Path, e: BaseException) -> ConversionError:
    blocked = _blocked_global(e)
    if blocked is not None:
        return ConversionError(
            f"{path.name} pickles `{blocked}`, which is not on the allow-list of a state-spaces/s4 checkpoint "
            "(tensors; for Lightning files the omegaconf config classes); refused without executing it. "
            "Only if you trust the file: --trust-pickle"
        )
    if isinstance(e, pickle.UnpicklingError):
        detail = next((l.strip() for l in str(e).splitlines()[1:] if l.strip() and "WeightsUnpickler" not in l
                       and "Please file" not in l), _first_line(e))
        return ConversionError(
            f"{path.name} cannot be read as tensors only ({detail}); refused without unpickling it. "
            "Only if you trust the file: --trust-pickle"
        )
    return ConversionError(
        f"{path.name} is not a readable PyTorch checkpoint (truncated, corrupt or another kind of file): "
        f"{type(e).__name__}: {_first_line(e)}"
    )


def _is_state_dict(obj: Any) -> bool:
    return isinstance(obj, dict) and len(obj) > 0 and all(
        isinstance(k, str) and isinstance(v, torch.Tensor) for k, v in obj.items()
    )


def load_checkpoint(src: str | pathlib.Path, trust_pickle: bool = False) -> Checkpoint:
    """Read SRC and classify its container.

    Accepted: a Lightning ``.ckpt`` (``state_dict`` + ``hyper_parameters``), example.py's
    ``{'model': state_dict, 'acc', 'epoch'}`` and a bare state dict (name -> tensor), e.g. from
    ``checkpoints/convert_pl_to_pt.py``. Raises :class:`ConversionError` for anything else.
    """
    path = pathlib.Path(src)
    if not path.is_file():
        raise ConversionError(f"SRC {str(src)!r} is not a file")
    digest = sha256_of(path)
    with open(path, "rb") as f:
        head = f.read(2)
    # torch.save writes a zip archive (or, before torch 1.6, a pickle starting with the PROTO opcode 0x80).
    if not (zipfile.is_zipfile(path) or head[:1] == b"\x80"):
        raise ConversionError(f"{path.name} is not a readable PyTorch checkpoint (truncated, corrupt or another kind "
                              "of file): neither a torch.save zip archive nor a pickle")
    obj = _torch_load(path, trust_pickle)

    if isinstance(obj, dict) and isinstance(obj.get("state_dict"), dict) and (
        "hyper_parameters" in obj or "pytorch-lightning_version" in obj
    ):
        state_dict = obj["state_dict"]
        if not _is_state_dict(state_dict):
            raise ConversionError(f"{path.name}: its 'state_dict' entry does not map names to tensors")
        meta = {k: obj[k] for k in ("epoch", "global_step", "pytorch-lightning_version") if k in obj}
        hp = obj.get("hyper_parameters")
        hparams = Hparams(hp, f"{path.name} hyper_parameters") if hp is not None else None
        return Checkpoint(path, digest, "lightning", dict(state_dict), hparams, meta)
    if isinstance(obj, dict) and "model" in obj and _is_state_dict(obj["model"]):
        meta = {k: obj[k] for k in ("acc", "epoch") if isinstance(obj.get(k), (int, float))}
        return Checkpoint(path, digest, "example", dict(obj["model"]), None, meta)
    if _is_state_dict(obj):
        return Checkpoint(path, digest, "state_dict", dict(obj))
    if isinstance(obj, dict):
        shown = ", ".join(repr(k) for k in list(obj)[:6])
        raise ConversionError(
            f"{path.name} is not a model checkpoint: a dict with keys [{shown}], expected a state dict "
            "(name -> tensor), example.py's {'model', 'acc', 'epoch'} or a Lightning .ckpt"
        )
    raise ConversionError(
        f"{path.name} is not a model checkpoint: it holds a {type(obj).__name__}, expected a state dict "
        "(name -> tensor), example.py's {'model', 'acc', 'epoch'} or a Lightning .ckpt"
    )


# ----------------------------------------------------------------------------------------------------------------
# The training framework's config (hyper_parameters of a .ckpt, or the run's .hydra/config.yaml / hparams.yaml)
# ----------------------------------------------------------------------------------------------------------------

_MISSING = object()


class Hparams:
    """Read-only access to a Hydra/omegaconf config by dotted path, resolving interpolations lazily.

    Lazily, because the unprocessed ``.hydra/config.yaml`` can hold ``${eval:...}`` interpolations (a resolver the
    training code registers, and that we will not) in keys that the conversion never reads.
    """

    def __init__(self, config: Any, origin: str):
        try:
            from omegaconf import DictConfig, OmegaConf
        except ImportError as e:
            raise ConversionError(f"reading {origin} needs omegaconf: pip install 's4d-hf[convert]'") from e

        self.origin = origin
        if isinstance(config, DictConfig):
            self._cfg = config
        elif isinstance(config, dict):
            self._cfg = OmegaConf.create(config)
        else:
            raise ConversionError(f"{origin} is a {type(config).__name__}, expected a mapping (a Hydra config)")

    @classmethod
    def from_yaml(cls, path: str | pathlib.Path) -> "Hparams":
        path = pathlib.Path(path)
        if not path.is_file():
            raise ConversionError(f"--config {str(path)!r} is not a file")
        try:
            from omegaconf import OmegaConf
        except ImportError as e:
            raise ConversionError("reading --config needs omegaconf: pip install 's4d-hf[convert]'") from e
        try:
            cfg = OmegaConf.load(path)
        except Exception as e:  # noqa: BLE001 - yaml and omegaconf raise many types
            raise ConversionError(f"--config {path.name} is not a readable YAML config: {_first_line(e)}") from e
        return cls(cfg, f"--config {path.name}")

    def get(self, key: str, default: Any = None) -> Any:
        """The value at ``key`` (e.g. 'model.layer.dt_transform') as plain Python, or ``default`` when absent."""
        from omegaconf import Container, OmegaConf

        try:
            value = OmegaConf.select(self._cfg, key, default=_MISSING, throw_on_resolution_failure=True)
            if isinstance(value, Container):
                value = OmegaConf.to_container(value, resolve=True)
        except Exception as e:  # noqa: BLE001
            raise ConversionError(
                f"{self.origin}: cannot resolve `{key}` ({_first_line(e)}); pass the run's resolved hparams.yaml "
                "as --config, or the matching flag"
            ) from e
        return default if value is _MISSING else value

    def has(self, key: str) -> bool:
        return self.get(key, _MISSING) is not _MISSING

    def list_length(self, key: str) -> int | None:
        """len() of the list at ``key`` without resolving its items; None when it is not a list."""
        from omegaconf import ListConfig, OmegaConf

        node = OmegaConf.select(self._cfg, key, default=None, throw_on_resolution_failure=False)
        return len(node) if isinstance(node, ListConfig) else None
