"""Publishing checkpoints: model cards (``cards``), their plots (``plots``) and ``s4d-hf push`` (``push``)."""
