"""A real virtualenv WITHOUT s4d-hf, built offline: what a Hub user who loads an S4D checkpoint with
``trust_remote_code=True`` has installed.

It holds exactly the distributions of :data:`BARE_PACKAGES` and what they require (their metadata's
``Requires-Dist`` without extras, resolved recursively), taken from the environment running the tests: every file
each distribution's ``RECORD`` lists is symlinked into the new venv's site-packages, so nothing is downloaded and the
build takes seconds. s4d-hf, datasets, evaluate, accelerate, pandas, sktime, ... are absent, so an import of any of
them in the bare venv fails as on a user's machine.

The venv is cached under ``$S4D_HF_CACHE`` (default ``~/.cache/s4d_hf``) keyed by the distributions' versions, and
rebuilt when they change. :func:`bare_python` returns its interpreter, or raises :class:`BareEnvUnavailable` with
the reason (a missing distribution here) so that tests can skip with it.
"""

from __future__ import annotations

import hashlib
import importlib.metadata as md
import os
import re
import shutil
import subprocess
import sys
import sysconfig
from pathlib import Path

BARE_PACKAGES = ("torch", "transformers", "safetensors", "huggingface-hub", "soundfile", "pillow", "numpy", "scipy")


class BareEnvUnavailable(RuntimeError):
    pass


def _canonical(name: str) -> str:
    return re.sub(r"[-_.]+", "-", name).lower()


def _closure(roots) -> dict[str, md.Distribution]:
    """The named distributions and, recursively, their unconditional requirements (markers evaluated here)."""
    from packaging.requirements import Requirement

    found: dict[str, md.Distribution] = {}
    todo = list(roots)
    while todo:
        name = _canonical(todo.pop())
        if name in found:
            continue
        try:
            dist = md.distribution(name)
        except md.PackageNotFoundError:
            raise BareEnvUnavailable(f"distribution {name!r} is not installed in {sys.prefix}") from None
        found[name] = dist
        for text in dist.requires or []:
            req = Requirement(text)
            if req.marker is not None and not req.marker.evaluate({"extra": ""}):
                continue
            todo.append(req.name)
    return found


def bare_python() -> Path:
    """The interpreter of the cached bare venv, built on first use."""
    dists = _closure(BARE_PACKAGES)
    if "s4d-hf" in dists:
        raise BareEnvUnavailable("a bare-environment package requires s4d-hf")
    key = hashlib.sha256(
        ("\n".join(sorted(f"{n}=={d.version}" for n, d in dists.items())) + sys.version).encode()
    ).hexdigest()[:16]
    root = Path(os.environ.get("S4D_HF_CACHE", Path.home() / ".cache" / "s4d_hf")) / f"bare-venv-{key}"
    python = root / "bin" / "python"
    if (root / ".complete").exists():
        return python
    tmp = root.with_name(root.name + f".tmp-{os.getpid()}")
    shutil.rmtree(tmp, ignore_errors=True)
    base = getattr(sys, "_base_executable", sys.executable)
    subprocess.run([base, "-m", "venv", "--without-pip", str(tmp)], check=True, capture_output=True)
    site = Path(subprocess.run([str(tmp / "bin" / "python"), "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"],
                               check=True, capture_output=True, text=True).stdout.strip())
    here = Path(sysconfig.get_paths()["purelib"])
    for dist in dists.values():
        base_dir = Path(dist.locate_file(""))
        for entry in dist.files or []:
            source = (base_dir / entry).resolve()
            if not source.is_file() or not str(source).startswith(str(here)):
                continue  # scripts in bin/, files outside site-packages
            target = site / source.relative_to(here)
            target.parent.mkdir(parents=True, exist_ok=True)
            if not target.exists():
                target.symlink_to(source)
    (tmp / ".complete").write_text("\n".join(sorted(dists)) + "\n")
    if root.exists():
        shutil.rmtree(root)
    tmp.rename(root)
    # venv scripts hard-code their folder: recreate the interpreter links under the final name
    subprocess.run([base, "-m", "venv", "--without-pip", str(root)], check=True, capture_output=True)
    return python


def run_bare(script: str, *args: str, cwd: Path, timeout: int = 600, env: dict | None = None):
    """Run a Python script in the bare venv, offline, with a private modules cache; returns CompletedProcess."""
    python = bare_python()
    full_env = {k: v for k, v in os.environ.items() if not k.startswith(("PYTHON", "VIRTUAL_ENV"))}
    full_env.update(HF_HUB_OFFLINE="1", TRANSFORMERS_OFFLINE="1", HF_MODULES_CACHE=str(cwd / "hf_modules"))
    full_env.update(env or {})
    path = cwd / "bare_script.py"
    path.write_text(script)
    return subprocess.run([str(python), str(path), *args], cwd=cwd, env=full_env, capture_output=True, text=True,
                          timeout=timeout)
