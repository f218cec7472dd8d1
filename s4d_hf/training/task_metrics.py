"""Task metrics: the one implementation used by both training backends, ``s4d-hf evaluate`` and ``s4d-hf release``.

Computed with ``evaluate`` from metric modules shipped in this package (``metrics/<name>/<name>.py``):
``evaluate.load("accuracy")`` would look the module up on the Hub."""

import math
from pathlib import Path

import numpy as np


METRICS_DIR = Path(__file__).resolve().parent / "metrics"


def load_metric(name: str):
    """A local metric module by name (accuracy, f1, mse, mae, rmse); works offline."""
    import evaluate  # seconds to import (datasets, pyarrow): only when metrics are computed

    path = METRICS_DIR / name
    if not (path / f"{name}.py").is_file():
        raise ValueError(f"no local metric {name!r}; available: {sorted(p.name for p in METRICS_DIR.iterdir())}")
    return evaluate.load(str(path), keep_in_memory=True)


class TaskMetrics:
    """Model outputs on a split -> metrics for one task.

    * classification: accuracy and macro F1 over the argmax of the logits (B, K);
    * regression: mse, mae and rmse, in the units of the original targets: the model is trained on standardised
      targets (y - target_mean) / target_std, so predictions and labels are mapped back first;
    * causal-lm: perplexity exp(loss) and bits per byte loss / ln 2 (ByT5 ids are one token per byte).

    ``best`` names the metric that selects the best checkpoint; ``greater_is_better`` says which way;
    ``from_token_loss`` says that the metrics come from the mean next-token loss (:meth:`from_loss`), not from
    predictions and labels (:meth:`__call__`).
    """

    def __init__(self, task: str, num_labels: int | None = None, target_mean=None, target_std=None):
        self.task = task
        self.num_labels = num_labels
        self.target_mean = None if target_mean is None else np.asarray(target_mean, dtype=np.float64)
        self.target_std = None if target_std is None else np.asarray(target_std, dtype=np.float64)
        self.from_token_loss = task == "causal-lm"
        if task == "causal-lm":
            self.best, self.greater_is_better, names = "loss", False, []
        elif task == "time-series-regression":
            self.best, self.greater_is_better, names = "rmse", False, ["mse", "mae", "rmse"]
        else:
            self.best, self.greater_is_better, names = "accuracy", True, ["accuracy", "f1"]
        self._modules = {name: load_metric(name) for name in names}

    def __call__(self, predictions: np.ndarray, labels: np.ndarray) -> dict[str, float]:
        """predictions: logits (N, K) (classification) or outputs (N, T) (regression); labels: (N,) or (N, T)."""
        predictions, labels = np.asarray(predictions, dtype=np.float64), np.asarray(labels)
        if self.task == "time-series-regression":
            predictions = predictions.reshape(labels.shape[0], -1)
            labels = labels.astype(np.float64).reshape(labels.shape[0], -1)
            if self.target_std is not None:
                predictions = predictions * self.target_std + self.target_mean
                labels = labels * self.target_std + self.target_mean
            predictions, labels = predictions.ravel(), labels.ravel()
            return {name: m.compute(predictions=predictions, references=labels)[name]
                    for name, m in self._modules.items()}
        predicted = predictions.argmax(-1)
        return {
            "accuracy": self._modules["accuracy"].compute(predictions=predicted, references=labels)["accuracy"],
            "f1": self._modules["f1"].compute(predictions=predicted, references=labels,
                                              num_labels=self.num_labels)["f1"],
        }

    def from_loss(self, loss: float) -> dict[str, float]:
        """Language-model metrics from the mean next-token cross-entropy (nats)."""
        if self.task != "causal-lm":
            return {}
        return {"perplexity": math.exp(min(loss, 700.0)), "bits_per_byte": loss / math.log(2)}

    def for_trainer(self):
        """A ``compute_metrics`` for transformers' Trainer (None for causal-lm: the loss is enough)."""
        if self.task == "causal-lm":
            return None
        return lambda eval_prediction: self(eval_prediction.predictions, eval_prediction.label_ids)
