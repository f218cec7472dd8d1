"""s4d-hf: the S4D diagonal state space model (Gu, Gupta, Goel, Ré 2022) for the Hugging Face ecosystem.

Importing this package registers S4D with transformers' Auto classes, and changes nothing else in transformers.
``import s4d_hf`` itself stays cheap: it registers ``AutoConfig`` ("s4d" -> :class:`S4DConfig`) and the two feature
extractors, and imports no more than transformers' configuration code (which imports torch) needs. Everything else
(the model classes with ``AutoModel*``, the image processor, ``AutoProcessor``, the tokenizer and the new
"time-series-classification" pipeline task) is registered by :func:`register_all`, which runs by itself

* on the first :class:`S4DConfig` instance: ``AutoModel*`` / ``AutoImageProcessor`` / ``AutoTokenizer`` /
  ``AutoProcessor.from_pretrained(folder)``, ``pipeline(task, model=folder)`` and ``AutoConfig.for_model("s4d")``
  all build the folder's config before they consult a mapping or the task registry;
* on the first access to any other public name (``s4d_hf.S4DForCausalLM``, ``from s4d_hf import S4DStreamer``),
  which also imports that name's module (PEP 562).
"""

import importlib

from transformers import AutoConfig, AutoFeatureExtractor

from .modeling.configuration_s4d import S4DConfig
from .processing.feature_extraction_s4d import S4DFeatureExtractor
from .processing.timeseries_processing_s4d import S4DTimeSeriesProcessor

__version__ = "0.1.0"

# public name -> the module (relative to this package) that defines it
_LAZY = {
    **dict.fromkeys(
        ("S4DPreTrainedModel", "S4DModel", "S4DForSequenceClassification", "S4DForCausalLM", "S4DModelOutput",
         "S4DSequenceClassifierOutput", "S4DCausalLMOutput", "ssm_parameter_groups"),
        ".modeling.modeling_s4d",
    ),
    "S4DKernel": ".modeling.ssm_s4d",
    "S4DLayer": ".modeling.ssm_s4d",
    **dict.fromkeys(
        ("S4DFeatureExtractor", "S4DImageProcessor", "S4DTimeSeriesProcessor", "S4DByteTokenizer", "byte_tokenizer",
         "BYTE_VOCAB_SIZE"),
        ".processing",
    ),
    "TimeSeriesClassificationPipeline": ".pipelines",
    "S4DAudioClassificationPipeline": ".pipelines",
    "TimeSeriesRegressionPipeline": ".pipelines",
    "S4DStreamer": ".streaming",
    "S4DTrainer": ".trainer",
    "s4d_optimizer": ".trainer",
}

__all__ = ["S4DConfig", *_LAZY]

_registration = "pending"  # -> "running" -> "done"


def register_all() -> None:
    """Register S4D with transformers, in-process (Auto classes, pipeline task) and for remote code (saved folders
    load with trust_remote_code=True where s4d_hf is not installed). Idempotent; see the module docstring for when
    it runs by itself."""
    global _registration
    if _registration != "pending":  # done, or running (a module imported below imports s4d_hf names)
        return
    _registration = "running"
    try:
        _register_models()
        _register_processors()
        _register_tokenizer()
        _register_pipelines()
    except BaseException:
        _registration = "pending"
        raise
    _registration = "done"
    S4DConfig.on_init_hook = None


def _register_models() -> None:
    from transformers import (
        AutoModel,
        AutoModelForAudioClassification,
        AutoModelForCausalLM,
        AutoModelForImageClassification,
        AutoModelForSequenceClassification,
    )

    from .modeling.modeling_s4d import S4DForCausalLM, S4DForSequenceClassification, S4DModel

    AutoModel.register(S4DConfig, S4DModel, exist_ok=True)
    AutoModelForCausalLM.register(S4DConfig, S4DForCausalLM, exist_ok=True)
    for auto in (AutoModelForSequenceClassification, AutoModelForAudioClassification, AutoModelForImageClassification):
        auto.register(S4DConfig, S4DForSequenceClassification, exist_ok=True)
    S4DModel.register_for_auto_class("AutoModel")
    S4DForSequenceClassification.register_for_auto_class("AutoModelForSequenceClassification")
    S4DForCausalLM.register_for_auto_class("AutoModelForCausalLM")


def _register_processors() -> None:
    """The image processor (Pillow and transformers' image backends: seconds to import) and ``AutoProcessor``, which
    for S4D loads whichever processor a folder holds (:class:`~s4d_hf.processing.S4DProcessorLoader`)."""
    from transformers import AutoImageProcessor, AutoProcessor

    from .processing import S4DImageProcessor, S4DProcessorLoader

    AutoProcessor.register(S4DConfig, S4DProcessorLoader, exist_ok=True)
    if S4DImageProcessor is not None:  # Pillow installed
        AutoImageProcessor.register(S4DConfig, image_processor_classes={"pil": S4DImageProcessor}, exist_ok=True)
        S4DImageProcessor.register_for_auto_class("AutoImageProcessor")


def _register_tokenizer() -> None:
    from transformers import AutoTokenizer

    from .processing.tokenization_s4d import S4DByteTokenizer

    AutoTokenizer.register(S4DConfig, slow_tokenizer_class=S4DByteTokenizer, exist_ok=True)
    S4DByteTokenizer.register_for_auto_class("AutoTokenizer")


def _register_pipelines() -> None:
    from .pipelines import register_pipelines

    register_pipelines()


def __getattr__(name: str):
    if name not in _LAZY:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    register_all()
    value = getattr(importlib.import_module(_LAZY[name], __name__), name)
    globals()[name] = value
    return value


def __dir__():
    return sorted(set(globals()) | set(__all__))


# Cheap at import: the config and the two feature extractors. AutoFeatureExtractor.from_pretrained(folder) finds
# the class by the name saved in preprocessor_config.json without building a config, so these cannot wait for the
# first S4DConfig; everything else can (see the module docstring).
AutoConfig.register(S4DConfig.model_type, S4DConfig, exist_ok=True)
S4DConfig.register_for_auto_class()
# One feature extractor per config class: S4DConfig -> the audio extractor (the fallback when a folder's
# preprocessor_config.json names no class); the time-series processor under its own name (the mapping accepts
# string keys), which is what AutoFeatureExtractor looks up first.
AutoFeatureExtractor.register(S4DConfig, S4DFeatureExtractor, exist_ok=True)
AutoFeatureExtractor.register(S4DTimeSeriesProcessor.__name__, S4DTimeSeriesProcessor, exist_ok=True)
S4DFeatureExtractor.register_for_auto_class("AutoFeatureExtractor")
S4DTimeSeriesProcessor.register_for_auto_class("AutoFeatureExtractor")
S4DConfig.on_init_hook = register_all
