"""The Trainer backend: :class:`s4d_hf.trainer.S4DTrainer` (transformers' Trainer with S4D's optimizer groups).

Trainer brings the rest: warmup + cosine schedule, evaluation and a checkpoint each epoch (or every
``--eval-steps``), best-checkpoint selection, early stopping, resume (model, optimizer, scheduler, RNG and data
position), DDP under ``accelerate launch`` / ``torchrun``, bf16/fp16 autocast (the SSM kernel computes in float32
whatever the autocast dtype) and progress bars.
"""

from __future__ import annotations

import math

import torch
from transformers import EarlyStoppingCallback, TrainerCallback, TrainingArguments

from s4d_hf.trainer import S4DTrainer

from .job import TrainingJob, TrainResult, no_accelerator


class GracefulStopCallback(TrainerCallback):
    """On SIGINT/SIGTERM: save a checkpoint after the current step and stop, doing nothing an uninterrupted run would
    not do (no extra evaluation), so that ``--resume`` continues exactly where the run stopped."""

    def __init__(self, stop):
        self.stop = stop
        self.acted = False

    def on_step_end(self, args, state, control, **kwargs):
        if state.global_step < state.max_steps and self.stop.should_stop(state.global_step):
            self.acted = True
            control.should_save = True
            control.should_training_stop = True
        return control

    def on_epoch_end(self, args, state, control, **kwargs):
        epoch_complete = abs(state.epoch - round(state.epoch)) < 1e-6
        if self.acted and not epoch_complete:  # stopped mid-epoch: the epoch-end evaluation is not due yet
            control.should_evaluate = False
            control.should_save = False
        return control


def training_arguments(job: TrainingJob) -> TrainingArguments:
    a = job.args
    strategy = "steps" if a.eval_steps else "epoch"
    return TrainingArguments(
        output_dir=str(job.work_dir),
        per_device_train_batch_size=a.batch_size,
        per_device_eval_batch_size=a.eval_batch_size or a.batch_size,
        gradient_accumulation_steps=a.grad_accum,
        learning_rate=a.lr,
        weight_decay=a.weight_decay,
        lr_scheduler_type="cosine",
        warmup_steps=a.warmup,
        max_grad_norm=a.max_grad_norm,
        max_steps=a.max_steps if a.max_steps else -1,
        num_train_epochs=a.epochs if a.epochs else 10.0,
        eval_strategy=strategy,
        eval_steps=a.eval_steps,
        save_strategy=strategy,
        save_steps=a.eval_steps,
        save_total_limit=2,  # the best and the latest
        load_best_model_at_end=True,
        metric_for_best_model=job.metrics.best,
        greater_is_better=job.metrics.greater_is_better,
        restore_callback_states_from_checkpoint=True,  # early-stopping patience survives --resume
        logging_steps=a.logging_steps,
        seed=a.seed,
        data_seed=a.seed,
        bf16=a.mixed_precision == "bf16",
        fp16=a.mixed_precision == "fp16",
        report_to="none",
        disable_tqdm=a.no_progress,
        remove_unused_columns=False,
        ddp_find_unused_parameters=False,
        dataloader_num_workers=0,
        use_cpu=no_accelerator(),
        dataloader_pin_memory=torch.cuda.is_available(),
    )


def train(job: TrainingJob) -> TrainResult:
    args = training_arguments(job)
    stop_callback = GracefulStopCallback(job.stop)
    callbacks = [stop_callback]
    if job.args.patience:
        callbacks.append(EarlyStoppingCallback(early_stopping_patience=job.args.patience))
    trainer = S4DTrainer(
        model=job.model, args=args, train_dataset=job.splits.train, eval_dataset=job.splits.eval,
        data_collator=job.collator, compute_metrics=job.metrics.for_trainer(), callbacks=callbacks,
    )
    if trainer.is_world_process_zero():
        print(f"s4d-hf train: backend=trainer world_size={args.world_size} task={job.task} "
              f"train/eval/test={len(job.splits.train)}/{len(job.splits.eval)}/{len(job.splits.test)} "
              f"parameters={sum(p.numel() for p in job.model.parameters()):,}"
              + (f" resume_from={job.resume_from.name}" if job.resume_from else ""), flush=True)
    job.stop.install()
    try:
        output = trainer.train(resume_from_checkpoint=str(job.resume_from) if job.resume_from else None)
    finally:
        job.stop.uninstall()
    history = list(trainer.state.log_history)
    if stop_callback.acted:
        return TrainResult(interrupted=True, global_step=trainer.state.global_step, model=trainer.model,
                           state_dict=None, train_metrics={}, eval_metrics={}, test_metrics={}, log_history=history,
                           world_size=args.world_size)
    eval_metrics = trainer.evaluate()
    test_metrics = trainer.evaluate(job.splits.test, metric_key_prefix="test")
    for metrics, prefix in ((eval_metrics, "eval"), (test_metrics, "test")):
        metrics.update({f"{prefix}_{k}": v for k, v in job.metrics.from_loss(metrics[f"{prefix}_loss"]).items()})
        for k in [k for k in metrics if k.endswith(("_runtime", "_per_second"))]:
            metrics.pop(k)
    train_metrics = {k: v for k, v in output.metrics.items() if not (isinstance(v, float) and math.isnan(v))}
    state_dict = trainer.accelerator.get_state_dict(trainer.model_wrapped)  # every process: FSDP/ZeRO-3 gather
    return TrainResult(interrupted=False, global_step=trainer.state.global_step, model=trainer.model,
                       state_dict=state_dict, train_metrics=train_metrics, eval_metrics=eval_metrics,
                       test_metrics=test_metrics, log_history=history, world_size=args.world_size)
