"""One training run, as both backends see it: the data, the model, the metrics and the run's folders, prepared and
checked before any training step; plus the graceful-stop switch and the result the backends hand back.

Folders: the final, Hub-ready model goes to ``output_dir`` (written at the very end, through a temporary folder
and a rename); checkpoints go to ``work_dir`` (``<output_dir>-checkpoints`` by default), which ``--resume`` reads
and a finished run deletes (unless ``--keep-checkpoints``).

The CLI deletes or replaces only what it can prove it created: a folder is the run's own when it carries the marker
``.s4d-hf-run.json`` that a run writes into every work and output folder it creates (or when it is empty). A
foreign folder is refused before anything is created, ``--overwrite`` included; a run that fails puts the work folder
back as it found it, unless it saved checkpoints of its own (``--resume`` continues them).
"""

from __future__ import annotations

import argparse
import contextlib
import dataclasses
import json
import os
import shutil
import signal
import sys
from pathlib import Path

import numpy as np

from .data import (
    CLASSIFICATION_TASKS,
    BYT5_VOCAB_SIZE,
    DatasetSplits,
    check_splits,
    data_seed,
    load_dataset_spec,
    normalize_splits,
)


# defaults of the model-size flags (when no --model is given)
MODEL_DEFAULTS = dict(d_model=64, n_layers=4, d_state=64, init="legs", disc="zoh", bidirectional=False,
                      prenorm=False, norm="layer", dropout=0.0, pooling="mean")


@dataclasses.dataclass
class TrainingJob:
    task: str
    args: argparse.Namespace
    splits: DatasetSplits  # normalised as the saved processor does it
    norm_stats: dict  # the processor's statistics (train split only)
    model: object  # S4DForSequenceClassification | S4DForCausalLM
    collator: object
    metrics: object  # TaskMetrics
    output_dir: Path
    work_dir: Path
    resume_from: Path | None  # the checkpoint to resume from, if any
    target_mean: np.ndarray | None = None  # regression: the model learns (y - mean) / std
    target_std: np.ndarray | None = None
    command: str = ""
    stop: "GracefulStop | None" = None


@dataclasses.dataclass
class TrainResult:
    """What a backend hands back (on every process; only the main one writes the output folder)."""

    interrupted: bool
    global_step: int
    model: object  # the unwrapped model (its config; its weights may be sharded under FSDP / DeepSpeed)
    state_dict: dict | None  # the selected (best) weights, gathered in full on the main process
    train_metrics: dict
    eval_metrics: dict  # "eval_*": the selected model on the eval split
    test_metrics: dict  # "test_*": the selected model on the test split
    log_history: list
    world_size: int = 1


class GracefulStop:
    """SIGINT / SIGTERM ask the run to stop after the current optimizer step, save a checkpoint and exit (a second
    signal stops at once). ``--resume`` then continues from that step, so no finished step is lost.

    ``interrupt_after_steps`` sends the process SIGINT itself after that step (for tests), so the test exercises
    the same path as a real Ctrl-C. Every process must agree to stop at the same step: :meth:`should_stop` takes
    the logical OR over processes when a process group is running.
    """

    def __init__(self, interrupt_after_steps: int | None = None):
        self.requested = False
        self.interrupt_after_steps = interrupt_after_steps
        self._previous = {}

    def install(self):
        for sig in (signal.SIGINT, signal.SIGTERM):
            self._previous[sig] = signal.signal(sig, self._handle)
        return self

    def uninstall(self):
        for sig, handler in self._previous.items():
            signal.signal(sig, handler)
        self._previous = {}

    def _handle(self, signum, frame):
        if self.requested:
            raise KeyboardInterrupt
        self.requested = True
        print(f"\nreceived signal {signum}: stopping after this step and saving a checkpoint "
              "(send it again to stop at once)", file=sys.stderr, flush=True)

    def should_stop(self, global_step: int) -> bool:
        if self.interrupt_after_steps is not None and global_step == self.interrupt_after_steps:
            os.kill(os.getpid(), signal.SIGINT)
        self.requested = any_process(self.requested)
        return self.requested


def no_accelerator() -> bool:
    """True on a machine without GPU (or other accelerator). Accelerate must then be told ``cpu=True``, or a
    multi-process launch (``accelerate launch --multi_gpu``, ``torchrun``) silently runs N separate single-process
    trainings instead of one gloo data-parallel run."""
    import torch

    if hasattr(torch, "accelerator"):
        return not torch.accelerator.is_available()
    return not torch.cuda.is_available()


def any_process(flag: bool) -> bool:
    """The logical OR of ``flag`` over all processes (just ``flag`` without a process group)."""
    import torch.distributed as dist

    if not (dist.is_available() and dist.is_initialized()):
        return bool(flag)
    import torch

    tensor = torch.tensor([int(flag)], dtype=torch.int64)
    if dist.get_backend() == "nccl":
        tensor = tensor.cuda()
    dist.all_reduce(tensor, op=dist.ReduceOp.MAX)
    return bool(tensor.item())


# ----------------------------------------------------------------------------------------------------------------
# Preparation
# ----------------------------------------------------------------------------------------------------------------

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


def build_model(args, task: str, splits: DatasetSplits):
    """A fresh S4D model sized by the flags, or ``--model DIR`` checked against the data (input kind, input_dim,
    labels) before any training."""
    import torch
    from transformers import set_seed

    from s4d_hf import S4DConfig, S4DForCausalLM, S4DForSequenceClassification

    set_seed(args.seed)  # the same initial weights on every process
    head = S4DForCausalLM if task == "causal-lm" else S4DForSequenceClassification
    labels = {}
    if task in CLASSIFICATION_TASKS:
        id2label = {int(k): str(v) for k, v in splits.id2label.items()}
        labels = dict(num_labels=len(id2label), id2label=id2label, label2id={v: k for k, v in id2label.items()},
                      problem_type="single_label_classification")
    elif task == "time-series-regression":
        n_targets = int(np.prod(np.shape(splits.train[0]["labels"])) or 1)
        labels = dict(num_labels=n_targets, problem_type="regression")
    if getattr(args, "init_from", None):  # a fresh task model around a pretrained backbone
        from .spt import model_from_backbone

        return model_from_backbone(args, task, splits, head, labels)
    size = {k: getattr(args, k) for k in MODEL_DEFAULTS}
    if args.model is None:
        inputs = dict(vocab_size=BYT5_VOCAB_SIZE, pad_token_id=0, eos_token_id=1) if task == "causal-lm" \
            else dict(input_dim=splits.input_dim)
        optim = {} if args.ssm_lr is None else {"ssm_lr": args.ssm_lr}
        config = S4DConfig(**inputs, **{k: MODEL_DEFAULTS[k] if v is None else v for k, v in size.items()},
                           **optim, **labels)
        if task == "causal-lm" and config.bidirectional:
            raise ValueError("--bidirectional cannot train a causal language model (it would see the future)")
        return head(config)

    given = [f"--{k.replace('_', '-')}" for k, v in size.items() if v is not None and k != "dropout"]
    if given:
        raise ValueError(f"{', '.join(given)} cannot be combined with --model (the architecture comes from "
                         f"{args.model}/config.json)")
    config = S4DConfig.from_pretrained(args.model)
    if task == "causal-lm":
        if config.vocab_size != BYT5_VOCAB_SIZE:
            raise ValueError(f"--model {args.model}: vocab_size={config.vocab_size}, but causal-lm data uses ByT5 ids "
                             f"(vocab_size {BYT5_VOCAB_SIZE})")
    elif config.input_dim != splits.input_dim:
        raise ValueError(f"input_dim mismatch: --model {args.model} takes input_dim={config.input_dim} channels, the "
                         f"dataset has input_dim={splits.input_dim}")
    overrides = {}
    if task in CLASSIFICATION_TASKS:
        same = config.num_labels == labels["num_labels"] and {int(k): v for k, v in config.id2label.items()} == \
            labels["id2label"]
        if not same and not args.reset_head:
            raise ValueError(f"label/num_labels mismatch: --model {args.model} has num_labels={config.num_labels} "
                             f"{dict(config.id2label)}, the dataset {labels['num_labels']} {labels['id2label']}; pass "
                             "--reset-head to train a new classifier")
        overrides = dict(labels, ignore_mismatched_sizes=bool(args.reset_head))
    elif task == "time-series-regression" and (config.num_labels != labels["num_labels"]):
        if not args.reset_head:
            raise ValueError(f"label/num_labels mismatch: --model {args.model} predicts {config.num_labels} targets, "
                             f"the dataset has {labels['num_labels']}; pass --reset-head to train a new head")
        overrides = dict(labels, ignore_mismatched_sizes=True)
    if args.dropout is not None:  # the one size flag that may change when fine-tuning
        overrides["dropout"] = args.dropout
    model = head.from_pretrained(args.model, dtype=torch.float32, **overrides)
    if args.ssm_lr is not None:
        model.config.ssm_lr = args.ssm_lr
    return model


def standardize_targets(splits: DatasetSplits) -> tuple[DatasetSplits, np.ndarray, np.ndarray]:
    """Regression: train on (y - mean) / std with train-split statistics; :func:`fold_target_scale` puts the scale
    back into the classifier before saving, so the saved model predicts in the original units."""
    y = np.asarray([np.ravel(ex["labels"]) for ex in splits.train], dtype=np.float64)  # (N, T)
    mean, std = y.mean(0), y.std(0)
    std = np.where(std < 1e-12, 1.0, std)

    def scale(examples):
        out = []
        for ex in examples:
            z = (np.asarray(ex["labels"], dtype=np.float64).reshape(-1) - mean) / std
            out.append({**ex, "labels": float(z[0]) if np.ndim(ex["labels"]) == 0 else z.astype(np.float32)})
        return out

    return dataclasses.replace(splits, train=scale(splits.train), eval=scale(splits.eval),
                               test=scale(splits.test)), mean, std


def fold_target_scale(W, b, mean: np.ndarray, std: np.ndarray, inverse: bool = False) -> None:
    """The classifier's weight W (T, H) and bias b (T,), in place: y = std * (W h + b) + mean  ->  W' = std W,
    b' = std b + mean (``inverse`` undoes it)."""
    import torch

    s = torch.as_tensor(std, dtype=W.dtype, device=W.device)
    m = torch.as_tensor(mean, dtype=W.dtype, device=W.device)
    with torch.no_grad():
        if inverse:
            W.div_(s[:, None])
            b.sub_(m).div_(s)
        else:
            W.mul_(s[:, None])
            b.mul_(s).add_(m)


def prepare_job(args, is_main: bool = True, command: str = "") -> TrainingJob:
    """Everything before the first training step; raises ValueError for bad input (and changes nothing on disk)."""
    from .collate import S4DDataCollator
    from .evaluation import TaskMetrics

    task = args.task
    if task == "self-pretraining":
        from .spt import prepare_spt_job

        return prepare_spt_job(args, is_main=is_main, command=command)
    if args.max_steps is not None and args.max_steps < 1:
        raise ValueError(f"--max-steps must be a positive integer; got {args.max_steps}")
    if args.epochs is not None and not args.epochs > 0:
        raise ValueError(f"--epochs must be positive; got {args.epochs}")
    if args.mixed_precision == "fp16":
        import torch

        if not torch.cuda.is_available():
            raise ValueError("--mixed-precision fp16 needs a CUDA GPU; on CPU use bf16 or no")
    output_dir, work_dir, resume_from = resolve_folders(args, is_main)
    raw = load_dataset_spec(args.dataset, task, seed=data_seed(args), block_size=args.block_size,
                            image_size=args.image_size, builtin_options=args.dataset_option)
    check_splits(task, raw)
    splits, stats = normalize_splits(task, raw)
    target_mean = target_std = None
    if task == "time-series-regression":
        splits, target_mean, target_std = standardize_targets(splits)
    model = build_model(args, task, raw)
    if task == "time-series-regression" and args.model is not None and not args.reset_head:
        fold_target_scale(model.classifier.weight, model.classifier.bias, target_mean, target_std, inverse=True)
    metrics = TaskMetrics(task, num_labels=getattr(model.config, "num_labels", None), target_mean=target_mean,
                          target_std=target_std)
    return TrainingJob(
        task=task, args=args, splits=splits, norm_stats=stats, model=model,
        collator=S4DDataCollator(task, pad_token_id=0), metrics=metrics, output_dir=output_dir, work_dir=work_dir,
        resume_from=resume_from, target_mean=target_mean, target_std=target_std, command=command,
        stop=GracefulStop(args.interrupt_after_steps),
    )


class WorkFolder:
    """The work (checkpoint) folder of one run, made ready by :func:`clear_for_start` and put back by
    :meth:`failed` when the run fails: a folder the run created is removed, an empty one emptied again, and one set
    aside by ``--overwrite`` restored, unless the run saved checkpoints of its own (kept for ``--resume``)."""

    def __init__(self, job: TrainingJob):
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


def clear_for_start(job: TrainingJob) -> WorkFolder:
    """Main process, before training: create (and mark) the work folder; with --overwrite and no resume, set the
    earlier run's checkpoints aside (removed once this run succeeds, restored if it fails)."""
    return WorkFolder(job)


def remove_work_folder(job: TrainingJob) -> bool:
    """After a finished run without --keep-checkpoints: remove the work folder if it carries the run marker."""
    if folder_state(job.work_dir, "checkpoints") != "own":
        return False
    shutil.rmtree(job.work_dir, ignore_errors=True)
    return True
