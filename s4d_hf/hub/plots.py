"""Small PNG plots for model cards (matplotlib, ``pip install s4d-hf[hub]``).

    plot_training_curve(history, path, metric_name)          training loss and eval metric against the step
    plot_confusion_matrix(labels, predictions, path, names)  test-set confusion matrix; returns the counts
    plot_eigenvalues(model, path)                            the first layer's discrete S4D eigenvalues

Each writes one PNG under 100 KB (checked), through a temporary file, and draws on its own ``Figure`` (no pyplot
global state, no GUI backend).
"""

import os
import tempfile
from pathlib import Path

import numpy as np

MAX_PNG_BYTES = 100_000


def _figure(width: float, height: float):
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    fig = Figure(figsize=(width, height), dpi=100, layout="constrained")
    FigureCanvasAgg(fig)
    return fig


def _save(fig, path) -> Path:
    path = Path(path)
    if path.suffix.lower() != ".png":
        raise ValueError(f"path {str(path)!r}: expected a file name ending in .png")
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.stem}.", suffix=".png")
    os.close(fd)
    try:
        fig.savefig(tmp, format="png", dpi=100, metadata={"Software": None})  # no version stamp: reproducible bytes
        size = os.path.getsize(tmp)
        if size > MAX_PNG_BYTES:
            raise RuntimeError(f"plot {path.name} is {size} bytes, over the {MAX_PNG_BYTES}-byte limit for cards")
        os.replace(tmp, path)
    finally:
        Path(tmp).unlink(missing_ok=True)
    return path


def plot_training_curve(history: list[dict], path, metric_name: str = "eval metric") -> Path:
    """Training loss (left axis) and the eval-split metric (right axis) against the optimiser step.

    history: [{"step": int, "loss": float, "eval_metric": float}, ...]; an entry may omit "loss" or "eval_metric"
    (losses are logged more often than evaluations), but every entry needs "step" and at least one of the two.
    """
    if not isinstance(history, list) or not history:
        raise ValueError(f"history={history!r}: expected a non-empty list of {{step, loss, eval_metric}} dicts")
    loss, metric = [], []
    for i, entry in enumerate(history):
        if not isinstance(entry, dict) or "step" not in entry or not ({"loss", "eval_metric"} & entry.keys()):
            raise ValueError(f"history[{i}]={entry!r}: expected a dict with 'step' and 'loss' and/or 'eval_metric'")
        if entry.get("loss") is not None:
            loss.append((entry["step"], entry["loss"]))
        if entry.get("eval_metric") is not None:
            metric.append((entry["step"], entry["eval_metric"]))
    fig = _figure(5.0, 3.0)
    ax = fig.add_subplot()
    if loss:
        ax.plot(*zip(*loss), color="tab:blue", lw=1.2)
    ax.set_xlabel("step")
    ax.set_ylabel("training loss", color="tab:blue")
    if metric:
        ax2 = ax.twinx()
        ax2.plot(*zip(*metric), color="tab:orange", marker="o", ms=3, lw=1.2)
        ax2.set_ylabel(metric_name, color="tab:orange")
    ax.set_title("Training curve", fontsize=10)
    return _save(fig, path)


def confusion_matrix(labels, predictions, num_labels: int) -> np.ndarray:
    """counts[i, j] = number of examples with true label i predicted as j, (num_labels, num_labels) int64."""
    labels, predictions = np.asarray(labels), np.asarray(predictions)
    if labels.shape != predictions.shape or labels.ndim != 1:
        raise ValueError(f"labels {labels.shape} and predictions {predictions.shape}: expected two 1-D arrays of "
                         "the same length")
    for name, values in (("labels", labels), ("predictions", predictions)):
        if values.size and (not np.issubdtype(values.dtype, np.integer) or values.min() < 0
                            or values.max() >= num_labels):
            raise ValueError(f"{name} range [{values.min()}, {values.max()}]: expected integers in [0, {num_labels})")
    counts = np.zeros((num_labels, num_labels), dtype=np.int64)
    np.add.at(counts, (labels, predictions), 1)
    return counts


def plot_confusion_matrix(labels, predictions, path, label_names: list[str]) -> np.ndarray:
    """Confusion matrix of integer ``labels`` against ``predictions`` (rows: true class, columns: predicted),
    colour = fraction of the row, text = count. Returns the (K, K) counts."""
    k = len(label_names)
    counts = confusion_matrix(labels, predictions, k)
    rows = np.maximum(counts.sum(1, keepdims=True), 1)
    fig = _figure(1.6 + 0.35 * k, 1.2 + 0.35 * k)
    ax = fig.add_subplot()
    ax.imshow(counts / rows, cmap="Blues", vmin=0.0, vmax=1.0)
    if k <= 20:  # counts stay legible up to about 20 classes
        for i in range(k):
            for j in range(k):
                if counts[i, j]:
                    ax.text(j, i, str(counts[i, j]), ha="center", va="center", fontsize=6,
                            color="white" if counts[i, j] / rows[i, 0] > 0.5 else "black")
    ax.set_xticks(range(k), label_names, rotation=90, fontsize=7)
    ax.set_yticks(range(k), label_names, fontsize=7)
    ax.set_xlabel("predicted")
    ax.set_ylabel("true")
    ax.set_title(f"Confusion matrix (accuracy {np.trace(counts) / max(counts.sum(), 1):.3f})", fontsize=9)
    _save(fig, path)
    return counts


def plot_eigenvalues(model, path, layer: int = 0):
    """The discrete S4D eigenvalues of one layer (default the first), per feature and mode.

    Left: log Ā = dt·A (for zoh; bilinear: log of the bilinear Ā) in the complex plane: -Re is the decay per step,
    Im the angle per step (paper eq. 4-6). Right: Ā itself with the unit circle; modes near 1 remember longest.
    ``model`` is an S4DModel or a model with an ``s4d`` backbone. Returns log Ā (H, N/2) as a complex numpy array.
    """
    import torch

    backbone = getattr(model, "s4d", model)
    layers = getattr(backbone, "layers", None)
    if layers is None or not 0 <= layer < len(layers):
        raise ValueError(f"layer={layer}: expected an index into the model's {len(layers or [])} S4D layers")
    with torch.no_grad():
        _, log_dA, _ = layers[layer].mixer.kernel.discrete_parameters()
    log_dA = log_dA.cpu().numpy()
    dA = np.exp(log_dA)
    fig = _figure(6.0, 3.0)
    left, right = fig.add_subplot(1, 2, 1), fig.add_subplot(1, 2, 2)
    left.scatter(log_dA.real.ravel(), log_dA.imag.ravel(), s=4, alpha=0.6, lw=0)
    left.set_xlabel("Re dt·A")
    left.set_ylabel("Im dt·A")
    left.set_title(f"layer {layer}: log Ā", fontsize=9)
    circle = np.exp(1j * np.linspace(0, 2 * np.pi, 200))
    right.plot(circle.real, circle.imag, color="0.6", lw=0.8)
    right.scatter(dA.real.ravel(), dA.imag.ravel(), s=4, alpha=0.6, lw=0, color="tab:red")
    right.set_aspect("equal")
    right.set_xlabel("Re Ā")
    right.set_ylabel("Im Ā")
    right.set_title(f"Ā = exp(dt·A), {log_dA.size} modes", fontsize=9)
    _save(fig, path)
    return log_dA
