"""Batching: right-pad a list of examples to the longest one and say which positions are real.

The model zeroes padded positions at every SSM input and pools over valid positions only, so right padding does
not change a causal model's outputs at valid positions (nor a bidirectional one's: the padded inputs are zero).
"""

from dataclasses import dataclass

import numpy as np
import torch


@dataclass
class S4DDataCollator:
    """examples (see :mod:`s4d_hf.training.data`) -> a batch of tensors.

    Continuous inputs: ``input_values`` (B, L_max, C) float32 padded with ``padding_value``,
    ``attention_mask`` (B, L_max) int64 (1 = valid), ``labels`` (B,) int64 (classification) or (B,) / (B, T)
    float32 (regression).
    Tokens (causal-lm): ``input_ids`` (B, L_max) padded with ``pad_token_id``, ``attention_mask``, and
    ``labels`` = input_ids with -100 at padded positions (the model shifts them inside its loss).
    """

    task: str
    pad_token_id: int = 0
    padding_value: float = 0.0

    def __call__(self, examples: list[dict]) -> dict[str, torch.Tensor]:
        if not examples:
            raise ValueError("S4DDataCollator got an empty list of examples")
        key = "input_ids" if self.task == "causal-lm" else "input_values"
        inputs = [np.asarray(ex[key]) for ex in examples]
        lengths = [len(x) for x in inputs]
        L = max(lengths)
        mask = torch.zeros(len(inputs), L, dtype=torch.long)
        for i, n in enumerate(lengths):
            mask[i, :n] = 1
        if self.task == "causal-lm":
            ids = torch.full((len(inputs), L), self.pad_token_id, dtype=torch.long)
            for i, x in enumerate(inputs):
                ids[i, : len(x)] = torch.from_numpy(x.astype(np.int64))
            return {"input_ids": ids, "attention_mask": mask, "labels": ids.masked_fill(mask == 0, -100)}
        C = inputs[0].shape[-1]
        values = torch.full((len(inputs), L, C), self.padding_value, dtype=torch.float32)
        for i, x in enumerate(inputs):
            values[i, : len(x)] = torch.from_numpy(np.asarray(x, dtype=np.float32))
        batch = {"input_values": values, "attention_mask": mask}
        if "labels" in examples[0]:
            labels = np.asarray([ex["labels"] for ex in examples])
            if self.task == "time-series-regression":
                batch["labels"] = torch.from_numpy(labels.astype(np.float32))
            else:
                batch["labels"] = torch.from_numpy(labels.astype(np.int64))
        return batch
