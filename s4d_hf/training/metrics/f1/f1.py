"""F1: the harmonic mean of precision and recall per class, averaged (a local, offline evaluate metric)."""

import datasets
import evaluate
import numpy as np


class F1(evaluate.Metric):
    def _info(self):
        return evaluate.MetricInfo(
            description="F1 = 2 TP / (2 TP + FP + FN) per class; 'macro' averages the classes with equal weight, "
                        "'weighted' by their number of references, 'micro' pools the counts (= accuracy).",
            citation="",
            inputs_description="predictions, references: class indices (int); num_labels: classes counted in the "
                               "macro average (default: every class seen in predictions or references); "
                               "average: 'macro' (default), 'weighted' or 'micro'.",
            features=datasets.Features({"predictions": datasets.Value("int64"),
                                        "references": datasets.Value("int64")}),
        )

    def _compute(self, predictions, references, num_labels=None, average="macro"):
        pred, ref = np.asarray(predictions), np.asarray(references)
        classes = np.arange(num_labels) if num_labels is not None else np.union1d(pred, ref)
        tp = np.array([np.sum((pred == c) & (ref == c)) for c in classes], dtype=np.float64)
        fp = np.array([np.sum((pred == c) & (ref != c)) for c in classes], dtype=np.float64)
        fn = np.array([np.sum((pred != c) & (ref == c)) for c in classes], dtype=np.float64)
        if average == "micro":
            denominator = 2 * tp.sum() + fp.sum() + fn.sum()
            return {"f1": float(2 * tp.sum() / denominator) if denominator else 0.0}
        denominator = 2 * tp + fp + fn
        per_class = np.divide(2 * tp, denominator, out=np.zeros_like(tp), where=denominator > 0)
        if average == "weighted":
            support = tp + fn
            return {"f1": float((per_class * support).sum() / support.sum()) if support.sum() else 0.0}
        if average != "macro":
            raise ValueError(f"average must be 'macro', 'weighted' or 'micro'; got {average!r}")
        return {"f1": float(per_class.mean())}
