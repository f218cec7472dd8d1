"""A same-size Transformer trained with the same budget on the same data as an ``s4d-hf train`` run: what
``s4d-hf baseline FOLDER`` runs (:mod:`s4d_hf.cli.baseline`), written to ``FOLDER/transformer_baseline.json``, which
``s4d-hf release`` puts in the card next to S4D and the classic baseline.

The comparison, kept fair on every axis the run folder records:

* **Data**: the run's splits re-made from ``training_args.json`` exactly as ``s4d-hf evaluate`` / ``release`` do
  (:func:`s4d_hf.hub.evaluation.run_splits`), normalised as the S4D model saw them (:func:`normalize_splits`: the
  train split's statistics, which the folder's saved processor holds; a processor that disagrees is refused) and,
  for regression, trained on standardised targets as S4D is. The inputs are the same raw units: waveform samples,
  pixels, series steps or byte ids, one token per step.
* **Model**: built from transformers' own classes. Classification / regression: a linear input projection into
  ``inputs_embeds`` of a ``BertModel`` encoder (bidirectional SDPA attention, learned absolute positions, post-norm,
  GELU, FFN ~4x), mean-pooled over the valid positions, then a linear head (cross-entropy, or MSE on standardised
  targets). Causal LM: ``LlamaForCausalLM`` (RoPE, SwiGLU, RMSNorm, SDPA causal attention, tied embeddings) over
  the same ByT5 byte ids. Same depth as the S4D model and :data:`HEADS` heads; the width is chosen so the
  **non-embedding** parameter count (everything but the input projection / token embedding and position embeddings,
  :func:`non_embedding_parameters`) matches S4D's, then the FFN width (between 2x and 6x) closes the gap: see
  :func:`size_transformer`. Dropout: the run's ``--dropout``.
* **Budget**: the run's batch size, gradient accumulation and number of optimizer steps (``global_step`` in
  all_results.json), AdamW with linear warmup (the run's ``--warmup``) then cosine decay to 0, the run's weight decay
  (not on biases and norms) and gradient clipping, the run's seed. Model selection as the run did it: the eval split
  after every epoch (or every ``--eval-steps``) and at the end, keeping the best by the run's metric (accuracy, rmse,
  or eval loss for the LM).
* **Learning rate**: :data:`DEFAULT_LR` = 1e-3 unless ``--lr``. S4D's runs use 5e-3..1e-2, which is S4D's recipe,
  not attention's; 1e-3 with warmup + cosine is the usual rate for Transformers of this size (a few hundred
  thousand to a few million parameters, e.g. nanoGPT's character-level Shakespeare model). It is not tuned per
  dataset (that would spend more than S4D's budget); ``--lr`` changes it, and the JSON records it.
* **Evaluation**: the same test split and the same metric code as the card's S4D numbers
  (:class:`~s4d_hf.training.task_metrics.TaskMetrics`, as :func:`s4d_hf.hub.evaluation.scores` uses it; for the LM the
  mean next-byte cross-entropy over the test windows, as ``s4d-hf evaluate`` computes it).
* **Cost**: training wall time (the optimizer steps and the eval-split evaluations, as the Trainer's
  ``train_runtime`` of the S4D run) and peak memory (:class:`~s4d_hf.training.job.PeakMemory`, measured the same way
  as ``s4d-hf train`` records it), the device and its name.

The Transformer's weights are not saved: the JSON holds its numbers, configuration and the exact command.
"""

from __future__ import annotations

import json
import math
import platform
import time
from pathlib import Path

import numpy as np
import torch
import transformers
from torch import nn
from transformers import BertConfig, BertModel, LlamaConfig, LlamaForCausalLM
from transformers.modeling_outputs import SequenceClassifierOutput

from s4d_hf.hub.evaluation import BATCH, note, run_splits

from .collate import S4DDataCollator
from .data.core import CLASSIFICATION_TASKS, PAD_ID, normalize_splits, take
from .job import PeakMemory
from .models import MODEL_DEFAULTS, standardize_targets
from .task_metrics import TaskMetrics

DEFAULT_LR = 1e-3
HEADS = 4  # attention heads; the width is a multiple of 2 * HEADS (an even head size, as RoPE needs)
FFN_RATIO = 4  # the FFN width of the Transformer recipes (BERT: 4x; Llama: 2/3 of 4x, over three matrices)
FFN_RANGE = (2, 6)  # how far the FFN width may move from FFN_RATIO to match the parameter count
PARAMETER_BAND = 0.25  # the Transformer's non-embedding count is within ±25% of S4D's (else: an error)
TASKS = (*CLASSIFICATION_TASKS, "time-series-regression", "causal-lm")
OUTPUT_NAME = "transformer_baseline.json"
# Parameter name parts that are embeddings: the input projection / token embedding and the position embeddings.
EMBEDDING_PARTS = ("input_proj.", "embeddings.", "embed_tokens.")


def non_embedding_parameters(model: nn.Module) -> int:
    """Parameters outside the input projection / token embedding and position embeddings (a tied LM head is the
    token embedding: counted once, as an embedding). The same rule for S4D and the Transformer."""
    return sum(p.numel() for name, p in model.named_parameters() if not any(part in name for part in EMBEDDING_PARTS))


class TransformerEncoderClassifier(nn.Module):
    """Linear input projection -> ``BertModel`` (``inputs_embeds``) -> mean over the valid positions -> linear head.
    Called like S4D's sequence classifier: ``model(input_values=(B, L, C), attention_mask=(B, L)).logits``."""

    def __init__(self, config: BertConfig, input_dim: int, num_labels: int):
        super().__init__()
        self.input_proj = nn.Linear(input_dim, config.hidden_size)
        self.encoder = BertModel(config, add_pooling_layer=False)
        self.classifier = nn.Linear(config.hidden_size, num_labels)

    def forward(self, input_values, attention_mask=None):
        if attention_mask is None:
            attention_mask = torch.ones(input_values.shape[:2], dtype=torch.long, device=input_values.device)
        hidden = self.encoder(inputs_embeds=self.input_proj(input_values), attention_mask=attention_mask)[0]
        weights = attention_mask.unsqueeze(-1).to(hidden.dtype)
        pooled = (hidden * weights).sum(1) / weights.sum(1).clamp(min=1.0)
        return SequenceClassifierOutput(logits=self.classifier(pooled))


def build_transformer(task: str, hidden: int, intermediate: int, n_layers: int, *, input_dim: int | None = None,
                      num_labels: int | None = None, vocab_size: int | None = None, max_length: int = 512,
                      dropout: float = 0.0) -> nn.Module:
    """The baseline model of ``task`` (see the module docstring) with this width, FFN width and depth."""
    if task == "causal-lm":
        config = LlamaConfig(vocab_size=vocab_size, hidden_size=hidden, intermediate_size=intermediate,
                             num_hidden_layers=n_layers, num_attention_heads=HEADS, num_key_value_heads=HEADS,
                             max_position_embeddings=max_length, tie_word_embeddings=True, attention_dropout=dropout,
                             pad_token_id=PAD_ID, bos_token_id=None, eos_token_id=1, use_cache=False,
                             attn_implementation="sdpa")
        return LlamaForCausalLM(config)
    config = BertConfig(vocab_size=1, type_vocab_size=1, hidden_size=hidden, intermediate_size=intermediate,
                        num_hidden_layers=n_layers, num_attention_heads=HEADS, max_position_embeddings=max_length,
                        hidden_dropout_prob=dropout, attention_probs_dropout_prob=dropout, pad_token_id=0,
                        attn_implementation="sdpa")
    return TransformerEncoderClassifier(config, input_dim, num_labels)


def size_transformer(task: str, target: int, n_layers: int, **model_args) -> tuple[int, int, int]:
    """(hidden, intermediate, non-embedding parameters) of the baseline closest to ``target`` non-embedding
    parameters at depth ``n_layers``: the width (a multiple of 2·HEADS) with the standard FFN ratio that comes
    closest, then the FFN width (linear in the count) solved for ``target`` within FFN_RANGE x the width (Llama:
    2/3 of these, its FFN having three matrices). Models are built on the meta device (no memory)."""
    def count(hidden, intermediate):
        with torch.device("meta"):
            return non_embedding_parameters(build_transformer(task, hidden, intermediate, n_layers,
                                                              **{**model_args, "max_length": 8}))

    scale = 2 / 3 if task == "causal-lm" else 1.0
    best = None
    for hidden in range(2 * HEADS, 4097, 2 * HEADS):
        n = count(hidden, round(FFN_RATIO * scale * hidden))
        error = abs(math.log(n / target))
        if best is None or error < best[0]:
            best = (error, hidden)
        if n > 2 * target:
            break
    hidden = best[1]
    low, high = (max(1, round(r * scale * hidden)) for r in FFN_RANGE)
    at_low, at_high = count(hidden, low), count(hidden, high)
    per_unit = (at_high - at_low) / (high - low)
    intermediate = min(high, max(low, round(low + (target - at_low) / per_unit)))
    return hidden, intermediate, count(hidden, intermediate)


# ----------------------------------------------------------------------------------------------------------------
# The run folder: its data, its S4D model and its budget
# ----------------------------------------------------------------------------------------------------------------

def read_budget(folder: Path, run_args: dict) -> dict:
    """The S4D run's optimiser budget and schedule, from training_args.json and all_results.json."""
    path = folder / "all_results.json"
    if not path.is_file():
        raise ValueError(f"{path}: no such file (the run's number of optimizer steps); retrain with s4d-hf train")
    try:
        results = json.loads(path.read_text(encoding="utf-8"))
    except ValueError as e:
        raise ValueError(f"{path}: not valid JSON ({' '.join(str(e).split())})") from None
    steps = results.get("global_step") if isinstance(results, dict) else None
    if not isinstance(steps, int) or isinstance(steps, bool) or steps < 1:
        raise ValueError(f"{path}: expected 'global_step', a positive integer (the run's optimizer steps); got "
                         f"{steps!r}")
    for key in ("batch_size", "seed"):
        if not isinstance(run_args.get(key), int):
            raise ValueError(f"{folder / 'training_args.json'}: expected {key!r} as an integer; got "
                             f"{run_args.get(key)!r}")
    return {
        "optimizer_steps": steps, "batch_size": run_args["batch_size"],
        "grad_accum": int(run_args.get("grad_accum") or 1), "eval_steps": run_args.get("eval_steps"),
        "warmup": float(run_args.get("warmup") if run_args.get("warmup") is not None else 0.0),
        "weight_decay": float(run_args.get("weight_decay") or 0.0),
        "max_grad_norm": float(run_args.get("max_grad_norm") or 0.0), "seed": run_args["seed"],
        "dropout": float(MODEL_DEFAULTS["dropout"] if run_args.get("dropout") is None else run_args["dropout"]),
        "mixed_precision": run_args.get("mixed_precision") or "no",
        "s4d_train_runtime": results.get("train_runtime"),
        **{k: results[k] for k in ("peak_memory_bytes", "peak_memory_measure") if k in results},
    }


def load_s4d(folder: Path, task: str) -> nn.Module:
    """The folder's own S4D model (for its parameter counts and depth)."""
    from transformers import AutoModelForCausalLM, AutoModelForSequenceClassification

    auto = AutoModelForCausalLM if task == "causal-lm" else AutoModelForSequenceClassification
    return auto.from_pretrained(folder)


def check_processor(folder: Path, task: str, stats: dict) -> None:
    """The folder's saved processor normalises with the statistics the baseline's inputs were normalised with."""
    path = folder / "preprocessor_config.json"
    if not stats or not path.is_file():
        return
    saved = json.loads(path.read_text(encoding="utf-8"))
    keys = ("image_mean", "image_std") if task == "image-classification" else ("mean", "std")
    for key, ours in zip(keys, (stats["mean"], stats["std"])):
        if saved.get(key) is not None and not np.allclose(saved[key], ours, rtol=1e-5, atol=1e-7):
            raise ValueError(f"{path}: {key} {saved[key]} differs from the train split's {ours.tolist()}: the data "
                             "has changed since this run was trained")


def prepare_data(folder: Path):
    """(training_args.json, normalised splits, TaskMetrics): the splits as the S4D run trained on them."""
    run_args, raw = run_splits(folder)
    task = run_args["task"]
    if task not in TASKS:
        raise ValueError(f"{folder / 'training_args.json'}: task {task!r} has no Transformer baseline; expected one "
                         f"of {', '.join(TASKS)}")
    splits, stats = normalize_splits(task, raw)
    check_processor(folder, task, stats)
    target_mean = target_std = None
    if task == "time-series-regression":
        splits, target_mean, target_std = standardize_targets(splits)
    num_labels = len(splits.id2label) if task in CLASSIFICATION_TASKS else None
    return run_args, splits, TaskMetrics(task, num_labels=num_labels, target_mean=target_mean, target_std=target_std)


# ----------------------------------------------------------------------------------------------------------------
# Evaluation (the card's metric code) and training
# ----------------------------------------------------------------------------------------------------------------

def evaluate_split(model: nn.Module, task: str, examples, metrics: TaskMetrics, device=None) -> dict[str, float]:
    """The metrics of ``model`` on ``examples``, as ``s4d-hf evaluate`` computes them for an S4D folder: classifiers
    and regressors through ``metrics`` (:class:`TaskMetrics`, as :func:`~s4d_hf.hub.evaluation.scores`), in batches
    of BATCH; the LM as the mean next-byte cross-entropy over the windows (``loss``), with its bits per byte and
    perplexity. Works for any model called like S4D's (``input_values``/``attention_mask``, or ``input_ids``)."""
    device = device or next(model.parameters()).device
    model.eval()
    collate = S4DDataCollator(task, pad_token_id=PAD_ID)
    if task == "causal-lm":  # right-padded windows (a text's last one may be short); padding is not scored
        total, count = 0.0, 0
        for start in range(0, len(examples), BATCH):
            batch = collate(list(take(examples, start, start + BATCH)))
            ids, labels = batch["input_ids"].to(device), batch["labels"][:, 1:].to(device)
            with torch.no_grad():
                logits = model(input_ids=ids).logits[:, :-1].float()
            loss = nn.functional.cross_entropy(logits.reshape(-1, logits.shape[-1]), labels.reshape(-1),
                                               ignore_index=-100, reduction="sum")
            total, count = total + loss.item(), count + int((labels != -100).sum())
        lm = metrics.from_loss(total / count)
        return {"bits_per_byte": lm["bits_per_byte"], "perplexity": lm["perplexity"], "loss": total / count}
    outputs, labels = [], []
    for start in range(0, len(examples), BATCH):
        batch = collate(list(take(examples, start, start + BATCH)))
        with torch.no_grad():
            outputs.append(model(input_values=batch["input_values"].to(device),
                                 attention_mask=batch["attention_mask"].to(device)).logits.float().cpu().numpy())
        labels.append(batch["labels"].numpy())
    return metrics(np.concatenate(outputs), np.concatenate(labels))


def _loss(task: str, model: nn.Module, batch: dict) -> torch.Tensor:
    if task == "causal-lm":
        logits = model(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"]).logits[:, :-1]
        return nn.functional.cross_entropy(logits.reshape(-1, logits.shape[-1]).float(),
                                           batch["labels"][:, 1:].reshape(-1), ignore_index=-100)
    logits = model(input_values=batch["input_values"], attention_mask=batch["attention_mask"]).logits.float()
    if task == "time-series-regression":
        labels = batch["labels"].reshape(len(logits), -1)
        return nn.functional.mse_loss(logits.reshape(len(logits), -1), labels)
    return nn.functional.cross_entropy(logits, batch["labels"])


def _optimizer(model: nn.Module, lr: float, weight_decay: float) -> torch.optim.AdamW:
    """AdamW; weight decay on matrices only (not on biases, norms or position embeddings' LayerNorm)."""
    decay = [p for p in model.parameters() if p.requires_grad and p.ndim >= 2]
    rest = [p for p in model.parameters() if p.requires_grad and p.ndim < 2]
    return torch.optim.AdamW([{"params": decay, "weight_decay": weight_decay}, {"params": rest, "weight_decay": 0.0}],
                             lr=lr)


def _schedule(optimizer, warmup_steps: int, total_steps: int):
    """Linear warmup to the peak rate, then cosine decay to 0 (the Trainer's ``cosine`` schedule)."""
    def factor(step: int) -> float:
        if step < warmup_steps:
            return step / max(1, warmup_steps)
        progress = (step - warmup_steps) / max(1, total_steps - warmup_steps)
        return max(0.0, 0.5 * (1.0 + math.cos(math.pi * progress)))

    return torch.optim.lr_scheduler.LambdaLR(optimizer, factor)


def _better(value: float, best: float | None, greater: bool) -> bool:
    if not math.isfinite(value):
        return best is None
    return best is None or not math.isfinite(best) or (value > best if greater else value < best)


def hardware(device: torch.device) -> str:
    """The device as the JSON and the card name it, e.g. ``NVIDIA H200 (CUDA 12.8)`` or ``CPU (model name),
    2 threads``."""
    if device.type == "cuda":
        return f"{torch.cuda.get_device_name(device)} (CUDA {torch.version.cuda})"
    name = platform.processor() or platform.machine()
    try:
        with open("/proc/cpuinfo") as f:
            name = next((line.split(":", 1)[1].strip() for line in f if line.startswith("model name")), name)
    except OSError:
        pass
    threads = torch.get_num_threads()
    return f"CPU ({name}), {threads} thread{'s' if threads != 1 else ''}"


def train_transformer_baseline(folder, lr: float = DEFAULT_LR, max_steps: int | None = None,
                               device: str | None = None, command: str = "") -> dict:
    """Train and test the same-size Transformer for the run in ``folder`` (see the module docstring); returns what
    ``transformer_baseline.json`` holds. ``max_steps``: stop after that many optimizer steps (smoke runs; the JSON
    then says ``"shortened": true`` and release refuses it)."""
    folder = Path(folder)
    if not lr > 0 or not math.isfinite(lr):
        raise ValueError(f"--lr must be a positive number; got {lr}")
    run_args, splits, metrics = prepare_data(folder)
    task = run_args["task"]
    budget = read_budget(folder, run_args)
    steps = min(budget["optimizer_steps"], max_steps) if max_steps else budget["optimizer_steps"]
    device = torch.device(device or ("cuda" if torch.cuda.is_available() else "cpu"))

    s4d = load_s4d(folder, task)
    s4d_count, s4d_total = non_embedding_parameters(s4d), sum(p.numel() for p in s4d.parameters())
    n_layers = s4d.config.n_layers
    del s4d
    key = "input_ids" if task == "causal-lm" else "input_values"
    max_length = max(len(ex[key]) for name in ("train", "eval", "test") for ex in getattr(splits, name))
    model_args = dict(dropout=budget["dropout"])
    if task == "causal-lm":
        model_args["vocab_size"] = splits.vocab_size
    else:
        model_args["input_dim"] = splits.input_dim
        model_args["num_labels"] = (len(splits.id2label) if task in CLASSIFICATION_TASKS
                                    else int(np.prod(np.shape(splits.train[0]["labels"])) or 1))
    hidden, intermediate, count = size_transformer(task, s4d_count, n_layers, **model_args)
    if abs(count / s4d_count - 1) > PARAMETER_BAND:
        raise ValueError(f"no {n_layers}-layer Transformer within ±{PARAMETER_BAND:.0%} of S4D's {s4d_count:,} "
                         f"non-embedding parameters (closest: {count:,}, width {hidden})")
    torch.manual_seed(budget["seed"])
    model = build_transformer(task, hidden, intermediate, n_layers, max_length=max_length, **model_args)
    note(f"Transformer baseline: {n_layers} layers, width {hidden}, FFN {intermediate}, {count:,} non-embedding "
         f"parameters (S4D: {s4d_count:,}); {steps} steps of batch {budget['batch_size']} at lr {lr:g} on {device}")

    memory = PeakMemory()  # from here on, as s4d-hf train measures it: data ready, model built
    model.to(device)
    optimizer = _optimizer(model, lr, budget["weight_decay"])
    warmup = budget["warmup"]
    warmup_steps = math.ceil(warmup * steps) if warmup < 1 else int(warmup)
    scheduler = _schedule(optimizer, warmup_steps, steps)
    amp_dtype = {"bf16": torch.bfloat16, "fp16": torch.float16}.get(budget["mixed_precision"])
    scaler = torch.amp.GradScaler(device.type, enabled=amp_dtype is torch.float16)
    collate = S4DDataCollator(task, pad_token_id=PAD_ID)
    batch_size, accum, n_train = budget["batch_size"], budget["grad_accum"], len(splits.train)
    batches_per_epoch = math.ceil(n_train / batch_size)
    steps_per_epoch = math.ceil(batches_per_epoch / accum)
    eval_every = budget["eval_steps"] or steps_per_epoch
    generator = torch.Generator().manual_seed(budget["seed"])

    history, best, best_state, best_step, step, running = [], None, None, 0, 0, []
    start = time.perf_counter()
    while step < steps:
        order = torch.randperm(n_train, generator=generator).tolist()
        micro = [order[i : i + batch_size] for i in range(0, n_train, batch_size)]
        for group_start in range(0, len(micro), accum):
            model.train()
            group = micro[group_start : group_start + accum]
            for indices in group:
                batch = {k: v.to(device) for k, v in collate([splits.train[i] for i in indices]).items()}
                with torch.autocast(device.type, dtype=amp_dtype or torch.float32, enabled=amp_dtype is not None):
                    loss = _loss(task, model, batch) / len(group)
                scaler.scale(loss).backward()
                running.append(loss.item() * len(group))
            if budget["max_grad_norm"] > 0:
                scaler.unscale_(optimizer)
                torch.nn.utils.clip_grad_norm_(model.parameters(), budget["max_grad_norm"])
            scaler.step(optimizer)
            scaler.update()
            optimizer.zero_grad(set_to_none=True)
            scheduler.step()
            step += 1
            if step % eval_every == 0 or step == steps:
                result = evaluate_split(model, task, splits.eval, metrics, device)
                value = result[metrics.best]
                history.append({"step": step, "loss": float(np.mean(running)),
                                f"eval_{metrics.best}": value})
                running = []
                note(f"step {step}/{steps}: eval {metrics.best} {value:.4g}")
                if _better(value, best, metrics.greater_is_better):
                    best, best_step = value, step
                    best_state = {k: v.detach().to("cpu", copy=True) for k, v in model.state_dict().items()}
            if step == steps:
                break
    if device.type == "cuda":
        torch.cuda.synchronize(device)
    train_runtime = time.perf_counter() - start
    model.load_state_dict(best_state)
    eval_metrics = evaluate_split(model, task, splits.eval, metrics, device)
    test_metrics = evaluate_split(model, task, splits.test, metrics, device)
    test_metrics.pop("loss", None)  # the LM's card metrics: bits per byte and perplexity
    architecture = ("LlamaForCausalLM decoder (tied byte embeddings)" if task == "causal-lm" else
                    "BertModel encoder on a linear input projection, mean-pooled, linear head")
    return {
        "task": task,
        "test_metrics": test_metrics,
        "eval_metrics": eval_metrics,
        "selection": {"metric": metrics.best, "best_step": best_step,
                      "every": f"{eval_every} steps" if budget["eval_steps"] else f"epoch ({steps_per_epoch} steps)"},
        "transformer": {
            "architecture": architecture, "n_layers": n_layers, "hidden_size": hidden,
            "intermediate_size": intermediate,
            "num_attention_heads": HEADS, "max_position_embeddings": max_length, "dropout": budget["dropout"],
            "attn_implementation": "sdpa", "non_embedding_parameters": count,
            "parameters": sum(p.numel() for p in model.parameters()),
        },
        "s4d": {"non_embedding_parameters": s4d_count, "parameters": s4d_total, "n_layers": n_layers,
                "optimizer_steps": budget["optimizer_steps"], "train_runtime": budget["s4d_train_runtime"],
                **{k: budget[k] for k in ("peak_memory_bytes", "peak_memory_measure") if k in budget},
                "command": run_args.get("command")},
        "parameter_ratio": count / s4d_count,
        "optimizer_steps": step, "shortened": step < budget["optimizer_steps"],
        "batch_size": batch_size, "grad_accum": accum,
        "optimizer": {"name": "AdamW", "lr": lr, "betas": [0.9, 0.999], "weight_decay": budget["weight_decay"],
                      "warmup_steps": warmup_steps, "schedule": "linear warmup, cosine decay to 0",
                      "max_grad_norm": budget["max_grad_norm"], "mixed_precision": budget["mixed_precision"],
                      "seed": budget["seed"]},
        "train_runtime": train_runtime,
        **memory.measure(),
        "device": device.type,
        "hardware": hardware(device),
        "versions": {"torch": torch.__version__, "transformers": transformers.__version__},
        "command": command,
        "log_history": history,
    }
