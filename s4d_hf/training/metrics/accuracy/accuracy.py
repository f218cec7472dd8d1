"""Accuracy: the fraction of predictions equal to their reference (a local, offline evaluate metric)."""

import datasets
import evaluate
import numpy as np


class Accuracy(evaluate.Metric):
    def _info(self):
        return evaluate.MetricInfo(
            description="Accuracy = (number of predictions equal to the reference) / (number of predictions).",
            citation="",
            inputs_description="predictions, references: class indices of the same length (int).",
            features=datasets.Features({"predictions": datasets.Value("int64"),
                                        "references": datasets.Value("int64")}),
        )

    def _compute(self, predictions, references):
        correct = np.asarray(predictions) == np.asarray(references)
        return {"accuracy": float(correct.mean())}
