"""The transformers classes: config validation, heads and losses, padding, save/load, precision, remote code,
gradient checkpointing, optimizer groups and the conventions transformers holds every model to."""

import json
import os
import subprocess
import sys
import textwrap

import pytest
import torch
import torch.nn.functional as F
from transformers import AutoConfig, AutoModel, AutoModelForCausalLM, AutoModelForSequenceClassification

from s4d_hf import S4DConfig, S4DForCausalLM, S4DForSequenceClassification, S4DModel, ssm_parameter_groups


def tiny(**kw) -> S4DConfig:
    base = dict(d_model=16, n_layers=2, d_state=8, init="legs")
    base.update(kw)
    return S4DConfig(**base)


# -- config ----------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("kwargs,field", [
    (dict(input_dim=1, d_state=7), "d_state"),
    (dict(input_dim=1, init="hippo"), "init"),
    (dict(input_dim=1, disc="euler"), "disc"),
    (dict(input_dim=1, dt_transform="sigmoid"), "dt_transform"),
    (dict(input_dim=1, real_transform="abs"), "real_transform"),
    (dict(input_dim=1, norm="rms"), "norm"),
    (dict(input_dim=1, pooling="max"), "pooling"),
    (dict(input_dim=1, final_act="gelu"), "final_act"),
    (dict(vocab_size=0), "vocab_size"),  # no input kind at all is valid: S4DConfig() reads one channel
    (dict(input_dim=1, n_ssm=3), "n_ssm"),
    (dict(input_dim=1, init="diag", n_ssm=1), "n_ssm"),
    (dict(input_dim=1, dt_min=0.5, dt_max=0.1), "dt_min"),
])
def test_invalid_config_names_the_field(kwargs, field):
    with pytest.raises(ValueError, match=field):
        tiny(**kwargs)


def test_odd_d_state_is_fine_in_real_mode_and_config_round_trips(tmp_path):
    config = tiny(input_dim=2, d_state=7, is_real=True, init="real", num_labels=3, n_ssm=4)
    config.save_pretrained(tmp_path)
    loaded = AutoConfig.from_pretrained(tmp_path)
    a, b = loaded.to_dict(), config.to_dict()
    a.pop("_name_or_path"), b.pop("_name_or_path")
    assert isinstance(loaded, S4DConfig) and a == b
    assert loaded.hidden_size == 16 and loaded.num_hidden_layers == 2


# -- inputs and heads ------------------------------------------------------------------------------------------


def test_input_errors_say_what_was_expected():
    model = S4DModel(tiny(input_dim=3)).eval()
    with pytest.raises(ValueError, match="exactly one of"):
        model()
    with pytest.raises(ValueError, match="exactly one of"):
        model(input_values=torch.randn(1, 5, 3), pixel_values=torch.randn(1, 3, 2, 2))
    with pytest.raises(ValueError, match=r"input_values must have shape \(batch, length, 3\)"):
        model(input_values=torch.randn(1, 5, 2))
    with pytest.raises(ValueError, match="no token embedding"):
        model(input_ids=torch.zeros(1, 5, dtype=torch.long))
    with pytest.raises(ValueError, match="attention_mask"):
        model(input_values=torch.randn(2, 5, 3), attention_mask=torch.ones(3, 5))
    with pytest.raises(ValueError, match="rate"):
        model(input_values=torch.randn(2, 5, 3), rate=0)


def test_pixel_values_are_read_as_a_raster_order_sequence():
    model = S4DModel(tiny(input_dim=3)).eval()
    image = torch.randn(2, 3, 4, 5)
    sequence = image.permute(0, 2, 3, 1).reshape(2, 20, 3)  # row by row, channels as features
    with torch.no_grad():
        a = model(pixel_values=image).last_hidden_state
        b = model(input_values=sequence).last_hidden_state
    assert torch.equal(a, b)
    mono = S4DModel(tiny(input_dim=1)).eval()
    wave = torch.randn(2, 30)
    with torch.no_grad():
        assert torch.equal(mono(input_values=wave).last_hidden_state, mono(input_values=wave[..., None]).last_hidden_state)


@pytest.mark.parametrize("problem_type,labels_fn,loss_fn", [
    ("single_label_classification", lambda: torch.tensor([0, 2, 1]), lambda lg, y: F.cross_entropy(lg, y)),
    ("multi_label_classification", lambda: torch.tensor([[1.0, 0, 1], [0, 0, 1], [1, 1, 0]]),
     lambda lg, y: F.binary_cross_entropy_with_logits(lg, y)),
    ("regression", lambda: torch.randn(3, 3), lambda lg, y: F.mse_loss(lg, y)),
])
def test_classification_losses(problem_type, labels_fn, loss_fn):
    model = S4DForSequenceClassification(tiny(input_dim=2, num_labels=3, problem_type=problem_type)).eval()
    x, labels = torch.randn(3, 12, 2), labels_fn()
    out = model(input_values=x, labels=labels)
    pooled = model.s4d(input_values=x).last_hidden_state.mean(1)
    assert torch.allclose(out.logits, model.classifier(pooled), atol=1e-6)
    assert torch.allclose(out.loss, loss_fn(out.logits, labels), atol=1e-6)


def test_single_output_regression_infers_problem_type():
    model = S4DForSequenceClassification(tiny(input_dim=1, num_labels=1)).eval()
    x, y = torch.randn(4, 10), torch.randn(4)
    out = model(input_values=x, labels=y)
    assert model.config.problem_type == "regression"
    assert torch.allclose(out.loss, F.mse_loss(out.logits.squeeze(-1), y), atol=1e-6)


# -- padding ---------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("bidirectional", [False, True])
@pytest.mark.parametrize("pooling", ["mean", "last"])
def test_right_padding_does_not_change_classification(bidirectional, pooling):
    model = S4DForSequenceClassification(tiny(input_dim=2, num_labels=4, bidirectional=bidirectional,
                                              pooling=pooling, prenorm=True)).eval()
    short, other = torch.randn(1, 9, 2), torch.randn(1, 15, 2)
    batch = torch.cat([torch.cat([short, 5 * torch.randn(1, 6, 2)], 1), other])  # garbage in the padding
    mask = torch.tensor([[1] * 9 + [0] * 6, [1] * 15])
    with torch.no_grad():
        alone = model(input_values=short).logits
        padded = model(input_values=batch, attention_mask=mask).logits
        unmasked = model(input_values=batch).logits
    assert (padded[0] - alone[0]).abs().max() < 1e-5
    assert (unmasked[0] - alone[0]).abs().max() > 1e-3  # the mask is what makes it equal


# -- save / load, precision, remote code ----------------------------------------------------------------------


def test_save_load_is_bit_identical_for_every_head(tmp_path):
    cases = [
        (S4DForCausalLM, AutoModelForCausalLM, tiny(vocab_size=40, prenorm=True, norm="batch"),
         dict(input_ids=torch.randint(0, 40, (2, 17)))),
        (S4DForSequenceClassification, AutoModelForSequenceClassification,
         tiny(input_dim=3, num_labels=5, bidirectional=True, channels=2, n_ssm=4, init="diag", disc="bilinear"),
         dict(input_values=torch.randn(2, 17, 3))),
        (S4DModel, AutoModel, tiny(input_dim=1, is_real=True, init="real", dt_transform="softplus"),
         dict(input_values=torch.randn(2, 17))),
    ]
    for i, (cls, auto, config, inputs) in enumerate(cases):
        model = cls(config).eval()
        model.save_pretrained(tmp_path / str(i))
        loaded = auto.from_pretrained(tmp_path / str(i))
        assert type(loaded) is cls
        with torch.no_grad():
            a, b = model(**inputs)[0], loaded(**inputs)[0]
        assert torch.equal(a, b), cls.__name__
        for (name, p), (_, q) in zip(model.state_dict().items(), loaded.state_dict().items()):
            assert torch.equal(p, q), name


def test_auto_model_loads_the_backbone_of_a_head_checkpoint(tmp_path):
    model = S4DForCausalLM(tiny(vocab_size=30)).eval()
    model.save_pretrained(tmp_path)
    backbone = AutoModel.from_pretrained(tmp_path)
    x = torch.randint(0, 30, (1, 9))
    with torch.no_grad():
        assert torch.equal(backbone(x).last_hidden_state, model.s4d(x).last_hidden_state)


def test_bfloat16_load_keeps_ssm_in_float32_and_stays_close(tmp_path):
    model = S4DForCausalLM(tiny(vocab_size=50, d_model=32, prenorm=True)).eval()
    model.save_pretrained(tmp_path)
    low = AutoModelForCausalLM.from_pretrained(tmp_path, dtype=torch.bfloat16)
    for name, p in low.named_parameters():
        expected = torch.float32 if (".kernel." in name or name.endswith("mixer.D")) else torch.bfloat16
        assert p.dtype == expected, name
    x = torch.randint(0, 50, (2, 2048))
    with torch.no_grad():
        ref, out = model(x).logits, low(x).logits
    assert torch.isfinite(out).all()
    assert (out - ref).abs().max() < 0.05 * ref.abs().max()
    with torch.no_grad(), torch.autocast("cpu", dtype=torch.bfloat16):  # kernel + FFT still fp32 under autocast
        auto = model(x).logits
    assert torch.isfinite(auto).all() and (auto - ref).abs().max() < 0.05 * ref.abs().max()


REMOTE_SCRIPT = textwrap.dedent("""
    import sys
    sys.modules["s4d_hf"] = None  # s4d_hf is not installed on this machine
    try:
        import s4d_hf
        raise SystemExit("s4d_hf should not be importable")
    except ImportError:
        pass
    import torch
    from transformers import AutoModel, AutoModelForCausalLM, AutoModelForSequenceClassification
    folder = sys.argv[1]
    x = torch.load(folder + "/inputs.pt")
    for auto in (AutoModelForCausalLM, AutoModelForSequenceClassification, AutoModel):
        model = auto.from_pretrained(folder, trust_remote_code=True).eval()
        assert type(model).__module__.startswith("transformers_modules"), type(model).__module__
    lm = AutoModelForCausalLM.from_pretrained(folder, trust_remote_code=True).eval()
    with torch.no_grad():
        torch.save({"logits": lm(x).logits, "generated": lm.generate(x[:, :4], max_new_tokens=5, do_sample=False)},
                   folder + "/outputs.pt")
""")


def test_trust_remote_code_without_the_package(tmp_path):
    folder = tmp_path / "lm"
    model = S4DForCausalLM(tiny(vocab_size=30, init="inv")).eval()
    model.save_pretrained(folder)
    config = json.loads((folder / "config.json").read_text())
    assert set(config["auto_map"]) == {"AutoConfig", "AutoModel", "AutoModelForSequenceClassification",
                                       "AutoModelForAudioClassification", "AutoModelForImageClassification",
                                       "AutoModelForCausalLM"}
    assert {"modeling_s4d.py", "configuration_s4d.py", "ssm_s4d.py"} <= set(os.listdir(folder))
    x = torch.randint(0, 30, (2, 11))
    torch.save(x, folder / "inputs.pt")
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
    env.update(HF_HUB_OFFLINE="1", HF_MODULES_CACHE=str(tmp_path / "modules"))
    script = tmp_path / "load.py"
    script.write_text(REMOTE_SCRIPT)
    result = subprocess.run([sys.executable, str(script), str(folder)], cwd=tmp_path, env=env,
                            capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr[-3000:]
    remote = torch.load(folder / "outputs.pt")
    with torch.no_grad():
        assert torch.equal(remote["logits"], model(x).logits)
        assert torch.equal(remote["generated"], model.generate(x[:, :4], max_new_tokens=5, do_sample=False))


# -- training conveniences ------------------------------------------------------------------------------------


def test_gradient_checkpointing_gives_the_same_gradients():
    config = tiny(input_dim=2, num_labels=3, prenorm=True)
    model = S4DForSequenceClassification(config).train()
    x, y = torch.randn(3, 20, 2), torch.tensor([0, 1, 2])
    model(input_values=x, labels=y).loss.backward()
    plain = {n: p.grad.clone() for n, p in model.named_parameters()}
    model.zero_grad()
    # the newer transformers 5 name; gradient_checkpointing_enable is deprecated where both exist
    getattr(model, "activation_checkpointing_enable", model.gradient_checkpointing_enable)()
    assert model.s4d.gradient_checkpointing
    model(input_values=x, labels=y).loss.backward()
    for n, p in model.named_parameters():
        assert torch.allclose(p.grad, plain[n], atol=1e-6), n


def test_ssm_parameter_groups():
    model = S4DForCausalLM(tiny(vocab_size=20, ssm_lr=2e-3))
    groups = ssm_parameter_groups(model, lr=1e-2, weight_decay=0.1)
    names = {id(p): n for n, p in model.named_parameters()}
    by_lr = {(g["lr"], g["weight_decay"]): sorted(names[id(p)] for p in g["params"]) for g in groups}
    ssm = by_lr[(2e-3, 0.0)]
    assert ssm and all(n.split(".")[-1] in {"inv_dt", "A_real", "A_imag", "B"} for n in ssm)
    assert len(ssm) == 2 * 4  # per layer: inv_dt, A_real, A_imag, B
    decay = by_lr[(1e-2, 0.1)]
    assert any(n.endswith("kernel.C") for n in decay) and any(n.endswith("mixer.D") for n in decay)
    assert all(not n.endswith("bias") and ".norm." not in n for n in decay)
    assert sum(len(g["params"]) for g in groups) == len(list(model.parameters()))  # tied weights counted once
    torch.optim.AdamW(groups)  # valid groups


def test_input_embeddings_and_inputs_embeds():
    model = S4DForCausalLM(tiny(vocab_size=25)).eval()
    assert model.get_input_embeddings() is model.s4d.embeddings
    assert model.get_output_embeddings().weight is model.get_input_embeddings().weight  # tied
    x = torch.randint(0, 25, (2, 8))
    with torch.no_grad():
        a = model(input_ids=x).logits
        b = model(inputs_embeds=model.get_input_embeddings()(x)).logits
    assert torch.equal(a, b)
    model.resize_token_embeddings(31)
    assert model.lm_head.weight.shape[0] == 31 and model.config.vocab_size == 31


def test_hidden_states_and_tuple_outputs():
    model = S4DForCausalLM(tiny(vocab_size=25, n_layers=3)).eval()
    x = torch.randint(0, 25, (2, 8))
    with torch.no_grad():
        out = model(x, output_hidden_states=True, labels=x)
        tup = model(x, output_hidden_states=True, labels=x, return_dict=False)
    assert len(out.hidden_states) == 4
    assert torch.equal(out.hidden_states[0], model.s4d.embeddings(x))
    assert torch.equal(tup[0], out.loss) and torch.equal(tup[1], out.logits)
    assert all(torch.equal(a, b) for a, b in zip(tup[-1], out.hidden_states))
    shifted = F.cross_entropy(out.logits[:, :-1].reshape(-1, 25), x[:, 1:].reshape(-1))
    assert torch.allclose(out.loss, shifted, atol=1e-6)
