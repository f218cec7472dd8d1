"""Self-pretraining (SPT): the pretraining model, its collator, metrics and task object, and the backbone folder.

Amos, Berant, Gupta, "Never Train from Scratch: Fair Comparison of Long-Sequence Models Requires Data-Driven
Priors" (ICLR 2024): pretrain on the downstream task's own inputs (labels ignored), then fine-tune. Objectives:

* ``causal`` (unidirectional models): predict input t+1 from inputs <= t. Tokens: cross-entropy; continuous
  inputs (normalised as the saved processor does): L2 (default) or L1 regression of the next frame;
* ``masked`` (bidirectional models; ``auto`` picks it for them): a fraction of the valid positions is replaced by 0
  (continuous; 0 is the train mean after normalisation) or by ``<unk>`` (tokens), and the model predicts the
  original inputs there. ``attention_mask`` stays the padding mask.

``s4d-hf train --task self-pretraining --dataset SPEC`` writes a Hub-ready BACKBONE folder (an ``S4DModel``:
config.json + model.safetensors, the processor a fine-tuning run on the same SPEC saves, README.md and the run's
numbers), loadable with ``AutoModel``. ``s4d-hf train --task TASK --init-from FOLDER`` builds a fresh task model from
that folder's config (labels from the data) and loads every matching backbone weight
(:func:`s4d_hf.training.models.model_from_backbone`).
"""

from __future__ import annotations

import dataclasses
from pathlib import Path

import numpy as np
import torch
from torch import nn
from transformers import set_seed

from s4d_hf.modeling.configuration_s4d import S4DConfig
from s4d_hf.modeling.modeling_s4d import S4DCausalLMOutput, S4DModel, S4DPreTrainedModel

from ..hub.cards import write_model_card
from .collate import S4DDataCollator
from .data.builtin import BUILTIN_TASKS
from .data.core import BYTE_VOCAB_SIZE, EOS_ID, PAD_ID, UNK_ID
from .folders import staged_output_folder
from .models import MODEL_DEFAULTS
from .output import run_arguments, run_card_info, save_processor, split_metrics, write_json

UNK_TOKEN_ID = UNK_ID  # masked tokens become <unk>


# ----------------------------------------------------------------------------------------------------------------
# The pretraining model
# ----------------------------------------------------------------------------------------------------------------

class S4DForSelfPretraining(S4DPreTrainedModel):
    """S4D backbone + a linear head predicting inputs: ``vocab_size`` logits (tokens) or ``input_dim`` values.

    Training-time only: the output folder holds ``self.s4d`` (an S4DModel); the head is discarded.
    ``labels``: the uncorrupted inputs, (B, L) token ids with -100 at padding or (B, L, C) values.
    """

    def __init__(self, config, objective: str = "causal", mask_ratio: float = 0.15, loss: str = "l2"):
        super().__init__(config)
        self.s4d = S4DModel(config)
        self.head = nn.Linear(config.d_model, config.vocab_size or config.input_dim)
        self.objective, self.mask_ratio, self.loss_type = objective, mask_ratio, loss
        self.post_init()

    def _mask(self, valid: torch.Tensor) -> torch.Tensor:
        """(B, L) bool: masked positions, a ``mask_ratio`` fraction of the valid ones (at least one). Evaluation uses
        a fixed generator, so eval losses of different steps and runs are comparable."""
        generator = None
        if not self.training:
            generator = torch.Generator(device=valid.device).manual_seed(0)
        u = torch.rand(valid.shape, generator=generator, device=valid.device)
        mask = (u < self.mask_ratio) & valid
        if not mask.any():  # a tiny batch: mask its first valid position
            mask.view(-1)[valid.view(-1).nonzero()[0]] = True
        return mask

    def forward(self, input_ids=None, input_values=None, attention_mask=None, labels=None, **kwargs):
        tokens = input_ids is not None
        x = input_ids if tokens else input_values
        if input_values is not None and input_values.dim() == 2:
            x = x[..., None]
        target = x if labels is None else labels
        valid = torch.ones(x.shape[:2], dtype=torch.bool, device=x.device) if attention_mask is None \
            else attention_mask.bool()
        if tokens:
            valid = valid & (target != -100)
        key = "input_ids" if tokens else "input_values"
        if self.objective == "masked":
            where = self._mask(valid)
            corrupted = x.masked_fill(where, UNK_TOKEN_ID) if tokens else x * (~where)[..., None]
            hidden = self.s4d(**{key: corrupted}, attention_mask=attention_mask).last_hidden_state
            prediction, select = self.head(hidden), where
        else:  # causal: position t predicts the input at t + 1
            hidden = self.s4d(**{key: x}, attention_mask=attention_mask).last_hidden_state
            prediction = self.head(hidden)[:, :-1]
            target, select = target[:, 1:], valid[:, 1:] & valid[:, :-1]
        if tokens:
            loss = nn.functional.cross_entropy(prediction[select].float(), target[select])
        else:
            error = prediction[select].float() - target[select].float()
            loss = error.abs().mean() if self.loss_type == "l1" else error.pow(2).mean()
        return S4DCausalLMOutput(loss=loss, logits=prediction)


@dataclasses.dataclass
class SPTCollator:
    """The task's collator without the dataset labels; ``labels`` = the uncorrupted inputs."""

    data_task: str

    def __call__(self, examples):
        key = "input_ids" if self.data_task == "causal-lm" else "input_values"
        batch = S4DDataCollator(self.data_task, pad_token_id=0)([{key: ex[key]} for ex in examples])
        if self.data_task != "causal-lm":
            batch["labels"] = batch["input_values"].clone()
        return batch


class SPTMetrics:
    """The eval loss selects the checkpoint; no other metric."""

    best, greater_is_better, from_token_loss = "loss", False, False

    def for_trainer(self):
        return None

    def from_loss(self, loss):
        return {}


# ----------------------------------------------------------------------------------------------------------------
# Preparation and output of a self-pretraining run
# ----------------------------------------------------------------------------------------------------------------

def data_task_of(args) -> str:
    """The downstream task whose data format ``--dataset`` is read in: ``--data-task``, else the built-in dataset's
    own task, ``causal-lm`` for a .txt file, ``time-series-regression`` for an .npz with float targets,
    ``time-series-classification`` for other .npz/.csv files; folders need the flag."""
    if getattr(args, "data_task", None):
        return args.data_task
    if args.dataset in BUILTIN_TASKS:
        return BUILTIN_TASKS[args.dataset]
    suffix = Path(args.dataset).suffix.lower()
    if suffix == ".txt":
        return "causal-lm"
    if suffix == ".npz" and Path(args.dataset).is_file():
        with np.load(args.dataset, allow_pickle=False) as f:
            if "y" in f.files and f["y"].dtype.kind == "f" and not np.all(f["y"] == np.round(f["y"])):
                return "time-series-regression"
    if suffix in (".npz", ".csv"):
        return "time-series-classification"
    raise ValueError(f"--task self-pretraining: cannot tell the input kind of --dataset {args.dataset}; pass "
                     "--data-task audio-classification or --data-task image-classification")


class SelfPretraining:
    """``--task self-pretraining``: the task object (see :mod:`s4d_hf.training.tasks`) of a pretraining run on the
    inputs of ``--dataset`` (read in the format of :func:`data_task_of`); it writes a backbone folder."""

    name = "self-pretraining"

    def check_args(self, args) -> None:
        if args.backend != "trainer":
            raise ValueError(f"--task self-pretraining runs on --backend trainer; got --backend {args.backend}")
        for flag in ("model", "init_from"):
            if getattr(args, flag, None):
                raise ValueError(f"--{flag.replace('_', '-')} cannot be combined with --task self-pretraining (it "
                                 "starts a fresh backbone)")
        if not 0 < args.spt_mask_ratio < 1:
            raise ValueError(f"--spt-mask-ratio must be in (0, 1); got {args.spt_mask_ratio}")

    def data_task(self, args) -> str:
        args.data_task = data_task_of(args)  # recorded in training_args.json
        return args.data_task

    def prepare_targets(self, splits):
        return splits, None, None  # labels are ignored

    def build_model(self, args, raw, target_mean, target_std):
        size = {k: MODEL_DEFAULTS[k] if getattr(args, k) is None else getattr(args, k) for k in MODEL_DEFAULTS}
        inputs = dict(vocab_size=BYTE_VOCAB_SIZE, pad_token_id=PAD_ID, eos_token_id=EOS_ID) \
            if args.data_task == "causal-lm" else dict(input_dim=raw.input_dim)
        optim = {} if args.ssm_lr is None else {"ssm_lr": args.ssm_lr}
        config = S4DConfig(**inputs, **size, **optim)
        objective = args.spt_objective
        if objective == "auto":
            objective = "masked" if config.bidirectional else "causal"
        if objective == "causal" and config.bidirectional:
            raise ValueError("--spt-objective causal cannot train a --bidirectional model (it would see the next "
                             "input); use --spt-objective masked")
        set_seed(args.seed)
        model = S4DForSelfPretraining(config, objective=objective, mask_ratio=args.spt_mask_ratio, loss=args.spt_loss)
        args.spt_objective = objective  # recorded in training_args.json
        return model

    def collator(self, data_task: str):
        return SPTCollator(data_task)

    def metrics(self, model, target_mean, target_std):
        return SPTMetrics()

    def write_output(self, job, result) -> Path:
        return write_backbone_output(job, result)


def write_backbone_output(job, result) -> Path:
    """The Hub-ready backbone folder: S4DModel weights + config, the processor, README.md, all_results.json,
    log_history.json, training_args.json; assembled in a temporary sibling and renamed into place."""
    out, data_task = job.output_dir, job.args.data_task
    with staged_output_folder(out) as tmp:
        backbone = result.model.s4d
        backbone.config.use_cache = True
        state_dict = {k[len("s4d."):]: v for k, v in result.state_dict.items() if k.startswith("s4d.")}
        n_parameters = sum(v.numel() for v in state_dict.values())
        backbone.save_pretrained(str(tmp), state_dict=state_dict)
        save_processor(tmp, data_task, job.splits, job.norm_stats)
        results = {**result.train_metrics, **result.eval_metrics, **result.test_metrics,
                   "global_step": result.global_step, "num_parameters": n_parameters,
                   "spt_objective": job.args.spt_objective, "data_task": data_task}
        write_json(tmp / "all_results.json", results)
        write_json(tmp / "log_history.json", result.log_history)
        write_json(tmp / "training_args.json", run_arguments(job))
        write_model_card(tmp, backbone_card_info(job, result, backbone.config, n_parameters))
    return out


def backbone_card_info(job, result, config, n_parameters: int) -> dict:
    """The card ``info`` of a self-pretrained backbone: no task metric (no model-index), its losses, and the
    command that fine-tunes it."""
    args, data_task = job.args, job.args.data_task
    loss = "cross-entropy" if data_task == "causal-lm" else f"{args.spt_loss.upper()} on normalised inputs"
    splits = (("eval", result.eval_metrics), ("test", result.test_metrics))
    losses = {f"{split} loss": value for split, metrics in splits
              if (value := split_metrics(metrics, split).get("loss")) is not None}
    info = run_card_info(job, result, config, n_parameters, job.command)
    info["limitations"] = ["A backbone without a task head: fine-tune it (`--init-from`) before use.",
                           *info["limitations"]]
    return {
        **info, "task": "feature-extraction", "metrics": None, "baseline": None,
        "self_pretraining": {"objective": args.spt_objective, "loss": loss,
                             "fine_tune_command": f"s4d-hf train --task {data_task} --dataset {args.dataset} "
                                                 f"--init-from {job.output_dir.name} ..."},
        "extra_results": [{"name": "self-pretraining objective", "description": loss, "metrics": losses}]
        if losses else [],
    }
