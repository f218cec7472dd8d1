"""The Accelerate backend: a plain training loop on ``accelerate.Accelerator``, with the same model, data, collator
and metrics as the Trainer backend.

Runs unchanged on one process, under ``accelerate launch --multi_gpu --num_processes N`` (gloo on CPU) and under
``torchrun``. Data order: each epoch is one permutation of the train split, seeded by (seed, epoch) and identical on
every process; Accelerate hands process r the batches r, r + N, r + 2N, ... of it. So N processes with batch b see
exactly the examples that one process with batch N·b sees, step for step.

Checkpoints (``work_dir/checkpoint-<step>``): ``Accelerator.save_state`` (model, optimizer, scheduler, every
process's RNG) plus ``loop_state.json`` (epoch, position in the epoch, best metric, early-stopping count, logs).
"""

from __future__ import annotations

import json
import math
import shutil
import sys
import time

import numpy as np
import torch
from torch.utils.data import DataLoader, Sampler

from s4d_hf import ssm_parameter_groups

from .job import TrainingJob, TrainResult, checkpoint_dirs, no_accelerator


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
            if job.task == "causal-lm":  # per-sequence sums of the next-token loss, so the mean is over tokens
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
    if job.task == "causal-lm":
        loss = float(torch.cat(token_loss).sum() / torch.cat(token_count).sum())
        return {f"{prefix}_loss": loss, **{f"{prefix}_{k}": v for k, v in job.metrics.from_loss(loss).items()}}
    logits, labels = torch.cat(logits_all), torch.cat(labels_all)
    loss = float(unwrapped.classification_loss(logits, labels))
    metrics = job.metrics(logits.numpy(), labels.numpy())
    return {f"{prefix}_loss": loss, **{f"{prefix}_{k}": v for k, v in metrics.items()}}


def train(job: TrainingJob) -> TrainResult:
    from accelerate import Accelerator
    from transformers import get_cosine_schedule_with_warmup

    a = job.args
    accelerator = Accelerator(gradient_accumulation_steps=a.grad_accum, mixed_precision=a.mixed_precision,
                              cpu=no_accelerator())
    main = accelerator.is_main_process
    model = job.model
    # the DataLoaders get their own generators so that iterating them never draws from the global RNG (dropout)
    train_sampler = EpochPermutationSampler(len(job.splits.train), a.seed)
    train_dl = DataLoader(job.splits.train, batch_size=a.batch_size, sampler=train_sampler,
                          collate_fn=job.collator, generator=torch.Generator().manual_seed(a.seed))
    eval_batch = a.eval_batch_size or a.batch_size
    eval_dl = DataLoader(job.splits.eval, batch_size=eval_batch, collate_fn=job.collator,
                         generator=torch.Generator().manual_seed(a.seed))
    test_dl = DataLoader(job.splits.test, batch_size=eval_batch, collate_fn=job.collator,
                         generator=torch.Generator().manual_seed(a.seed))
    optimizer = torch.optim.AdamW(ssm_parameter_groups(model, lr=a.lr, weight_decay=a.weight_decay), lr=a.lr)
    model, optimizer, train_dl, eval_dl, test_dl = accelerator.prepare(model, optimizer, train_dl, eval_dl, test_dl)
    steps_per_epoch = math.ceil(len(train_dl) / a.grad_accum)
    total_steps = a.max_steps or math.ceil(steps_per_epoch * (a.epochs or 10.0))
    # stepped once per optimizer update by this loop (not prepared: Accelerate would step it once per process)
    scheduler = get_cosine_schedule_with_warmup(optimizer.optimizer, warmup_steps(a.warmup, total_steps), total_steps)
    accelerator.register_for_checkpointing(scheduler)

    state = {"global_step": 0, "epoch": 0, "batches_done": 0, "best_metric": None, "best_checkpoint": None,
             "bad_evals": 0, "log_history": [], "train_loss_sum": 0.0}
    if job.resume_from is not None:
        accelerator.load_state(str(job.resume_from))
        state = json.loads((job.resume_from / "loop_state.json").read_text())
    if main:
        print(f"s4d-hf train: backend=accelerate world_size={accelerator.num_processes} "
              f"distributed_type={accelerator.distributed_type.value} mixed_precision={accelerator.mixed_precision} "
              f"task={job.task} train/eval/test={len(job.splits.train)}/{len(job.splits.eval)}/{len(job.splits.test)} "
              f"steps={total_steps} parameters={sum(p.numel() for p in model.parameters()):,}"
              + (f" resume_from={job.resume_from.name} (step {state['global_step']})" if job.resume_from else ""),
              flush=True)

    def save_checkpoint() -> str:
        path = job.work_dir / f"checkpoint-{state['global_step']}"
        # the loss summed since the last log line, per process, so that a resumed run logs the same numbers
        state["running_loss"] = accelerator.gather(running[None]).tolist()
        state["running_count"] = running_count
        accelerator.save_state(str(path))
        if main:
            (path / "loop_state.json").write_text(json.dumps(state))
            keep = {path.name, state["best_checkpoint"]}
            for old in checkpoint_dirs(job.work_dir):  # keep the best and the latest
                if old.name not in keep:
                    shutil.rmtree(old)
        accelerator.wait_for_everyone()
        return path.name

    def evaluate_and_save() -> bool:
        """Evaluate on the eval split, checkpoint, track the best; returns True when early stopping says stop."""
        metrics = evaluate(job, accelerator, model, eval_dl, "eval")
        value = metrics[f"eval_{job.metrics.best}"]
        better = state["best_metric"] is None or (
            value > state["best_metric"] if job.metrics.greater_is_better else value < state["best_metric"])
        state["log_history"].append({**metrics, "step": state["global_step"],
                                     "epoch": state["epoch"] + state["batches_done"] / len(train_dl)})
        state["bad_evals"] = 0 if better else state["bad_evals"] + 1
        if better:
            state["best_metric"] = value
            state["best_checkpoint"] = f"checkpoint-{state['global_step']}"
        log(f"step {state['global_step']}: " + " ".join(f"{k}={v:.4g}" for k, v in metrics.items()))
        save_checkpoint()
        return bool(a.patience) and state["bad_evals"] >= a.patience

    from tqdm.auto import tqdm

    progress = tqdm(total=total_steps, initial=state["global_step"], disable=a.no_progress or not main,
                    desc="training")

    def log(message: str) -> None:  # main process only, above the progress bar, flushed (logs go to files)
        if main:
            progress.write(message)
            sys.stdout.flush()
    interrupted = early_stop = False
    running = torch.zeros((), device=accelerator.device)
    running_count, start = state.get("running_count", 0), time.time()
    if "running_loss" in state and len(state["running_loss"]) == accelerator.num_processes:
        running += state["running_loss"][accelerator.process_index]
    model.train()
    job.stop.install()
    try:
        while state["global_step"] < total_steps and not (interrupted or early_stop):
            train_dl.set_epoch(state["epoch"])
            for i, batch in enumerate(train_dl):
                if i < state["batches_done"]:  # resuming inside an epoch: these batches were trained on
                    continue
                with accelerator.accumulate(model):
                    loss = model(**batch).loss
                    accelerator.backward(loss)
                    if accelerator.sync_gradients and a.max_grad_norm:
                        accelerator.clip_grad_norm_(model.parameters(), a.max_grad_norm)
                    optimizer.step()
                    optimizer.zero_grad()
                state["batches_done"] = i + 1
                running += loss.detach().float() / a.grad_accum
                if not accelerator.sync_gradients:
                    continue
                scheduler.step()
                state["global_step"] += 1
                running_count += 1
                progress.update(1)
                step = state["global_step"]
                if step % a.logging_steps == 0 or step == total_steps:
                    mean_loss = float(accelerator.gather(running[None]).mean()) / running_count
                    state["train_loss_sum"] += mean_loss * running_count
                    running.zero_()
                    running_count = 0
                    entry = {"loss": mean_loss, "learning_rate": scheduler.get_last_lr()[0], "step": step,
                             "epoch": state["epoch"] + (i + 1) / len(train_dl)}
                    state["log_history"].append(entry)
                    log(f"step {step}: loss={mean_loss:.4g} lr={entry['learning_rate']:.3g}")
                if a.eval_steps and step % a.eval_steps == 0:
                    early_stop = evaluate_and_save()
                if step >= total_steps or early_stop:
                    break
                if job.stop.should_stop(step):
                    save_checkpoint()
                    interrupted = True
                    break
            else:  # a whole epoch done
                state["epoch"] += 1
                state["batches_done"] = 0
                if not a.eval_steps:
                    early_stop = evaluate_and_save()
                continue
            if not (interrupted or early_stop) and not a.eval_steps:  # max_steps inside an epoch: final evaluation
                early_stop = evaluate_and_save()
    finally:
        job.stop.uninstall()
        progress.close()

    unwrapped = accelerator.unwrap_model(model)
    if interrupted:
        accelerator.end_training()
        return TrainResult(interrupted=True, global_step=state["global_step"], model=unwrapped, state_dict=None,
                           train_metrics={}, eval_metrics={}, test_metrics={}, log_history=state["log_history"],
                           world_size=accelerator.num_processes)
    if state["best_checkpoint"] and (job.work_dir / state["best_checkpoint"]).is_dir():
        accelerator.load_state(str(job.work_dir / state["best_checkpoint"]))  # the selected model
    eval_metrics = evaluate(job, accelerator, model, eval_dl, "eval")
    test_metrics = evaluate(job, accelerator, model, test_dl, "test")
    if running_count:  # steps after the last logging
        state["train_loss_sum"] += float(accelerator.gather(running[None]).mean())
    train_metrics = {"train_loss": state["train_loss_sum"] / max(state["global_step"], 1),
                     "train_runtime": time.time() - start,
                     "epoch": state["epoch"] + state["batches_done"] / len(train_dl)}
    state_dict = accelerator.get_state_dict(model)  # every process: FSDP/ZeRO-3 gather the full weights
    accelerator.wait_for_everyone()
    accelerator.end_training()
    return TrainResult(interrupted=False, global_step=state["global_step"], model=unwrapped, state_dict=state_dict,
                       train_metrics=train_metrics, eval_metrics=eval_metrics, test_metrics=test_metrics,
                       log_history=state["log_history"], world_size=accelerator.num_processes)
