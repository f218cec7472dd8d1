"""Processors that turn raw audio, images, time series and text into S4D model inputs.

Each processor module is self-contained (no imports from s4d_hf), so that a saved processor's code can be copied
next to it and loaded with ``trust_remote_code=True``. The image processor (transformers' image backends, several
seconds to import) and the tokenizer are imported on first access, so that ``import s4d_hf`` can register the
feature extractors at once.
"""

import importlib
import json
import sys

from .feature_extraction_s4d import S4DFeatureExtractor
from .timeseries_processing_s4d import S4DTimeSeriesProcessor

_LAZY = {"S4DImageProcessor": ".image_processing_s4d", "S4DByteTokenizer": ".tokenization_s4d"}


def __getattr__(name: str):
    if name not in _LAZY:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    try:
        value = getattr(importlib.import_module(_LAZY[name], __name__), name)
    except ImportError:
        if name != "S4DImageProcessor":
            raise
        value = None  # the image processor needs Pillow (the "vision" extra)
    globals()[name] = value
    return value


BYTE_VOCAB_SIZE = 259  # ByT5Tokenizer(extra_ids=0): <pad>=0, </s>=1, <unk>=2, then byte b -> id b + 3


def byte_tokenizer():
    """The tokenizer of S4D language models: :class:`S4DByteTokenizer`, ByT5's byte ids without a ``</s>`` appended.

    Nothing to download or train: ids are <pad> 0, </s> 1, <unk> 2 and UTF-8 byte b -> b + 3, so a model needs
    ``vocab_size >= 259`` (:data:`BYTE_VOCAB_SIZE`), ``pad_token_id=0`` and ``eos_token_id=1``. Save it next to the
    model (``tokenizer.save_pretrained(folder)``) and ``pipeline("text-generation", model=folder)`` works offline.
    """
    return __getattr__("S4DByteTokenizer")()


# preprocessor_config.json's class name -> the class (the image processor is saved without a type: see its to_dict)
_PROCESSOR_CLASSES = ("S4DFeatureExtractor", "S4DTimeSeriesProcessor", "S4DImageProcessor")


def saved_processor_name(saved: dict) -> str:
    """The processor class a ``preprocessor_config.json`` names: its ``feature_extractor_type`` /
    ``image_processor_type``, or (the image processor is saved without a type) its ``AutoProcessor`` entry; "" if
    none."""
    return saved.get("feature_extractor_type") or saved.get("image_processor_type") or \
        (saved.get("auto_map") or {}).get("AutoProcessor", "").split(".")[-1]


class S4DProcessorLoader:
    """What ``AutoProcessor`` loads for an S4D folder where s4d-hf is installed (registered for S4DConfig): the
    folder's own processor, chosen from its saved files. S4D folders hold one processor, of one of four kinds, so
    transformers' mapping of one processor class per config cannot name it: this reads the folder instead.

    ``preprocessor_config.json`` names the class (``feature_extractor_type``, or the ``AutoProcessor`` entry of its
    ``auto_map``); a folder with only ``tokenizer_config.json`` gets its tokenizer (``AutoTokenizer``).
    """

    @classmethod
    def from_pretrained(cls, pretrained_model_name_or_path, **kwargs):
        from transformers import AutoTokenizer
        from transformers.utils import cached_file

        hub_kwargs = {k: kwargs[k] for k in ("cache_dir", "force_download", "proxies", "token", "revision",
                                             "local_files_only", "subfolder") if k in kwargs}
        found = cached_file(pretrained_model_name_or_path, "preprocessor_config.json",
                            _raise_exceptions_for_missing_entries=False, **hub_kwargs)
        if found is not None:
            with open(found, encoding="utf-8") as f:
                saved = json.load(f)
            name = saved_processor_name(saved)
            processor_class = getattr(sys.modules[__name__], name) if name in _PROCESSOR_CLASSES else None
            if processor_class is None:
                raise ValueError(f"{pretrained_model_name_or_path}: preprocessor_config.json names no S4D processor "
                                 f"({name or 'no class name'}); expected one of {sorted(_PROCESSOR_CLASSES)}"
                                 + (" (S4DImageProcessor needs Pillow)" if name == "S4DImageProcessor" else ""))
            return processor_class.from_pretrained(pretrained_model_name_or_path, **kwargs)
        return AutoTokenizer.from_pretrained(pretrained_model_name_or_path, **kwargs)


__all__ = [
    "S4DFeatureExtractor",
    "S4DTimeSeriesProcessor",
    "S4DImageProcessor",
    "S4DByteTokenizer",
    "S4DProcessorLoader",
    "saved_processor_name",
    "byte_tokenizer",
    "BYTE_VOCAB_SIZE",
]
