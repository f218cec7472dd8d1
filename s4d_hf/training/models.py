"""The model a training run starts from: a fresh S4D sized by the flags, ``--model DIR`` (a saved model, checked
against the data) or ``--init-from FOLDER`` (a pretrained backbone under a new head); and the regression head's
target scaling (the model trains on standardised targets, the saved model predicts in the original units)."""

from __future__ import annotations

import dataclasses
import json
import sys
from pathlib import Path

import numpy as np
import torch
from safetensors.torch import load_file
from transformers import set_seed

from s4d_hf.modeling import S4DConfig, S4DForCausalLM, S4DForSequenceClassification

from .data.core import BYTE_VOCAB_SIZE, CLASSIFICATION_TASKS, DatasetSplits, map_examples


# defaults of the model-size flags (when no --model is given)
MODEL_DEFAULTS = dict(d_model=64, n_layers=4, d_state=64, init="legs", disc="zoh", bidirectional=False,
                      prenorm=False, norm="layer", dropout=0.0, pooling="mean")


# size flags that describe the backbone (must agree with an --init-from folder when given)
BACKBONE_FLAGS = ("d_model", "n_layers", "d_state", "init", "disc", "bidirectional", "prenorm", "norm")


def build_model(args, task: str, splits: DatasetSplits):
    """A fresh S4D model sized by the flags, or ``--model DIR`` checked against the data (input kind, input_dim,
    labels) before any training."""
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
        return model_from_backbone(args, task, splits, head, labels)
    size = {k: getattr(args, k) for k in MODEL_DEFAULTS}
    if args.model is None:
        inputs = dict(vocab_size=BYTE_VOCAB_SIZE, pad_token_id=0, eos_token_id=1) if task == "causal-lm" \
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
        if config.vocab_size != BYTE_VOCAB_SIZE:
            raise ValueError(f"--model {args.model}: vocab_size={config.vocab_size}, but causal-lm data uses ByT5 ids "
                             f"(vocab_size {BYTE_VOCAB_SIZE})")
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


def read_backbone(folder) -> tuple[dict, dict]:
    """(config dict, backbone state dict with keys as in S4DModel) of a saved S4D folder (S4DModel or any head)."""
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
        if saved.get("vocab_size") != BYTE_VOCAB_SIZE:
            raise ValueError(f"--init-from {folder}: vocab_size={saved.get('vocab_size')}, input_dim="
                             f"{saved.get('input_dim')}; causal-lm data uses ByT5 ids (vocab_size {BYTE_VOCAB_SIZE})")
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


def standardize_targets(splits: DatasetSplits) -> tuple[DatasetSplits, np.ndarray, np.ndarray]:
    """Regression: train on (y - mean) / std with train-split statistics; :func:`fold_target_scale` puts the scale
    back into the classifier before saving, so the saved model predicts in the original units."""
    y = np.asarray([np.ravel(ex["labels"]) for ex in splits.train], dtype=np.float64)  # (N, T)
    mean, std = y.mean(0), y.std(0)
    std = np.where(std < 1e-12, 1.0, std)

    scale = _TargetScale(mean, std)
    return dataclasses.replace(splits, train=map_examples(splits.train, scale), eval=map_examples(splits.eval, scale),
                               test=map_examples(splits.test, scale)), mean, std


class _TargetScale:
    """One example with its regression labels standardised (a picklable callable for lazy splits)."""

    def __init__(self, mean: np.ndarray, std: np.ndarray):
        self.mean, self.std = mean, std

    def __call__(self, ex: dict) -> dict:
        z = (np.asarray(ex["labels"], dtype=np.float64).reshape(-1) - self.mean) / self.std
        return {**ex, "labels": float(z[0]) if np.ndim(ex["labels"]) == 0 else z.astype(np.float32)}


def fold_target_scale(W, b, mean: np.ndarray, std: np.ndarray, inverse: bool = False) -> None:
    """The classifier's weight W (T, H) and bias b (T,), in place: y = std * (W h + b) + mean  ->  W' = std W,
    b' = std b + mean (``inverse`` undoes it)."""
    s = torch.as_tensor(std, dtype=W.dtype, device=W.device)
    m = torch.as_tensor(mean, dtype=W.dtype, device=W.device)
    with torch.no_grad():
        if inverse:
            W.div_(s[:, None])
            b.sub_(m).div_(s)
        else:
            W.mul_(s[:, None])
            b.mul_(s).add_(m)
