"""Write a folder or a file so that a reader never sees it half-written: write everything into a temporary sibling,
then rename it into place (a rename within one folder is atomic).

    staged_folder(out)            the folders ``s4d-hf train``, ``convert`` and ``release`` write
    staged_file(path)             one file (a dataset cache, a JSON file, a model card)
    write_atomically(path, text)  ``staged_file`` for a text file

An interrupted or failed write leaves the destination exactly as it was.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import tempfile
from pathlib import Path
from typing import Callable, Iterator


def usual_permissions(path: Path) -> None:
    """``mkdtemp``/``mkstemp`` create private (0700 / 0600) entries: give ``path`` (and, for a folder, the files
    directly in it) the permissions that ``mkdir`` / ``open`` would have given them under the current umask."""
    umask = os.umask(0)
    os.umask(umask)
    if path.is_dir():
        os.chmod(path, 0o777 & ~umask)
        for child in path.iterdir():
            if child.is_file() and not child.is_symlink():
                os.chmod(child, 0o666 & ~umask)
    else:
        os.chmod(path, 0o666 & ~umask)


def _missing_parents(folder: Path) -> list[Path]:
    """The folders that ``mkdir(parents=True)`` would create, outermost first."""
    missing = []
    while not folder.exists():
        missing.append(folder)
        folder = folder.parent
    return list(reversed(missing))


def _replace(tmp: Path, out: Path) -> None:
    """Rename ``tmp`` to ``out``; an existing ``out`` is moved aside first and put back if the rename fails."""
    if not (out.exists() or out.is_symlink()):
        os.rename(tmp, out)
        return
    old = Path(tempfile.mkdtemp(prefix=f".{out.name}.", suffix=".old", dir=out.parent))
    os.rename(out, old / "previous")
    try:
        os.rename(tmp, out)
    except BaseException:
        os.rename(old / "previous", out)
        shutil.rmtree(old, ignore_errors=True)
        raise
    shutil.rmtree(old, ignore_errors=True)


@contextlib.contextmanager
def staged_folder(out: str | os.PathLike, *, copy_of: str | os.PathLike | None = None,
                  before_replace: Callable[[Path], None] | None = None) -> Iterator[Path]:
    """Yield a temporary folder beside ``out`` to write the new ``out`` into; when the block finishes, it becomes
    ``out`` by a rename (an existing ``out`` is swapped out only then).

    copy_of: start from a copy of this folder (to change an existing folder all at once) instead of an empty one.
    before_replace: called with ``out`` after the block, just before the rename; it raises to refuse the replacement
    (e.g. ``out`` appeared, or changed owner, while the folder was written).

    On any error (in the block, in ``before_replace`` or in the rename) the temporary folder and any parent folders
    created for it are removed, and ``out`` is left as it was. The new folder gets the permissions ``mkdir`` gives.
    """
    out = Path(out)
    created = _missing_parents(out.parent)
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{out.name}.", suffix=".tmp", dir=out.parent))
    try:
        if copy_of is not None:
            tmp.rmdir()
            shutil.copytree(copy_of, tmp, symlinks=True)
        yield tmp
        usual_permissions(tmp)
        if before_replace is not None:
            before_replace(out)
        _replace(tmp, out)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        for folder in reversed(created):
            with contextlib.suppress(OSError):
                folder.rmdir()
        raise


@contextlib.contextmanager
def staged_file(path: str | os.PathLike) -> Iterator[Path]:
    """Yield a temporary path beside ``path`` to write the file to; when the block finishes it replaces ``path``
    (with the permissions ``open`` gives). On any error the temporary file is removed and ``path`` is unchanged."""
    path = Path(path)
    fd, name = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    os.close(fd)
    tmp = Path(name)
    try:
        yield tmp
        usual_permissions(tmp)
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise


def write_atomically(path: str | os.PathLike, text: str) -> Path:
    """Write ``text`` (UTF-8) to ``path`` through :func:`staged_file`; returns the path."""
    with staged_file(path) as tmp:
        tmp.write_text(text, encoding="utf-8")
    return Path(path)
