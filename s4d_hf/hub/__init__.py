"""Publishing checkpoints: model cards (``cards``), their plots (``plots``), the code and entries that make a folder
work without s4d-hf (``remote_code``) and ``s4d-hf push`` (``push``)."""

from .remote_code import make_portable

__all__ = ["make_portable"]
