"""`s4d-hf convert` turns checkpoints of the original state-spaces/s4 code into folders that compute the same function.

Truth is the reference code's own outputs (tests/fixtures, see ../shared/fixtures/reference/MANIFEST.md): f1/f1b
(example.py + s4d.py), f3a/f3c (real Lightning checkpoints of the training framework) and the f2 S4Block fixtures
embedded in example.py-style models, whose expected logits are computed here from the stored block outputs.
"""

import hashlib
import json
import pathlib

import numpy as np
import pytest
import torch
from transformers import AutoModelForSequenceClassification

from s4d_hf import S4DConfig, S4DForSequenceClassification
from s4d_hf.cli import main
from s4d_hf.conversion import (
    export_state_dict,
    load_checkpoint,
    model_from_state_dict,
    plan_conversion,
    reference_logits,
)

from conftest import FIXTURES, load_npz

TOL = 1e-5
F2 = json.loads((FIXTURES / "f2_options.json").read_text())


def err(a: torch.Tensor, b) -> float:
    b = torch.as_tensor(b)
    assert a.shape == b.shape, (a.shape, b.shape)
    return (a.detach().double() - b.double()).abs().max().item()


def convert(capsys, *argv) -> str:
    """Run `s4d-hf convert` in-process; assert success; return its stdout."""
    rc = main(["convert", *map(str, argv)])
    captured = capsys.readouterr()
    assert rc == 0, captured.err
    assert captured.err == ""
    return captured.out


def card_row(folder: pathlib.Path, option: str) -> list[str]:
    """The cells of one option row of the model card: value, source, detail."""
    for line in (folder / "README.md").read_text().splitlines():
        if line.startswith(f"| `{option}` |"):
            return [c.strip() for c in line.strip("|").split("|")][1:]
    raise AssertionError(f"no card row for {option}")


def kernels(model, L: int) -> list[torch.Tensor]:
    with torch.no_grad():
        return [layer.mixer.kernel.kernel(L) for layer in model.s4d.layers]


# -- example.py + minimal s4d.py (f1 post-norm, f1b pre-norm) -------------------------------------------------------


@pytest.mark.parametrize("name, flags", [("f1", []), ("f1b", ["--prenorm"])])
def test_example_checkpoint_reproduces_reference_logits(name, flags, tmp_path, capsys):
    src, out = FIXTURES / f"{name}_state_dict.pt", tmp_path / name
    stdout = convert(capsys, src, out, *flags)
    assert "round trip to the source layout" in stdout and "FAILED" not in stdout
    io = load_npz(f"{name}_io.npz")
    model = AutoModelForSequenceClassification.from_pretrained(out).eval()
    with torch.no_grad():
        result = model(input_values=torch.from_numpy(io["input"]), output_hidden_states=True)
        assert err(result.logits, io["logits"]) <= TOL
        for i in range(3):  # encoder output, after layer 0, after layer 1
            assert err(result.hidden_states[i], io[f"hidden_{i}"]) <= TOL
        y, _ = model.s4d.layers[0].mixer(torch.from_numpy(io["layer0_input_BHL"]).transpose(1, 2))
        assert err(y.transpose(1, 2), io["layer0_output_BHL"]) <= TOL
    for i, K in enumerate(kernels(model, 32)):
        assert err(K[0], io[f"kernel_layer{i}"]) <= TOL

    # the model card states provenance and where each option came from
    card = (out / "README.md").read_text()
    assert hashlib.sha256(src.read_bytes()).hexdigest() in card and src.name in card
    assert "`example` (auto-detected)" in card and "**Passed.**" in card
    assert card_row(out, "prenorm")[:2] == (["`True`", "flag"] if flags else ["`False`", "default"])
    assert card_row(out, "d_state")[:2] == ["`8`", "weights"]
    assert card_row(out, "dt_transform")[:2] == ["`'exp'`", "format"]


def test_example_bare_state_dict_with_label_metadata(tmp_path, capsys):
    """example.py's state dict saved on its own (not in the {'model', 'acc', 'epoch'} dict), with class names."""
    src, out = tmp_path / "bare.pt", tmp_path / "out"
    torch.save(torch.load(FIXTURES / "f1_state_dict.pt", weights_only=True)["model"], src)
    names = "airplane,automobile,bird,cat,deer,dog,frog,horse,ship,truck"
    convert(capsys, src, out, "--labels", names, "--task", "classification", "--num-labels", "10")
    model = AutoModelForSequenceClassification.from_pretrained(out).eval()
    assert model.config.id2label[3] == "cat" and model.config.problem_type == "single_label_classification"
    io = load_npz("f1_io.npz")
    with torch.no_grad():
        assert err(model(input_values=torch.from_numpy(io["input"])).logits, io["logits"]) <= TOL
    assert "bare state dict" in (out / "README.md").read_text()
    assert card_row(out, "labels")[1] == "flag"


def test_model_from_state_dict_api_matches_the_reference():
    sd = {k: torch.from_numpy(v) for k, v in load_npz("f1b_state_dict.npz").items()}
    model = model_from_state_dict(sd, "example", prenorm=True)
    io = load_npz("f1b_io.npz")
    with torch.no_grad():
        assert err(model(input_values=torch.from_numpy(io["input"])).logits, io["logits"]) <= TOL
    # the independent float64 re-implementation used by the verification agrees with the reference too
    plan = plan_conversion(sd, "example", flags={"prenorm": True})
    assert err(reference_logits(sd, plan, torch.from_numpy(io["input"])), io["logits"]) <= TOL


# -- the training framework: real Lightning checkpoints (f3a sCIFAR S4D, f3c s4d-minimal) -------------------------


@pytest.mark.parametrize("name", ["f3a_scifar_s4d", "f3c_s4d_minimal_cifar"])
@pytest.mark.parametrize("container", ["ckpt", "pt+config"])
def test_framework_checkpoint_reproduces_reference_logits(name, container, tmp_path, capsys):
    if container == "ckpt":
        args = [FIXTURES / f"{name}.ckpt"]
    else:
        args = [FIXTURES / f"{name}_state_dict.pt", "--config", FIXTURES / f"{name}_hparams.yaml"]
    out = tmp_path / "out"
    convert(capsys, args[0], out, *args[1:])
    io = load_npz(f"{name}_io.npz")
    model = AutoModelForSequenceClassification.from_pretrained(out).eval()
    with torch.no_grad():
        result = model(input_values=torch.from_numpy(io["input_BLD"]), output_hidden_states=True)
        assert err(result.logits, io["logits"]) <= TOL
        assert err(result.hidden_states[0], io["encoder_output"]) <= TOL
        assert err(result.hidden_states[-1], io["backbone_output"]) <= TOL
    for i, K in enumerate(kernels(model, 32)):
        assert err(K.reshape(io[f"kernel_layer{i}"].shape), io[f"kernel_layer{i}"]) <= TOL
    if name.startswith("f3a"):  # the framework preset's softplus must come from the config, not the kernel default
        assert model.config.dt_transform == "softplus" and model.config.bidirectional and model.config.n_ssm == 2
        assert card_row(out, "dt_transform")[:2] == ["`'softplus'`", "config"]
        assert card_row(out, "pooling")[:2] == ["`'mean'`", "config"]
    assert model.config.problem_type == "single_label_classification"


# -- standalone S4Block(mode='diag') in an example.py-style backbone (f2a-f2g) ------------------------------------


def layer_norm(x: np.ndarray, w: np.ndarray, b: np.ndarray, eps: float = 1e-5) -> np.ndarray:
    mean = x.mean(-1, keepdims=True)
    return (x - mean) / np.sqrt(((x - mean) ** 2).mean(-1, keepdims=True) + eps) * w + b


def s4block_model(name: str, output_key: str = "output_BHL") -> tuple[dict, np.ndarray, np.ndarray]:
    """An example.py-style S4Model state dict around the f2 block, the model input that makes the block see the
    fixture's input, and the logits implied by the fixture's block output (post-norm, mean pooling, Linear)."""
    rng = np.random.default_rng(0)
    io, block = load_npz(f"{name}_io.npz"), load_npz(f"{name}_state_dict.npz")
    H, labels = 16, 5
    W = np.eye(H) + rng.normal(size=(H, H)) / 8  # a random, well-conditioned encoder
    b = rng.normal(size=H) / 10
    x = io["input_BHL"].transpose(0, 2, 1).astype(np.float64)  # what the block must receive, (B, L, H)
    model_input = (x - b) @ np.linalg.inv(W).T  # encoder(model_input) = x
    y = io[output_key].transpose(0, 2, 1)  # the block output recorded by the reference code
    ln_w, ln_b = 1 + rng.normal(size=H) / 10, rng.normal(size=H) / 10
    dec_w, dec_b = rng.normal(size=(labels, H)), rng.normal(size=labels)
    logits = layer_norm(x + y, ln_w, ln_b).mean(1) @ dec_w.T + dec_b
    sd = {"encoder.weight": W, "encoder.bias": b}
    sd.update({f"s4_layers.0.{k}": v for k, v in block.items()})
    sd.update({"norms.0.weight": ln_w, "norms.0.bias": ln_b, "decoder.weight": dec_w, "decoder.bias": dec_b})
    return {k: torch.tensor(v, dtype=torch.float32) for k, v in sd.items()}, model_input, logits


def f2_flags(options: dict) -> list[str]:
    """The flags for the options the weights do not store, where they differ from the S4Block defaults."""
    flags = []
    if options["disc"] != "zoh":
        flags += ["--disc", options["disc"]]
    if options["dt_transform"] != "exp":
        flags += ["--dt-transform", options["dt_transform"]]
    if options["real_transform"] != "exp":
        flags += ["--real-transform", options["real_transform"]]
    return flags


@pytest.mark.parametrize("name", sorted(F2))
def test_s4block_model_reproduces_reference_block_outputs(name, tmp_path, capsys):
    sd, model_input, logits = s4block_model(name)
    src, out = tmp_path / "model.pt", tmp_path / "out"
    torch.save(sd, src)
    convert(capsys, src, out, *f2_flags(F2[name]))
    model = AutoModelForSequenceClassification.from_pretrained(out).eval()
    io = load_npz(f"{name}_io.npz")
    x = torch.tensor(model_input, dtype=torch.float32)
    with torch.no_grad():
        assert err(model(input_values=x).logits, logits) <= TOL
        assert err(model.s4d.layers[0].mixer.kernel.kernel(32), io["kernel_CHL"]) <= TOL
        if name == "f2a_diaglin_zoh_exp":  # dt scaled by rate: the reference's 16 kHz -> 8 kHz evaluation
            for rate, key in [(2.0, "output_rate2_BHL"), (0.5, "output_rate0.5_BHL")]:
                assert err(model(input_values=x, rate=rate).logits, s4block_model(name, key)[2]) <= TOL
    # structure inferred from the shapes
    config, options = model.config, F2[name]
    assert (config.bidirectional, config.channels, config.is_real) == (
        options["bidirectional"], options["channels"], options["is_real"])
    assert config.disc == options["disc"] and config.dt_transform == options["dt_transform"]


def test_s4block_dt_transform_default_is_exp_so_softplus_weights_need_the_flag(tmp_path, capsys):
    """dt_transform is not in the weights: converting f2g (softplus) with the S4Block default (exp) gives a
    consistent but different model, which is why the flag exists and the card records the default."""
    sd, model_input, logits = s4block_model("f2g_dt_softplus")
    src, out = tmp_path / "model.pt", tmp_path / "out"
    torch.save(sd, src)
    convert(capsys, src, out)
    assert card_row(out, "dt_transform")[:2] == ["`'exp'`", "default"]
    model = AutoModelForSequenceClassification.from_pretrained(out).eval()
    with torch.no_grad():
        assert err(model(input_values=torch.tensor(model_input, dtype=torch.float32)).logits, logits) > 1e-3


# -- framework presets without a fixture file: Speech Commands (BatchNorm pre-norm, bidirectional, n_ssm=2), LRA -----


def framework_state_dict(model: S4DForSequenceClassification) -> dict[str, torch.Tensor]:
    """Write the key layout of state-spaces/s4's training framework from an S4D-HF model, by hand."""
    renames = [("s4d.input_proj.", "encoder.0."), ("s4d.embeddings.", "encoder.0."),
               ("classifier.", "decoder.0.output_transform."), ("s4d.norm_f.", "model.norm.norm.")]
    sd = {}
    for key, value in model.state_dict().items():
        new = key
        for old, ref in renames:
            if key.startswith(old):
                new = ref + key[len(old):]
        if key.startswith("s4d.layers."):
            i, rest = key[len("s4d.layers."):].split(".", 1)
            rest = (rest.replace("mixer.kernel.", "layer.layer.kernel.").replace("mixer.D", "layer.layer.D")
                    .replace("mixer.output_linear.", "layer.output_linear.0.").replace("norm.", "norm.norm."))
            new = f"model.layers.{i}.{rest}"
        sd[new] = value.detach().clone()
    return sd


def framework_config(config: S4DConfig, mode: str) -> dict:
    """The relevant part of a framework run's resolved config (hparams.yaml) for ``config``."""
    return {
        "model": {"_name_": "model", "d_model": config.d_model, "n_layers": config.n_layers,
                  "prenorm": config.prenorm, "norm": config.norm, "transposed": False, "bidirectional": False,
                  "residual": "R", "pool": {"_name_": "pool", "stride": 1, "expand": None}, "dropout": 0.0,
                  "layer": {"_name_": "s4", "mode": "diag", "init": "legs", "d_state": config.d_state,
                            "bidirectional": config.bidirectional, "n_ssm": config.n_ssm,
                            "final_act": config.final_act, "postact": None, "activation": "gelu",
                            "dt_transform": config.dt_transform, "l_max": config.l_max, "gate": None,
                            "bottleneck": None, "mult_act": None, "weight_norm": False, "layer": "fftconv"}},
        "encoder": "linear" if config.input_dim else "embedding",
        "decoder": {"_name_": "sequence", "mode": mode, "use_lengths": config.vocab_size is not None},
        "task": {"_name_": "base", "loss": "cross_entropy"},
        "dataset": {"_name_": "sc"},
    }


def perturbed(model: torch.nn.Module) -> torch.nn.Module:
    """Move every parameter and BatchNorm statistic off its initial value (which would hide mapping errors)."""
    generator = torch.Generator().manual_seed(1)
    with torch.no_grad():
        for name, tensor in model.state_dict().items():
            if tensor.is_floating_point():
                tensor.add_(torch.randn(tensor.shape, generator=generator) * 0.1)
                if name.endswith("running_var"):
                    tensor.abs_().add_(0.5)
            else:
                tensor.fill_(7)  # num_batches_tracked
    return model.eval()


PRESETS = {  # state-spaces/s4 experiment configs, shrunk: experiment -> (S4DConfig options, decoder mode)
    # sc/s4-sc: linear encoder, BatchNorm pre-norm + final norm, bidirectional, n_ssm 2, glu, mean pooling
    "sc": (dict(input_dim=1, num_labels=35, prenorm=True, bidirectional=True, n_ssm=2, final_act="glu",
                pooling="mean", l_max=24), "pool"),
    # sc/s4-sc-ablation: unidirectional, final_act id, last position
    "sc-ablation": (dict(input_dim=1, num_labels=35, prenorm=True, final_act="id", pooling="last", l_max=24), "last"),
    # lra/s4-listops: token embedding, BatchNorm post-norm, bidirectional, n_ssm 1, mean over the valid length
    "lra-listops": (dict(vocab_size=20, num_labels=10, prenorm=False, bidirectional=True, n_ssm=1, d_state=4,
                         pooling="mean"), "pool"),
}


@pytest.mark.parametrize("preset", sorted(PRESETS))
@pytest.mark.parametrize("container", ["ckpt", "pt+config"])
def test_framework_presets_convert_exactly(preset, container, tmp_path, capsys):
    """Speech Commands and LRA presets (no reference fixture file exists): a perturbed S4D model is written in the
    framework's key layout by hand, converted, and must compute the same function."""
    from omegaconf import OmegaConf

    options, mode = PRESETS[preset]
    # the framework has a final norm exactly when prenorm
    config = S4DConfig(**{"d_model": 16, "n_layers": 2, "d_state": 8, "final_norm": options["prenorm"], "norm": "batch",
                          "dt_transform": "softplus", "init": "legs", **options})
    original = perturbed(S4DForSequenceClassification(config))
    sd = framework_state_dict(original)
    assert "model.layers.1.norm.norm.num_batches_tracked" in sd
    assert ("model.norm.norm.running_var" in sd) == config.prenorm
    hparams = framework_config(config, mode)
    if container == "ckpt":
        src = tmp_path / "last.ckpt"
        torch.save({"epoch": 3, "global_step": 120, "pytorch-lightning_version": "2.6.6", "state_dict": sd,
                    "hparams_name": "config", "hyper_parameters": OmegaConf.create(hparams)}, src)
        args = []
    else:
        src, yaml = tmp_path / "model.pt", tmp_path / "hparams.yaml"
        torch.save(sd, src)
        OmegaConf.save(OmegaConf.create(hparams), yaml)
        args = ["--config", yaml]
    out = tmp_path / "out"
    convert(capsys, src, out, *args)
    model = AutoModelForSequenceClassification.from_pretrained(out).eval()
    for key in ("vocab_size", "input_dim", "norm", "prenorm", "final_norm", "bidirectional", "n_ssm", "final_act",
                "pooling", "dt_transform", "l_max", "d_state"):
        assert getattr(model.config, key) == getattr(config, key), key
    # longer than l_max (SC): the kernel is truncated to 24 taps
    x = torch.randint(0, 20, (3, 40)) if config.vocab_size else torch.randn(3, 40, 1)
    key = "input_ids" if config.vocab_size else "input_values"
    with torch.no_grad():
        assert err(model(**{key: x}).logits, original(**{key: x}).logits) <= TOL
    # exact round trip, and the independent re-implementation of the framework model agrees
    checkpoint = load_checkpoint(src)
    plan = plan_conversion(checkpoint.state_dict, hparams=hparams)
    exported = export_state_dict(model.state_dict(), plan)
    assert list(exported) == list(sd) and all(torch.equal(exported[k], sd[k]) for k in sd)
    with torch.no_grad():
        assert err(reference_logits(sd, plan, x), original(**{key: x}).logits) <= TOL
