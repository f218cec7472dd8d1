"""Processors that turn raw audio, images, time series and text into S4D model inputs.

Each processor module is self-contained (no imports from s4d_hf), so that a saved processor's code can be copied
next to it and loaded with ``trust_remote_code=True``.
"""

from .feature_extraction_s4d import S4DFeatureExtractor
from .timeseries_processing_s4d import S4DTimeSeriesProcessor


try:  # the image processor needs Pillow (the "vision" extra)
    from .image_processing_s4d import S4DImageProcessor
except ImportError:
    S4DImageProcessor = None

BYTE_VOCAB_SIZE = 259  # ByT5Tokenizer(extra_ids=0): <pad>=0, </s>=1, <unk>=2, then byte b -> id b + 3


def byte_tokenizer():
    """The tokenizer of S4D language models: transformers' byte-level ``ByT5Tokenizer(extra_ids=0)``.

    Nothing to download or train: ids are <pad> 0, </s> 1, <unk> 2 and UTF-8 byte b -> b + 3, so a model needs
    ``vocab_size >= 259`` (:data:`BYTE_VOCAB_SIZE`), ``pad_token_id=0`` and ``eos_token_id=1``. Save it next to the
    model (``tokenizer.save_pretrained(folder)``) and ``pipeline("text-generation", model=folder)`` works offline.
    Note that calling it on text appends </s>; text-generation pipelines do not (they pass
    ``add_special_tokens=False``).
    """
    from transformers import ByT5Tokenizer

    return ByT5Tokenizer(extra_ids=0)


__all__ = ["S4DFeatureExtractor", "S4DTimeSeriesProcessor", "S4DImageProcessor", "byte_tokenizer", "BYTE_VOCAB_SIZE"]
