"""The S4D model: SSM math (``ssm_s4d``) -> config (``configuration_s4d``) -> transformers classes (``modeling_s4d``).

The names below are imported on first access (PEP 562), so that ``from s4d_hf.modeling import S4DConfig`` (and
``import s4d_hf``) does not import torch and transformers' ``modeling_utils``.
"""

import importlib

_SUBMODULE = {
    "S4DConfig": "configuration_s4d",
    **dict.fromkeys(
        ("S4DCausalLMOutput", "S4DForCausalLM", "S4DForSequenceClassification", "S4DModel", "S4DModelOutput",
         "S4DPreTrainedModel", "S4DSequenceClassifierOutput", "ssm_parameter_groups"),
        "modeling_s4d",
    ),
    "S4DKernel": "ssm_s4d",
    "S4DLayer": "ssm_s4d",
}

__all__ = list(_SUBMODULE)


def __getattr__(name: str):
    if name not in _SUBMODULE:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    value = getattr(importlib.import_module(f".{_SUBMODULE[name]}", __name__), name)
    globals()[name] = value
    return value


def __dir__():
    return sorted(set(globals()) | set(__all__))
