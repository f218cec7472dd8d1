"""What differs between the tasks ``s4d-hf train --task`` knows: one small object per task, chosen from
:data:`TASKS`, that builds its model, collator and metrics and writes its output folder. :func:`prepare_job` does
everything else the same way for every task, and checks it all before the first training step.

* audio-, image-, time-series-classification and causal-lm: :class:`FineTuning` (S4DForSequenceClassification or
  S4DForCausalLM; the output folder holds the task model);
* time-series-regression: :class:`Regression` (trains on standardised targets; the saved model predicts in the
  targets' units);
* self-pretraining: :class:`~s4d_hf.training.spt.SelfPretraining` (S4DForSelfPretraining; the output folder holds
  the backbone, an S4DModel).
"""

from __future__ import annotations

from pathlib import Path

import torch

from .collate import S4DDataCollator
from .data.core import PAD_ID, TASKS as DATA_TASKS, check_splits, data_seed, normalize_splits
from .data.hf_datasets import hf_dataset_options
from .data.loading import load_dataset_spec
from .folders import resolve_folders
from .job import GracefulStop, TrainingJob, TrainResult
from .models import build_model, fold_target_scale, standardize_targets
from .output import write_task_output
from .spt import SelfPretraining
from .task_metrics import TaskMetrics


class FineTuning:
    """A downstream task trained on labelled data (or, for causal-lm, on the text itself): the model comes from the
    flags, ``--model`` or ``--init-from`` (:func:`~s4d_hf.training.models.build_model`), the metrics from
    :class:`~s4d_hf.training.task_metrics.TaskMetrics`."""

    def __init__(self, name: str):
        self.name = name

    def check_args(self, args) -> None:
        """Refuse flags this task cannot use (ValueError)."""

    def data_task(self, args) -> str:
        """The task whose data format ``--dataset`` is read in."""
        return self.name

    def prepare_targets(self, splits):
        """(splits, target_mean, target_std): the labels the model trains on."""
        return splits, None, None

    def build_model(self, args, raw, target_mean, target_std):
        return build_model(args, self.name, raw)

    def collator(self, data_task: str):
        return S4DDataCollator(self.name, pad_token_id=PAD_ID)

    def metrics(self, model, target_mean, target_std):
        return TaskMetrics(self.name, num_labels=getattr(model.config, "num_labels", None), target_mean=target_mean,
                           target_std=target_std)

    def write_output(self, job: TrainingJob, result: TrainResult) -> Path:
        return write_task_output(job, result, dict(result.state_dict))


class Regression(FineTuning):
    """time-series-regression: the model trains on standardised targets (y - mean) / std of the train split; the
    saved model has the scale folded back into its head, so it predicts in the targets' units."""

    def prepare_targets(self, splits):
        return standardize_targets(splits)

    def build_model(self, args, raw, target_mean, target_std):
        model = super().build_model(args, raw, target_mean, target_std)
        if args.model is not None and not args.reset_head:  # a saved regression head predicts in original units
            fold_target_scale(model.classifier.weight, model.classifier.bias, target_mean, target_std, inverse=True)
        return model

    def write_output(self, job: TrainingJob, result: TrainResult) -> Path:
        state_dict = dict(result.state_dict)
        # on copies: the state dict may share the model's tensors
        W, b = state_dict["classifier.weight"].detach().clone(), state_dict["classifier.bias"].detach().clone()
        fold_target_scale(W, b, job.target_mean, job.target_std)
        state_dict.update({"classifier.weight": W, "classifier.bias": b})
        return write_task_output(job, result, state_dict)


TASKS = {
    **{name: FineTuning(name) for name in DATA_TASKS},
    "time-series-regression": Regression("time-series-regression"),
    "self-pretraining": SelfPretraining(),
}


def check_run_length(args) -> None:
    """The flags every task shares that can be wrong before any data is read."""
    if args.max_steps is not None and args.max_steps < 1:
        raise ValueError(f"--max-steps must be a positive integer; got {args.max_steps}")
    if args.epochs is not None and not args.epochs > 0:
        raise ValueError(f"--epochs must be positive; got {args.epochs}")
    if args.mixed_precision == "fp16" and not torch.cuda.is_available():
        raise ValueError("--mixed-precision fp16 needs a CUDA GPU; on CPU use bf16 or no")


def prepare_job(args, is_main: bool = True, command: str = "") -> TrainingJob:
    """Everything before the first training step; raises ValueError for bad input (and changes nothing on disk)."""
    task = TASKS[args.task]
    task.check_args(args)
    check_run_length(args)
    data_task = task.data_task(args)
    output_dir, work_dir, resume_from = resolve_folders(args, is_main)
    raw = load_dataset_spec(args.dataset, data_task, seed=data_seed(args), block_size=args.block_size,
                            image_size=args.image_size, builtin_options=args.dataset_option,
                            dataset_args=hf_dataset_options(args))
    check_splits(data_task, raw)
    splits, stats = normalize_splits(data_task, raw)
    splits, target_mean, target_std = task.prepare_targets(splits)
    model = task.build_model(args, raw, target_mean, target_std)
    return TrainingJob(
        task=args.task, args=args, splits=splits, norm_stats=stats, model=model, collator=task.collator(data_task),
        metrics=task.metrics(model, target_mean, target_std), output_dir=output_dir, work_dir=work_dir,
        resume_from=resume_from, target_mean=target_mean, target_std=target_std, command=command,
        stop=GracefulStop(args.interrupt_after_steps),
    )


def write_output(job: TrainingJob, result: TrainResult) -> Path:
    """Write the job's Hub-ready folder (main process only) the way its task does; returns its path."""
    return TASKS[job.task].write_output(job, result)
