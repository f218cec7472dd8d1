"""S4D's optimizer rule for transformers' Trainer.

The S4D recipe (paper, App. B) trains dt, A and B at their own learning rate (``config.ssm_lr``) without weight decay;
a plain ``transformers.Trainer`` puts them in its weight-decay group at the main learning rate, and the model logs a
warning when it sees that on its first training step. Either of these follows the recipe::

    trainer = S4DTrainer(model=model, args=args, train_dataset=train)                          # a Trainer subclass
    trainer = Trainer(model=model, args=args, train_dataset=train,
                      optimizers=(s4d_optimizer(model, args), None))                           # any Trainer

Both take the optimizer class and its options (``args.optim``, betas, eps, ...), the learning rate and the weight
decay from the TrainingArguments, and the groups from :func:`s4d_hf.ssm_parameter_groups`.
"""

from __future__ import annotations

import torch
from torch import nn
from transformers import Trainer, TrainingArguments

from .modeling import ssm_parameter_groups


def s4d_optimizer(model: nn.Module, args: TrainingArguments) -> torch.optim.Optimizer:
    """The optimizer that ``args`` asks for (``args.optim``), over the S4D groups: dt, A and B at ``config.ssm_lr``
    with ``config.ssm_weight_decay`` (0), biases and norms at ``args.learning_rate`` without decay, every other
    weight at ``args.learning_rate`` with ``args.weight_decay``. For ``Trainer(optimizers=(optimizer, None))``;
    build it after moving the model to its device, as for any optimizer."""
    groups = ssm_parameter_groups(model, lr=args.learning_rate, weight_decay=args.weight_decay)
    optimizer_cls, optimizer_kwargs = Trainer.get_optimizer_cls_and_kwargs(args, model)
    return optimizer_cls(groups, **optimizer_kwargs)


class S4DTrainer(Trainer):
    """``transformers.Trainer`` whose optimizer is :func:`s4d_optimizer`: dt, A and B get ``config.ssm_lr`` and no
    weight decay (S4D paper, App. B); without it S4D trains markedly worse. Everything else is Trainer's."""

    def create_optimizer(self, model=None):
        if self.optimizer is None:
            self.optimizer = s4d_optimizer(self.model if model is None else model, self.args)
        return self.optimizer


__all__ = ["S4DTrainer", "s4d_optimizer"]
