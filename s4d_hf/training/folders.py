"""The folders of a training run, and the rule that protects everything else on disk.

Folders: the final, Hub-ready model goes to ``output_dir`` (written at the very end, through a temporary folder
and a rename: :func:`staged_output_folder`); checkpoints go to ``work_dir`` (``<output_dir>-checkpoints`` by
default), which ``--resume`` reads and a finished run deletes (unless ``--keep-checkpoints``).

The CLI deletes or replaces only what it can prove it created: a folder is the run's own when it carries the marker
``.s4d-hf-run.json`` that a run writes into every work and output folder it creates (or when it is empty). A
foreign folder is refused before anything is created, ``--overwrite`` included; a run that fails puts the work folder
back as it found it, unless it saved checkpoints of its own (``--resume`` continues them).
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import sys
from pathlib import Path
from typing import Iterator

from s4d_hf.staging import staged_folder


def checkpoint_dirs(work_dir: Path) -> list[Path]:
    """``checkpoint-<step>`` folders in ``work_dir``, oldest first."""
    if not work_dir.is_dir():
        return []
    found = [p for p in work_dir.iterdir() if p.is_dir() and p.name.startswith("checkpoint-")
             and p.name.split("-", 1)[1].isdigit()]
    return sorted(found, key=lambda p: int(p.name.split("-", 1)[1]))


RUN_MARKER = ".s4d-hf-run.json"  # in every folder a run creates: the proof that it may later be replaced/removed


def write_marker(folder: Path, kind: str) -> None:
    """Mark ``folder`` as created by ``s4d-hf train`` (``kind``: "checkpoints" or "output")."""
    (folder / RUN_MARKER).write_text(json.dumps({"created_by": "s4d-hf train", "kind": kind}) + "\n")


def folder_state(folder: Path, kind: str) -> str:
    """"absent", "empty", "own" (a folder carrying this kind's run marker) or "foreign" (anything else: a file, a
    link, a folder with other content). Only "empty" and "own" folders may be replaced or removed."""
    if not os.path.lexists(folder):
        return "absent"
    if folder.is_symlink() or not folder.is_dir():
        return "foreign"
    try:
        marker = json.loads((folder / RUN_MARKER).read_text())
    except FileNotFoundError:
        try:
            return "foreign" if any(folder.iterdir()) else "empty"
        except OSError:
            return "foreign"
    except (OSError, ValueError):
        return "foreign"
    own = isinstance(marker, dict) and marker.get("created_by") == "s4d-hf train" and marker.get("kind") == kind
    return "own" if own else "foreign"


def resolve_folders(args, is_main: bool) -> tuple[Path, Path, Path | None]:
    """Decide output/work folders and the checkpoint to resume from; refuse to clobber earlier work by accident and
    to touch any folder that a run did not create (see the module docstring)."""
    output_dir = Path(args.output_dir).resolve()
    work_dir = Path(args.checkpoint_dir).resolve() if args.checkpoint_dir else \
        output_dir.with_name(output_dir.name + "-checkpoints")
    work_name = f"--checkpoint-dir {work_dir}" if args.checkpoint_dir else \
        f"the checkpoint folder {work_dir} (the default for this --output-dir)"
    if work_dir == output_dir or work_dir in output_dir.parents or output_dir in work_dir.parents:
        raise ValueError(f"--checkpoint-dir {work_dir} and --output-dir {output_dir} must be separate folders, neither "
                         "inside the other")
    state = folder_state(output_dir, "output")
    if state == "foreign":
        raise ValueError(f"--output-dir {output_dir} already exists and was not written by s4d-hf train, so it is never "
                         "replaced (not even with --overwrite); choose a new --output-dir")
    if state == "own" and not args.overwrite:
        raise ValueError(f"--output-dir {output_dir} already exists (a finished run); pass --overwrite to replace it")
    if folder_state(work_dir, "checkpoints") == "foreign":
        raise ValueError(f"{work_name} already exists and holds files that s4d-hf train did not write, so it "
                         "is never used or removed (not even with --overwrite or --resume); pass a new or empty "
                         "--checkpoint-dir")
    existing = checkpoint_dirs(work_dir)
    if existing and not args.resume and not args.overwrite:
        raise ValueError(f"found checkpoints of an earlier run in {work_dir} (last: {existing[-1].name}); pass "
                         "--resume to continue it or --overwrite to start over")
    resume_from = existing[-1] if (args.resume and existing) else None
    if args.resume and resume_from is None and is_main:
        print(f"--resume: no checkpoint in {work_dir}, starting from step 0", file=sys.stderr)
    return output_dir, work_dir, resume_from

@contextlib.contextmanager
def staged_output_folder(out: Path) -> Iterator[Path]:
    """Yield an empty temporary sibling of ``out`` to write the output folder into (through
    :func:`s4d_hf.staging.staged_folder`): ``out`` is replaced only when the block finishes, and stays as it was on
    any error. The folder carries the run marker (so that a later ``--overwrite`` may replace it); an existing
    ``out`` is replaced only if it is empty or carries the marker."""

    def still_ours(out: Path) -> None:
        if folder_state(out, "output") == "foreign":  # appeared or changed while the run trained
            raise ValueError(f"--output-dir {out} was created by someone else during the run; it is not replaced")

    with staged_folder(out, before_replace=still_ours) as tmp:
        yield tmp
        write_marker(tmp, "output")


class WorkFolder:
    """The work (checkpoint) folder of one run, made ready by :func:`clear_for_start` and put back by
    :meth:`failed` when the run fails: a folder the run created is removed, an empty one emptied again, and one set
    aside by ``--overwrite`` restored, unless the run saved checkpoints of its own (kept for ``--resume``)."""

    def __init__(self, job):
        self.path = job.work_dir
        self.created: list[Path] = []  # folders this run created, innermost first (the work folder and new parents)
        self.was_empty = False
        self.aside: Path | None = None  # an earlier run's folder, set aside by --overwrite until this run succeeds
        self.before = {p.name for p in checkpoint_dirs(self.path)}
        state = folder_state(self.path, "checkpoints")
        if state == "own" and job.args.overwrite and job.resume_from is None:
            self.aside = self.path.with_name(f".{self.path.name}.old-{os.getpid()}")
            self.path.rename(self.aside)
            self.before, state = set(), "absent"
        if state == "absent":
            missing = [self.path, *(p for p in self.path.parents if not p.exists())]
            self.path.mkdir(parents=True)
            self.created = missing
        self.was_empty = state == "empty"
        if state in ("absent", "empty"):
            write_marker(self.path, "checkpoints")

    def trained(self) -> bool:
        """Whether this run saved a checkpoint of its own."""
        return bool({p.name for p in checkpoint_dirs(self.path)} - self.before)

    def succeeded(self) -> None:
        """The run finished (or was interrupted after saving a checkpoint): the set-aside folder goes."""
        if self.aside is not None:
            shutil.rmtree(self.aside, ignore_errors=True)
            self.aside = None

    def failed(self) -> None:
        if self.trained():  # checkpoints of this run: kept, --resume continues them
            print(f"s4d-hf train: the run failed after saving checkpoints; they are kept in {self.path} (rerun with "
                  "--resume to continue)", file=sys.stderr)
            self.succeeded()
            return
        if self.created or self.aside is not None:
            shutil.rmtree(self.path, ignore_errors=True)
            for parent in self.created[1:]:
                with contextlib.suppress(OSError):
                    parent.rmdir()
        elif self.was_empty:
            for child in list(self.path.iterdir()):
                shutil.rmtree(child) if child.is_dir() and not child.is_symlink() else child.unlink()
        if self.aside is not None:
            self.aside.rename(self.path)
            self.aside = None


def clear_for_start(job) -> WorkFolder:
    """Main process, before training: create (and mark) the work folder; with --overwrite and no resume, set the
    earlier run's checkpoints aside (removed once this run succeeds, restored if it fails)."""
    return WorkFolder(job)


def remove_work_folder(job) -> bool:
    """After a finished run without --keep-checkpoints: remove the work folder if it carries the run marker."""
    if folder_state(job.work_dir, "checkpoints") != "own":
        return False
    shutil.rmtree(job.work_dir, ignore_errors=True)
    return True
