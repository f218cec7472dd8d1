"""Root mean squared error: sqrt(mean((prediction - reference)^2)) (a local, offline evaluate metric)."""

import datasets
import evaluate
import numpy as np


class RMSE(evaluate.Metric):
    def _info(self):
        return evaluate.MetricInfo(
            description="Root mean squared error: sqrt(mean((prediction - reference)^2)).",
            citation="",
            inputs_description="predictions, references: real numbers of the same length (float).",
            features=datasets.Features({"predictions": datasets.Value("float64"),
                                        "references": datasets.Value("float64")}),
        )

    def _compute(self, predictions, references):
        diff = np.asarray(predictions, dtype=np.float64) - np.asarray(references, dtype=np.float64)
        return {"rmse": float(np.sqrt(np.mean(diff ** 2)))}
