"""The Accelerate backend: a plain training loop on ``accelerate.Accelerator``, with the same model, data, collator
and metrics as the Trainer backend.

Runs unchanged on one process, under ``accelerate launch --multi_gpu --num_processes N`` (gloo on CPU) and under
``torchrun``. Data order: each epoch is one permutation of the train split, seeded by (seed, epoch) and identical on
every process; Accelerate hands process r the batches r, r + N, r + 2N, ... of it. So N processes with batch b see
exactly the examples that one process with batch N·b sees, step for step.

Checkpoints (``work_dir/checkpoint-<step>``): ``Accelerator.save_state`` (model, optimizer, scheduler, every
process's RNG) plus ``loop_state.json`` (epoch, position in the epoch, best metric, early-stopping count, logs).

The loop is :class:`AccelerateLoop`: set-up (:meth:`~AccelerateLoop.__init__`), one epoch
(:meth:`~AccelerateLoop.run_epoch`), one batch (:meth:`~AccelerateLoop.train_batch`), what follows an optimizer step
(logging, evaluation, checkpoints, early and graceful stops: :meth:`~AccelerateLoop.after_optimizer_step`), and the
final evaluation of the selected checkpoint (:meth:`~AccelerateLoop.finish`).
"""

from __future__ import annotations

import json
import math
import shutil
import sys
import time

import numpy as np
import torch
from accelerate import Accelerator
from torch.utils.data import DataLoader, Sampler
from tqdm.auto import tqdm
from transformers import get_cosine_schedule_with_warmup

from s4d_hf.modeling.modeling_s4d import ssm_parameter_groups

from .folders import checkpoint_dirs
from .job import TrainingJob, TrainResult, no_accelerator


class EpochPermutationSampler(Sampler):
    """A permutation of range(n) drawn from (seed, epoch): the same on every process, and reproducible on resume."""

    def __init__(self, n: int, seed: int):
        self.n, self.seed, self.epoch = n, seed, 0

    def set_epoch(self, epoch: int):
        self.epoch = epoch

    def __len__(self):
        return self.n

    def __iter__(self):
        return iter(np.random.default_rng([self.seed, self.epoch]).permutation(self.n).tolist())


def warmup_steps(warmup: float, total: int) -> int:
    """``--warmup``: a number of steps (>= 1) or a fraction of all steps (< 1), as TrainingArguments.warmup_steps."""
    return int(warmup) if warmup >= 1 else math.ceil(total * warmup)


def evaluate(job: TrainingJob, accelerator, model, dataloader, prefix: str) -> dict:
    """Loss and task metrics over a whole split, gathered from every process (duplicates of uneven splits dropped)."""
    model.eval()
    unwrapped = accelerator.unwrap_model(model)
    logits_all, labels_all, token_loss, token_count = [], [], [], []
    with torch.no_grad():
        for batch in dataloader:
            with accelerator.autocast():
                out = model(**batch)
            if job.metrics.from_token_loss:  # per-sequence sums of the next-token loss, so the mean is over tokens
                logits, labels = out.logits[:, :-1].float(), batch["labels"][:, 1:]
                losses = torch.nn.functional.cross_entropy(logits.transpose(1, 2), labels, ignore_index=-100,
                                                           reduction="none").sum(1)
                counts = (labels != -100).sum(1)
                losses, counts = accelerator.gather_for_metrics((losses, counts))
                token_loss.append(losses.cpu())
                token_count.append(counts.cpu())
            else:
                logits, labels = accelerator.gather_for_metrics((out.logits.float(), batch["labels"]))
                logits_all.append(logits.cpu())
                labels_all.append(labels.cpu())
    model.train()
    if job.metrics.from_token_loss:
        loss = float(torch.cat(token_loss).sum() / torch.cat(token_count).sum())
        return {f"{prefix}_loss": loss, **{f"{prefix}_{k}": v for k, v in job.metrics.from_loss(loss).items()}}
    logits, labels = torch.cat(logits_all), torch.cat(labels_all)
    loss = float(unwrapped.classification_loss(logits, labels))
    metrics = job.metrics(logits.numpy(), labels.numpy())
    return {f"{prefix}_loss": loss, **{f"{prefix}_{k}": v for k, v in metrics.items()}}


class AccelerateLoop:
    """One training run on ``accelerate.Accelerator``; ``AccelerateLoop(job).run()`` -> :class:`TrainResult`.

    ``state`` is everything a checkpoint's ``loop_state.json`` restores: global_step, epoch, batches_done (position
    in the epoch), best_metric / best_checkpoint, bad_evals (early stopping), log_history, train_loss_sum and the
    per-process loss summed since the last log line (running_loss, running_count).
    """

    def __init__(self, job: TrainingJob):
        a = self.args = job.args
        self.job = job
        self.accelerator = accelerator = Accelerator(gradient_accumulation_steps=a.grad_accum,
                                                     mixed_precision=a.mixed_precision, cpu=no_accelerator())
        self.main = accelerator.is_main_process
        # the DataLoaders get their own generators so that iterating them never draws from the global RNG (dropout)
        train_dl = DataLoader(job.splits.train, batch_size=a.batch_size,
                              sampler=EpochPermutationSampler(len(job.splits.train), a.seed),
                              collate_fn=job.collator, generator=torch.Generator().manual_seed(a.seed))
        eval_batch = a.eval_batch_size or a.batch_size
        eval_dl = DataLoader(job.splits.eval, batch_size=eval_batch, collate_fn=job.collator,
                             generator=torch.Generator().manual_seed(a.seed))
        test_dl = DataLoader(job.splits.test, batch_size=eval_batch, collate_fn=job.collator,
                             generator=torch.Generator().manual_seed(a.seed))
        optimizer = torch.optim.AdamW(ssm_parameter_groups(job.model, lr=a.lr, weight_decay=a.weight_decay), lr=a.lr)
        self.model, self.optimizer, self.train_dl, self.eval_dl, self.test_dl = accelerator.prepare(
            job.model, optimizer, train_dl, eval_dl, test_dl)
        steps_per_epoch = math.ceil(len(self.train_dl) / a.grad_accum)
        self.total_steps = a.max_steps or math.ceil(steps_per_epoch * (a.epochs or 10.0))
        # stepped once per optimizer update by this loop (not prepared: Accelerate would step it once per process)
        self.scheduler = get_cosine_schedule_with_warmup(self.optimizer.optimizer,
                                                         warmup_steps(a.warmup, self.total_steps), self.total_steps)
        accelerator.register_for_checkpointing(self.scheduler)

        self.state = {"global_step": 0, "epoch": 0, "batches_done": 0, "best_metric": None, "best_checkpoint": None,
                      "bad_evals": 0, "log_history": [], "train_loss_sum": 0.0}
        if job.resume_from is not None:
            accelerator.load_state(str(job.resume_from))
            self.state = json.loads((job.resume_from / "loop_state.json").read_text())
        self.interrupted = self.early_stop = False
        self.progress = None

    def announce(self) -> None:
        if self.main:
            job, accelerator, splits = self.job, self.accelerator, self.job.splits
            print(f"s4d-hf train: backend=accelerate world_size={accelerator.num_processes} "
                  f"distributed_type={accelerator.distributed_type.value} "
                  f"mixed_precision={accelerator.mixed_precision} task={job.task} "
                  f"train/eval/test={len(splits.train)}/{len(splits.eval)}/{len(splits.test)} "
                  f"steps={self.total_steps} parameters={sum(p.numel() for p in self.model.parameters()):,}"
                  + (f" resume_from={job.resume_from.name} (step {self.state['global_step']})"
                     if job.resume_from else ""), flush=True)

    def log(self, message: str) -> None:
        """Main process only, above the progress bar, flushed (logs go to files)."""
        if self.main:
            self.progress.write(message)
            sys.stdout.flush()

    def save_checkpoint(self) -> str:
        state, accelerator, work_dir = self.state, self.accelerator, self.job.work_dir
        path = work_dir / f"checkpoint-{state['global_step']}"
        # the loss summed since the last log line, per process, so that a resumed run logs the same numbers
        state["running_loss"] = accelerator.gather(self.running[None]).tolist()
        state["running_count"] = self.running_count
        accelerator.save_state(str(path))
        if self.main:
            (path / "loop_state.json").write_text(json.dumps(state))
            keep = {path.name, state["best_checkpoint"]}
            for old in checkpoint_dirs(work_dir):  # keep the best and the latest
                if old.name not in keep:
                    shutil.rmtree(old)
        accelerator.wait_for_everyone()
        return path.name

    def evaluate_and_save(self) -> bool:
        """Evaluate on the eval split, checkpoint, track the best; returns True when early stopping says stop."""
        state, best = self.state, self.job.metrics
        metrics = evaluate(self.job, self.accelerator, self.model, self.eval_dl, "eval")
        value = metrics[f"eval_{best.best}"]
        better = state["best_metric"] is None or (
            value > state["best_metric"] if best.greater_is_better else value < state["best_metric"])
        state["log_history"].append({**metrics, "step": state["global_step"],
                                     "epoch": state["epoch"] + state["batches_done"] / len(self.train_dl)})
        state["bad_evals"] = 0 if better else state["bad_evals"] + 1
        if better:
            state["best_metric"] = value
            state["best_checkpoint"] = f"checkpoint-{state['global_step']}"
        self.log(f"step {state['global_step']}: " + " ".join(f"{k}={v:.4g}" for k, v in metrics.items()))
        self.save_checkpoint()
        return bool(self.args.patience) and state["bad_evals"] >= self.args.patience

    def log_train_loss(self, batch_index: int) -> None:
        """The mean training loss since the last log line (over processes) into log_history."""
        state, step = self.state, self.state["global_step"]
        mean_loss = float(self.accelerator.gather(self.running[None]).mean()) / self.running_count
        state["train_loss_sum"] += mean_loss * self.running_count
        self.running.zero_()
        self.running_count = 0
        entry = {"loss": mean_loss, "learning_rate": self.scheduler.get_last_lr()[0], "step": step,
                 "epoch": state["epoch"] + (batch_index + 1) / len(self.train_dl)}
        state["log_history"].append(entry)
        self.log(f"step {step}: loss={mean_loss:.4g} lr={entry['learning_rate']:.3g}")

    def train_batch(self, batch_index: int, batch) -> bool:
        """Forward, backward and (when the accumulation is complete) an optimizer step; True after a step."""
        a, accelerator = self.args, self.accelerator
        with accelerator.accumulate(self.model):
            loss = self.model(**batch).loss
            accelerator.backward(loss)
            if accelerator.sync_gradients and a.max_grad_norm:
                accelerator.clip_grad_norm_(self.model.parameters(), a.max_grad_norm)
            self.optimizer.step()
            self.optimizer.zero_grad()
        self.state["batches_done"] = batch_index + 1
        self.running += loss.detach().float() / a.grad_accum
        if not accelerator.sync_gradients:
            return False
        self.scheduler.step()
        self.state["global_step"] += 1
        self.running_count += 1
        self.progress.update(1)
        return True

    def after_optimizer_step(self, batch_index: int) -> bool:
        """Logging, evaluation and checkpoints due at this step; True when the run stops here (the last step, early
        stopping, or a graceful stop after saving a checkpoint)."""
        a, step = self.args, self.state["global_step"]
        if step % a.logging_steps == 0 or step == self.total_steps:
            self.log_train_loss(batch_index)
        if a.eval_steps and step % a.eval_steps == 0:
            self.early_stop = self.evaluate_and_save()
        if step >= self.total_steps or self.early_stop:
            return True
        if self.job.stop.should_stop(step):
            self.save_checkpoint()
            self.interrupted = True
            return True
        return False

    def run_epoch(self) -> bool:
        """Train from the current position in the epoch; True when the epoch ended, False when the run stopped."""
        self.train_dl.set_epoch(self.state["epoch"])
        for i, batch in enumerate(self.train_dl):
            if i < self.state["batches_done"]:  # resuming inside an epoch: these batches were trained on
                continue
            if self.train_batch(i, batch) and self.after_optimizer_step(i):
                return False
        self.state["epoch"] += 1
        self.state["batches_done"] = 0
        return True

    def train(self) -> None:
        """Epochs until max steps, early stopping or a graceful stop; evaluation at each epoch end (or every
        --eval-steps)."""
        eval_at_epoch_end = not self.args.eval_steps
        while self.state["global_step"] < self.total_steps and not (self.interrupted or self.early_stop):
            if self.run_epoch():
                if eval_at_epoch_end:
                    self.early_stop = self.evaluate_and_save()
            elif not (self.interrupted or self.early_stop) and eval_at_epoch_end:
                self.early_stop = self.evaluate_and_save()  # max_steps inside an epoch: the final evaluation

    def finish(self, start: float) -> TrainResult:
        """The selected (best) checkpoint on the eval and test splits, the training metrics, the gathered weights."""
        accelerator, state, job = self.accelerator, self.state, self.job
        unwrapped = accelerator.unwrap_model(self.model)
        if self.interrupted:
            accelerator.end_training()
            return TrainResult(interrupted=True, global_step=state["global_step"], model=unwrapped, state_dict=None,
                               train_metrics={}, eval_metrics={}, test_metrics={}, log_history=state["log_history"],
                               world_size=accelerator.num_processes)
        if state["best_checkpoint"] and (job.work_dir / state["best_checkpoint"]).is_dir():
            accelerator.load_state(str(job.work_dir / state["best_checkpoint"]))  # the selected model
        eval_metrics = evaluate(job, accelerator, self.model, self.eval_dl, "eval")
        test_metrics = evaluate(job, accelerator, self.model, self.test_dl, "test")
        if self.running_count:  # steps after the last logging
            state["train_loss_sum"] += float(accelerator.gather(self.running[None]).mean())
        train_metrics = {"train_loss": state["train_loss_sum"] / max(state["global_step"], 1),
                         "train_runtime": time.time() - start,
                         "epoch": state["epoch"] + state["batches_done"] / len(self.train_dl)}
        state_dict = accelerator.get_state_dict(self.model)  # every process: FSDP/ZeRO-3 gather the full weights
        accelerator.wait_for_everyone()
        accelerator.end_training()
        return TrainResult(interrupted=False, global_step=state["global_step"], model=unwrapped,
                           state_dict=state_dict, train_metrics=train_metrics, eval_metrics=eval_metrics,
                           test_metrics=test_metrics, log_history=state["log_history"],
                           world_size=accelerator.num_processes)

    def run(self) -> TrainResult:
        self.announce()
        a, state, accelerator = self.args, self.state, self.accelerator
        self.progress = tqdm(total=self.total_steps, initial=state["global_step"],
                             disable=a.no_progress or not self.main, desc="training")
        self.running = torch.zeros((), device=accelerator.device)
        self.running_count, start = state.get("running_count", 0), time.time()
        if "running_loss" in state and len(state["running_loss"]) == accelerator.num_processes:
            self.running += state["running_loss"][accelerator.process_index]
        self.model.train()
        self.job.stop.install()
        try:
            self.train()
        finally:
            self.job.stop.uninstall()
            self.progress.close()
        return self.finish(start)


def train(job: TrainingJob) -> TrainResult:
    return AccelerateLoop(job).run()
