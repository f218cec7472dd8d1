"""The S4D optimizer rule (dt, A, B at config.ssm_lr without weight decay) with transformers' Trainer: S4DTrainer and
s4d_optimizer follow it, a real S4DTrainer run updates dt, A and B exactly as AdamW without decay would, and a plain
Trainer that decays them gets a warning naming the fix."""

import logging

import pytest
import torch
from transformers import Trainer, TrainerCallback, TrainingArguments

from s4d_hf import S4DConfig, S4DForCausalLM, S4DForSequenceClassification
from s4d_hf.modeling.modeling_s4d import ssm_parameters
from s4d_hf.trainer import S4DTrainer, s4d_optimizer

SSM_LR = 1e-2
LR = 3e-2
WEIGHT_DECAY = 0.5  # large, so that decaying dt, A, B at this rate would show far above rounding


def tiny_lm() -> S4DForCausalLM:
    return S4DForCausalLM(S4DConfig(vocab_size=20, d_model=16, n_layers=2, d_state=8, ssm_lr=SSM_LR))


def random_lm_data(n: int = 8, length: int = 12) -> list[dict]:
    g = torch.Generator().manual_seed(0)
    return [{"input_ids": ids, "labels": ids} for ids in torch.randint(0, 20, (n, length), generator=g)]


def arguments(tmp_path, **kwargs) -> TrainingArguments:
    base = dict(output_dir=str(tmp_path), use_cpu=True, report_to="none", max_steps=2, save_strategy="no",
                per_device_train_batch_size=4, learning_rate=LR, weight_decay=WEIGHT_DECAY, disable_tqdm=True)
    return TrainingArguments(**{**base, **kwargs})


def group_of(optimizer) -> dict:
    return {id(p): group for group in optimizer.param_groups for p in group["params"]}


def test_s4d_trainer_groups_follow_the_rule(tmp_path):
    model = S4DForSequenceClassification(S4DConfig(input_dim=2, d_model=16, n_layers=2, d_state=8, ssm_lr=SSM_LR,
                                                    norm="batch"))
    optimizer = S4DTrainer(model=model, args=arguments(tmp_path)).create_optimizer()
    groups = group_of(optimizer)
    ssm = {id(p) for p in ssm_parameters(model)}
    assert len(ssm) == 2 * 4  # inv_dt, A_real, A_imag, B per layer
    assert set(groups) == {id(p) for p in model.parameters()}
    for name, p in model.named_parameters():
        group = groups[id(p)]
        if id(p) in ssm:
            assert (group["lr"], group["weight_decay"]) == (SSM_LR, 0.0), name
        elif name.endswith("bias") or ".norm." in name:
            assert (group["lr"], group["weight_decay"]) == (LR, 0.0), name
        else:  # C, D, the encoder, output linears, classifier weights
            assert (group["lr"], group["weight_decay"]) == (LR, WEIGHT_DECAY), name
    assert isinstance(optimizer, torch.optim.AdamW)


def test_s4d_optimizer_takes_the_optimizer_class_from_the_arguments(tmp_path):
    model = tiny_lm()
    optimizer = s4d_optimizer(model, arguments(tmp_path, optim="sgd"))
    assert type(optimizer) is torch.optim.SGD
    groups = group_of(optimizer)
    assert all((groups[id(p)]["lr"], groups[id(p)]["weight_decay"]) == (SSM_LR, 0.0) for p in ssm_parameters(model))


class AdamWStepCheck(TrainerCallback):
    """Around every optimizer step: each parameter's change against AdamW's update computed from the optimizer state,
    p1 = p0 * (1 - lr * weight_decay) - lr / bias_correction1 * exp_avg / (sqrt(exp_avg_sq / bias_correction2) + eps),
    once with its group's weight decay and once with none."""

    def __init__(self, names: dict):
        self.names = names  # id(param) -> name
        self.errors = []  # (step, name, error with no decay, error with the main weight decay)

    def on_pre_optimizer_step(self, args, state, control, optimizer=None, **kwargs):
        self.before = {id(p): (p.detach().clone(), group["lr"]) for group in optimizer.param_groups
                       for p in group["params"]}

    def on_optimizer_step(self, args, state, control, optimizer=None, **kwargs):
        for group in optimizer.param_groups:
            beta1, beta2 = group["betas"]
            for p in group["params"]:
                s = optimizer.state[p]
                step = float(s["step"])
                p0, lr = self.before[id(p)]
                adam = lr / (1 - beta1**step) * s["exp_avg"] / ((s["exp_avg_sq"] / (1 - beta2**step)).sqrt()
                                                               + group["eps"])
                error = lambda wd: (p.detach() - (p0 * (1 - lr * wd) - adam)).abs().max().item()  # noqa: E731
                self.errors.append((int(step), self.names[id(p)], error(0.0), error(args.weight_decay)))


def test_s4d_trainer_run_does_not_decay_dt_a_b(tmp_path):
    model = tiny_lm()
    names = {id(p): n for n, p in model.named_parameters()}
    ssm = {names[id(p)] for p in ssm_parameters(model)}
    before = {n: p.detach().clone() for n, p in model.named_parameters()}
    check = AdamWStepCheck(names)
    trainer = S4DTrainer(model=model, args=arguments(tmp_path, optim="adamw_torch"), train_dataset=random_lm_data(),
                         callbacks=[check])
    trainer.train()
    assert trainer.state.global_step == 2 and {step for step, *_ in check.errors} == {1, 2}
    for step, name, no_decay, main_decay in check.errors:
        if name in ssm:  # the update is AdamW's without decay, and decay at the main rate would not fit
            assert no_decay < 1e-5 < main_decay, (step, name, no_decay, main_decay)
        elif name.endswith("s4d.layers.0.mixer.output_linear.weight"):  # a decayed weight: the check sees decay
            assert main_decay < 1e-5 < no_decay, (step, name, no_decay, main_decay)
    assert all(not torch.equal(before[n], p) for n, p in model.named_parameters() if n in ssm)  # they did train


def optimizer_warnings(caplog) -> list[str]:
    return [r.getMessage() for r in caplog.records if "S4D parameters dt, A and B" in r.getMessage()]


@pytest.mark.parametrize("weight_decay", [0.01, 0.0])
def test_plain_trainer_is_warned_once(tmp_path, caplog, weight_decay):
    model = tiny_lm()
    trainer = Trainer(model=model, args=arguments(tmp_path, weight_decay=weight_decay),
                      train_dataset=random_lm_data())
    with caplog.at_level(logging.WARNING):
        trainer.train()
    (message,) = optimizer_warnings(caplog)  # once, not once per step
    assert "S4DTrainer" in message and "s4d_optimizer" in message and f"weight_decay={weight_decay}" in message


@pytest.mark.parametrize("how", ["S4DTrainer", "s4d_optimizer"])
def test_the_s4d_rule_is_not_warned(tmp_path, caplog, how):
    model, args = tiny_lm(), arguments(tmp_path)
    if how == "S4DTrainer":
        trainer = S4DTrainer(model=model, args=args, train_dataset=random_lm_data())
    else:
        trainer = Trainer(model=model, args=args, train_dataset=random_lm_data(),
                          optimizers=(s4d_optimizer(model, args), None))
    with caplog.at_level(logging.WARNING):
        trainer.train()
    assert optimizer_warnings(caplog) == []


def test_own_loop_with_all_parameters_in_one_group_is_warned(caplog):
    model = tiny_lm().train()
    optimizer = torch.optim.AdamW(model.parameters(), lr=1e-3, weight_decay=0.01)  # noqa: F841 (found by the model)
    ids = torch.randint(0, 20, (2, 6))
    with caplog.at_level(logging.WARNING):
        model(ids, labels=ids).loss.backward()
        model(ids, labels=ids)
    assert len(optimizer_warnings(caplog)) == 1
