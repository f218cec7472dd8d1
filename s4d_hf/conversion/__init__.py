"""Convert S4D checkpoints of the reference code (state-spaces/s4) into verified Hugging Face folders.

``convert(src, out, ...)`` is what ``s4d-hf convert SRC OUT`` runs. The pieces are usable on their own:

* :func:`load_checkpoint` - read a file safely (tensors only; Lightning's omegaconf config by allow-list);
* :func:`plan_conversion` - detect the format, infer the structure from the shapes, resolve every other option
  (config > flag > default) with its provenance;
* :func:`build_model` / :func:`model_from_state_dict` - the S4DForSequenceClassification;
* :func:`export_state_dict` - back to the source key layout;
* :func:`verify_conversion` - independent kernels and forward pass, and the exact round trip.
"""

from .keys import FORMATS, detect_format
from .options import Option
from .plan import Plan, build_model, export_state_dict, model_from_state_dict, plan_conversion, to_s4d_state_dict
from .loading import Checkpoint, ConversionError, Hparams, load_checkpoint
from .pipeline import ConversionResult, convert
from .verify import Check, reference_kernel, reference_logits, verify_conversion

__all__ = [
    "FORMATS",
    "Check",
    "Checkpoint",
    "ConversionError",
    "ConversionResult",
    "Hparams",
    "Option",
    "Plan",
    "build_model",
    "convert",
    "detect_format",
    "export_state_dict",
    "load_checkpoint",
    "model_from_state_dict",
    "plan_conversion",
    "reference_kernel",
    "reference_logits",
    "to_s4d_state_dict",
    "verify_conversion",
]
