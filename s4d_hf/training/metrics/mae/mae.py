"""Mean absolute error: mean(|prediction - reference|) (a local, offline evaluate metric)."""

import datasets
import evaluate
import numpy as np


class MAE(evaluate.Metric):
    def _info(self):
        return evaluate.MetricInfo(
            description="Mean absolute error: mean(|prediction - reference|).",
            citation="",
            inputs_description="predictions, references: real numbers of the same length (float).",
            features=datasets.Features({"predictions": datasets.Value("float64"),
                                        "references": datasets.Value("float64")}),
        )

    def _compute(self, predictions, references):
        diff = np.asarray(predictions, dtype=np.float64) - np.asarray(references, dtype=np.float64)
        return {"mae": float(np.mean(np.abs(diff)))}
