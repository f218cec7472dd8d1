"""The S4D model: SSM math (``ssm_s4d``) -> config (``configuration_s4d``) -> transformers classes (``modeling_s4d``)."""

from .configuration_s4d import S4DConfig
from .modeling_s4d import (
    S4DCausalLMOutput,
    S4DForCausalLM,
    S4DForSequenceClassification,
    S4DModel,
    S4DModelOutput,
    S4DPreTrainedModel,
    S4DSequenceClassifierOutput,
    ssm_parameter_groups,
)
from .ssm_s4d import S4DKernel, S4DLayer
