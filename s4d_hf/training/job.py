"""One training run, as both backends see it: the prepared job (data, model, collator, metrics, folders; made by
:func:`s4d_hf.training.tasks.prepare_job`), the graceful-stop switch and the result the backends hand back.

This module knows nothing about particular tasks; :mod:`s4d_hf.training.tasks` does.
"""

from __future__ import annotations

import argparse
import dataclasses
import os
import resource
import signal
import sys
from pathlib import Path

import numpy as np
import torch
import torch.distributed as dist

from .data.core import DatasetSplits


@dataclasses.dataclass
class TrainingJob:
    task: str
    args: argparse.Namespace
    splits: DatasetSplits  # normalised as the saved processor does it
    norm_stats: dict  # the processor's statistics (train split only)
    model: object  # S4DForSequenceClassification | S4DForCausalLM | S4DForSelfPretraining
    collator: object  # examples -> batch
    metrics: object  # TaskMetrics | SPTMetrics: best, greater_is_better, from_token_loss, __call__, from_loss
    output_dir: Path
    work_dir: Path
    resume_from: Path | None  # the checkpoint to resume from, if any
    target_mean: np.ndarray | None = None  # regression: the model learns (y - mean) / std
    target_std: np.ndarray | None = None
    command: str = ""
    stop: "GracefulStop | None" = None
    memory: "PeakMemory" = dataclasses.field(default_factory=lambda: PeakMemory())  # from here: data and model ready


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


class PeakMemory:
    """The peak memory of a run from its creation (data loaded, model built) to :meth:`measure`, the same way for
    ``s4d-hf train`` (``peak_memory_*`` in all_results.json) and the Transformer baseline (``s4d-hf baseline``):

    * CUDA: ``torch.cuda.max_memory_allocated()`` after ``torch.cuda.reset_peak_memory_stats()`` at creation (the
      tensors PyTorch allocated, without the caching allocator's reserve);
    * CPU: growth of the process's peak resident set size: Linux's ``VmHWM`` minus ``VmRSS`` at creation, the peak
      reset at creation through ``/proc/self/clear_refs``. Where the kernel refuses that reset (or without /proc:
      ``getrusage``'s ``ru_maxrss``), the peak is the process's lifetime one and the growth an upper bound;
      ``peak_memory_measure`` says which.
    """

    def __init__(self):
        self.cuda = torch.cuda.is_available()
        if self.cuda:
            torch.cuda.reset_peak_memory_stats()
            return
        self.start = _proc_status_bytes("VmRSS")
        try:
            with open("/proc/self/clear_refs", "w") as f:
                f.write("5")  # reset VmHWM to the current RSS
            self.reset = True
        except OSError:
            self.reset = False
        if self.start is None:  # no /proc: ru_maxrss is in KiB on Linux, bytes on macOS
            unit = 1 if sys.platform == "darwin" else 1024
            self.start, self.reset = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * unit, False

    def measure(self) -> dict:
        """``{"peak_memory_bytes": int, "peak_memory_measure": what was measured, "training_device": where}``."""
        if self.cuda:
            return {"peak_memory_bytes": int(torch.cuda.max_memory_allocated()),
                    "peak_memory_measure": "CUDA torch.cuda.max_memory_allocated",
                    "training_device": f"1 {torch.cuda.get_device_name()} GPU; torch {torch.__version__}"}
        peak = _proc_status_bytes("VmHWM")
        if peak is None:
            unit = 1 if sys.platform == "darwin" else 1024
            peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * unit
        kind = "CPU peak RSS growth" + ("" if self.reset else " (upper bound: the peak could not be reset)")
        return {"peak_memory_bytes": max(0, int(peak - self.start)), "peak_memory_measure": kind,
                "training_device": f"CPU ({os.cpu_count()} cores), no GPU; torch {torch.__version__}"}


def _proc_status_bytes(field: str) -> int | None:
    """A ``kB`` field of /proc/self/status (``VmRSS``, ``VmHWM``) in bytes; None without /proc."""
    try:
        with open("/proc/self/status") as f:
            for line in f:
                if line.startswith(field + ":"):
                    return int(line.split()[1]) * 1024
    except OSError:
        return None
    return None


def no_accelerator() -> bool:
    """True on a machine without GPU (or other accelerator). Accelerate must then be told ``cpu=True``, or a
    multi-process launch (``accelerate launch --multi_gpu``, ``torchrun``) silently runs N separate single-process
    trainings instead of one gloo data-parallel run."""
    if hasattr(torch, "accelerator"):
        return not torch.accelerator.is_available()
    return not torch.cuda.is_available()


def any_process(flag: bool) -> bool:
    """The logical OR of ``flag`` over all processes (just ``flag`` without a process group)."""
    if not (dist.is_available() and dist.is_initialized()):
        return bool(flag)
    tensor = torch.tensor([int(flag)], dtype=torch.int64)
    if dist.get_backend() == "nccl":
        tensor = tensor.cuda()
    dist.all_reduce(tensor, op=dist.ReduceOp.MAX)
    return bool(tensor.item())
