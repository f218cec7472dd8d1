"""s4d-hf: the S4D diagonal state space model (Gu, Gupta, Goel, Ré 2022) for the Hugging Face ecosystem.

Importing this package registers S4D with transformers' Auto classes.
"""

from transformers import (
    AutoConfig,
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
]
