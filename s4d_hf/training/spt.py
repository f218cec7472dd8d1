"""Self-pretraining (SPT) and fine-tuning from a pretrained backbone (``--init-from``).

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
that folder's config (labels from the data) and loads every matching backbone weight.
"""

from __future__ import annotations

import dataclasses
import json
import sys
from pathlib import Path

import numpy as np
import torch
from torch import nn

from s4d_hf.modeling.modeling_s4d import S4DCausalLMOutput, S4DModel, S4DPreTrainedModel

from .collate import S4DDataCollator
from .data import BYT5_VOCAB_SIZE, check_splits, data_seed, load_dataset_spec, normalize_splits
from .output import run_arguments, staged_folder


UNK_TOKEN_ID = 2  # ByT5: 0 <pad>, 1 </s>, 2 <unk>; masked tokens become <unk>
# size flags that describe the backbone (must agree with an --init-from folder when given)
BACKBONE_FLAGS = ("d_model", "n_layers", "d_state", "init", "disc", "bidirectional", "prenorm", "norm")


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

    best, greater_is_better = "loss", False

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
    from .data import builtin_datasets

    if args.dataset in builtin_datasets():
        from .datasets import BUILTIN_TASKS

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


def prepare_spt_job(args, is_main: bool = True, command: str = ""):
    """The self-pretraining counterpart of :func:`s4d_hf.training.job.prepare_job` (every check before training)."""
    from s4d_hf import S4DConfig

    from .job import MODEL_DEFAULTS, GracefulStop, TrainingJob, resolve_folders

    if args.backend != "trainer":
        raise ValueError(f"--task self-pretraining runs on --backend trainer; got --backend {args.backend}")
    for flag in ("model", "init_from"):
        if getattr(args, flag, None):
            raise ValueError(f"--{flag.replace('_', '-')} cannot be combined with --task self-pretraining (it starts a "
                             "fresh backbone)")
    if args.max_steps is not None and args.max_steps < 1:
        raise ValueError(f"--max-steps must be a positive integer; got {args.max_steps}")
    if args.epochs is not None and not args.epochs > 0:
        raise ValueError(f"--epochs must be positive; got {args.epochs}")
    ratio = args.spt_mask_ratio
    if not 0 < ratio < 1:
        raise ValueError(f"--spt-mask-ratio must be in (0, 1); got {ratio}")
    data_task = data_task_of(args)
    output_dir, work_dir, resume_from = resolve_folders(args, is_main)
    raw = load_dataset_spec(args.dataset, data_task, seed=data_seed(args), block_size=args.block_size,
                            image_size=args.image_size, builtin_options=args.dataset_option)
    check_splits(data_task, raw)
    splits, stats = normalize_splits(data_task, raw)

    size = {k: MODEL_DEFAULTS[k] if getattr(args, k) is None else getattr(args, k) for k in MODEL_DEFAULTS}
    inputs = dict(vocab_size=BYT5_VOCAB_SIZE, pad_token_id=0, eos_token_id=1) if data_task == "causal-lm" \
        else dict(input_dim=splits.input_dim)
    optim = {} if args.ssm_lr is None else {"ssm_lr": args.ssm_lr}
    config = S4DConfig(**inputs, **size, **optim)
    objective = args.spt_objective
    if objective == "auto":
        objective = "masked" if config.bidirectional else "causal"
    if objective == "causal" and config.bidirectional:
        raise ValueError("--spt-objective causal cannot train a --bidirectional model (it would see the next input); "
                         "use --spt-objective masked")
    from transformers import set_seed

    set_seed(args.seed)
    model = S4DForSelfPretraining(config, objective=objective, mask_ratio=ratio, loss=args.spt_loss)
    args.data_task, args.spt_objective = data_task, objective  # recorded in training_args.json
    return TrainingJob(
        task="self-pretraining", args=args, splits=splits, norm_stats=stats, model=model,
        collator=SPTCollator(data_task), metrics=SPTMetrics(), output_dir=output_dir, work_dir=work_dir,
        resume_from=resume_from, command=command, stop=GracefulStop(args.interrupt_after_steps),
    )


def write_backbone_output(job, result) -> Path:
    """The Hub-ready backbone folder: S4DModel weights + config, the processor, README.md, all_results.json,
    log_history.json, training_args.json; assembled in a temporary sibling and renamed into place."""
    from huggingface_hub import ModelCard, ModelCardData

    from .output import _json, save_processor

    out, data_task = job.output_dir, job.args.data_task
    with staged_folder(out) as tmp:
        backbone = result.model.s4d
        backbone.config.use_cache = True
        state_dict = {k[len("s4d."):]: v for k, v in result.state_dict.items() if k.startswith("s4d.")}
        n_parameters = sum(v.numel() for v in state_dict.values())
        backbone.save_pretrained(str(tmp), state_dict=state_dict)
        save_processor(tmp, data_task, job.splits, job.norm_stats)
        results = {**result.train_metrics, **result.eval_metrics, **result.test_metrics,
                   "global_step": result.global_step, "num_parameters": n_parameters,
                   "spt_objective": job.args.spt_objective, "data_task": data_task}
        _json(tmp / "all_results.json", results)
        _json(tmp / "log_history.json", result.log_history)
        _json(tmp / "training_args.json", run_arguments(job))
        c = backbone.config
        loss = "cross-entropy" if data_task == "causal-lm" else f"{job.args.spt_loss.upper()} on normalised inputs"
        name = out.name
        body = f"""
# {name}

A self-pretrained [S4D](https://arxiv.org/abs/2206.11893) backbone (`S4DModel`; d_model={c.d_model},
n_layers={c.n_layers}, d_state={c.d_state}, init={c.init}, bidirectional={c.bidirectional}; {n_parameters:,}
parameters): {job.args.spt_objective} objective ({loss}) on the inputs of `{job.args.dataset}` (labels ignored;
Amos, Berant, Gupta 2024), {result.global_step} optimizer steps. Eval loss {result.eval_metrics.get('eval_loss', float('nan')):.4g},
test loss {result.test_metrics.get('test_loss', float('nan')):.4g}.

Fine-tune it with `s4d-hf train --task {data_task} --dataset {job.args.dataset} --init-from {name} ...`.

## Reproduce

```bash
{job.command}
```
"""
        data = ModelCardData(library_name="transformers", pipeline_tag="feature-extraction", license="apache-2.0",
                             tags=["s4d", "state-space-model", "self-pretraining"], model_name=name)
        ModelCard(f"---\n{data.to_yaml()}\n---\n{body}").save(str(tmp / "README.md"))
    return out


# ----------------------------------------------------------------------------------------------------------------
# Fine-tuning from a backbone: --init-from FOLDER
# ----------------------------------------------------------------------------------------------------------------

def read_backbone(folder) -> tuple[dict, dict]:
    """(config dict, backbone state dict with keys as in S4DModel) of a saved S4D folder (S4DModel or any head)."""
    from safetensors.torch import load_file

    path = Path(folder)
    if not path.is_dir():
        raise ValueError(f"--init-from {folder}: no such folder")
    config_file = path / "config.json"
    if not config_file.is_file():
        raise ValueError(f"--init-from {folder}: not a saved model folder (no config.json)")
    config = json.loads(config_file.read_text())
    if config.get("model_type") != "s4d":
        raise ValueError(f"--init-from {folder}: not an S4D model (model_type={config.get('model_type')!r}, "
                         "expected 's4d')")
    weights = path / "model.safetensors"
    if not weights.is_file():
        raise ValueError(f"--init-from {folder}: no model.safetensors (only safetensors weights are read)")
    state = load_file(str(weights))
    prefixed = any(k.startswith("s4d.") for k in state)
    backbone = {k[len("s4d."):]: v for k, v in state.items() if k.startswith("s4d.")} if prefixed else state
    return config, backbone


def model_from_backbone(args, task: str, splits, head_class, labels: dict):
    """A fresh ``head_class`` model built from ``--init-from``'s config (labels from the data; --dropout, --pooling,
    --ssm-lr may change) with every backbone weight of matching name and shape loaded; prints what was loaded and
    what was newly initialised."""
    from transformers import set_seed

    from s4d_hf import S4DConfig

    folder = args.init_from
    if getattr(args, "model", None):
        raise ValueError("--init-from and --model are exclusive: --model continues a full saved model, --init-from "
                         "starts a new task model from a backbone")
    saved, backbone = read_backbone(folder)
    for k in BACKBONE_FLAGS:
        value = getattr(args, k, None)
        if value is not None and value != saved.get(k):
            raise ValueError(f"--{k.replace('_', '-')} {value} does not match --init-from {folder}, which has "
                             f"{k}={saved.get(k)!r} (the architecture comes from the backbone; drop the flag)")
    if task == "causal-lm":
        if saved.get("vocab_size") != BYT5_VOCAB_SIZE:
            raise ValueError(f"--init-from {folder}: vocab_size={saved.get('vocab_size')}, input_dim="
                             f"{saved.get('input_dim')}; causal-lm data uses ByT5 ids (vocab_size {BYT5_VOCAB_SIZE})")
        if saved.get("bidirectional"):
            raise ValueError(f"--init-from {folder}: a bidirectional backbone cannot train a causal language model")
    elif saved.get("input_dim") != splits.input_dim:
        raise ValueError(f"input_dim mismatch: --init-from {folder} takes input_dim={saved.get('input_dim')} "
                         f"(vocab_size={saved.get('vocab_size')}), the dataset has input_dim={splits.input_dim}")
    overrides = dict(labels)
    for k in ("dropout", "pooling"):
        if getattr(args, k, None) is not None:
            overrides[k] = getattr(args, k)
    if args.ssm_lr is not None:
        overrides["ssm_lr"] = args.ssm_lr
    config = S4DConfig.from_pretrained(folder, **overrides)
    config.architectures = None
    set_seed(args.seed)
    model = head_class(config)
    target = model.s4d.state_dict()
    loaded, skipped = [], []
    with torch.no_grad():
        for name, tensor in backbone.items():
            if name in target and tuple(target[name].shape) == tuple(tensor.shape):
                target[name].copy_(tensor.to(target[name].dtype))
                loaded.append("s4d." + name)
            else:
                skipped.append(name)
    if not loaded:
        raise ValueError(f"--init-from {folder}: none of its weights match the model (different architecture?)")
    new = [k for k in model.state_dict() if k not in loaded and not (k == "lm_head.weight" and config.tie_word_embeddings)]
    print(f"--init-from {folder}: loaded {len(loaded)} backbone tensors; newly initialised: {', '.join(new) or 'none'}"
          + (f"; not used: {', '.join(skipped)}" if skipped else ""), file=sys.stderr, flush=True)
    return model
