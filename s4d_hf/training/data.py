"""Placeholder for the `DatasetSplits` dataclass (owned by the `train` branch; its version wins on merge)."""

from dataclasses import dataclass


@dataclass
class DatasetSplits:            # in s4d_hf/training/data.py (the train helper's file)
    train: list                 # examples: {"input_values": np.ndarray (L, C) float32} or {"input_ids": np.ndarray (L,) int64}, plus "labels" (int class, or float / float array for regression; omitted for causal-lm)
    eval: list
    test: list
    id2label: dict[int, str] | None = None
    input_dim: int | None = None
    vocab_size: int | None = None
    sampling_rate: int | None = None
    description: str = ""
    license: str = ""
    citation: str = ""
