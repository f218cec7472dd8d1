"""s4d-hf: the S4D diagonal state space model (Gu, Gupta, Goel, Ré 2022) for the Hugging Face ecosystem.

Importing this package registers S4D with transformers' Auto classes.
"""

from transformers import (
    AutoConfig,
    AutoFeatureExtractor,
    AutoImageProcessor,
    AutoModel,
    AutoModelForAudioClassification,
    AutoModelForCausalLM,
    AutoModelForImageClassification,
    AutoModelForSequenceClassification,
)

from .modeling import (
    S4DCausalLMOutput,
    S4DConfig,
    S4DForCausalLM,
    S4DForSequenceClassification,
    S4DKernel,
    S4DLayer,
    S4DModel,
    S4DModelOutput,
    S4DPreTrainedModel,
    S4DSequenceClassifierOutput,
    ssm_parameter_groups,
)
from .pipelines import S4DAudioClassificationPipeline, TimeSeriesClassificationPipeline, register_pipelines
from .processing import (
    BYTE_VOCAB_SIZE,
    S4DFeatureExtractor,
    S4DImageProcessor,
    S4DTimeSeriesProcessor,
    byte_tokenizer,
)
from .streaming import S4DStreamer

__version__ = "0.1.0"


def _register():
    """Register with the Auto classes (in-process) and for remote code (saved folders load with
    trust_remote_code=True where s4d_hf is not installed)."""
    AutoConfig.register(S4DConfig.model_type, S4DConfig, exist_ok=True)
    AutoModel.register(S4DConfig, S4DModel, exist_ok=True)
    AutoModelForCausalLM.register(S4DConfig, S4DForCausalLM, exist_ok=True)
    for auto in (AutoModelForSequenceClassification, AutoModelForAudioClassification, AutoModelForImageClassification):
        auto.register(S4DConfig, S4DForSequenceClassification, exist_ok=True)
    S4DConfig.register_for_auto_class()
    S4DModel.register_for_auto_class("AutoModel")
    S4DForSequenceClassification.register_for_auto_class("AutoModelForSequenceClassification")
    S4DForCausalLM.register_for_auto_class("AutoModelForCausalLM")

    # Processors. One feature extractor per config class: S4DConfig -> the audio extractor (the fallback when a
    # folder's preprocessor_config.json names no class). The time-series processor is registered under its own name
    # (the mapping accepts string keys) so that AutoFeatureExtractor finds it by the feature_extractor_type that
    # save_pretrained writes, which transformers reads first.
    AutoFeatureExtractor.register(S4DConfig, S4DFeatureExtractor, exist_ok=True)
    AutoFeatureExtractor.register(S4DTimeSeriesProcessor.__name__, S4DTimeSeriesProcessor, exist_ok=True)
    S4DFeatureExtractor.register_for_auto_class("AutoFeatureExtractor")
    S4DTimeSeriesProcessor.register_for_auto_class("AutoFeatureExtractor")
    if S4DImageProcessor is not None:  # Pillow installed
        AutoImageProcessor.register(S4DConfig, image_processor_classes={"pil": S4DImageProcessor}, exist_ok=True)
        S4DImageProcessor.register_for_auto_class("AutoImageProcessor")
    register_pipelines()


_register()

__all__ = [
    "S4DConfig",
    "S4DPreTrainedModel",
    "S4DModel",
    "S4DForSequenceClassification",
    "S4DForCausalLM",
    "S4DModelOutput",
    "S4DSequenceClassifierOutput",
    "S4DCausalLMOutput",
    "S4DKernel",
    "S4DLayer",
    "ssm_parameter_groups",
    "S4DFeatureExtractor",
    "S4DImageProcessor",
    "S4DTimeSeriesProcessor",
    "byte_tokenizer",
    "BYTE_VOCAB_SIZE",
    "TimeSeriesClassificationPipeline",
    "S4DAudioClassificationPipeline",
    "S4DStreamer",
]
