"""`s4d-hf convert` refuses what it cannot convert faithfully or safely: exit code 2 (a usage error; 1 when the
conversion ran and its verification or the write failed), one line on stderr naming the reason (and the flag to
pass, where one helps), no traceback, and no folder left behind."""

import os

import pytest
import torch
from omegaconf import OmegaConf

from s4d_hf.cli import main

from conftest import FIXTURES, load_npz


def refuse(capsys, tmp_path, src, *args, out=None, code=2) -> str:
    """Run a conversion that must be refused with exit code ``code``; return its one-line error message."""
    before = set(os.listdir(tmp_path))
    out = out or tmp_path / "out"
    rc = main(["convert", str(src), str(out), *map(str, args)])
    captured = capsys.readouterr()
    assert rc == code, captured.out + captured.err
    lines = captured.err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("s4d-hf convert: error: "), captured.err
    assert set(os.listdir(tmp_path)) == before, "a folder or temp file was left behind"
    return lines[0]


def f1_state_dict() -> dict:
    return torch.load(FIXTURES / "f1_state_dict.pt", weights_only=True)["model"]


def f3a_state_dict() -> dict:
    return torch.load(FIXTURES / "f3a_scifar_s4d_state_dict.pt", weights_only=True)


def save(tmp_path, obj, name="src.pt"):
    path = tmp_path / name
    torch.save(obj, path)
    return path


# -- not S4D ------------------------------------------------------------------------------------------------------


def test_dplr_s4_checkpoints_are_refused_as_s4_not_s4d(tmp_path, capsys):
    sd = f3a_state_dict()
    sd["model.layers.0.layer.layer.kernel.P"] = torch.zeros(1, 2, 4, 2)
    sd["model.layers.0.layer.layer.kernel.l_kernel"] = torch.tensor(0)
    message = refuse(capsys, tmp_path, save(tmp_path, sd), "--config", FIXTURES / "f3a_scifar_s4d_hparams.yaml")
    assert "S4 (DPLR)" in message and "not S4D" in message and "kernel.P" in message
    # the same refusal for an example.py-style S4Block model, and for a config that says mode: nplr
    block = {f"s4_layers.0.{k}": torch.from_numpy(v) for k, v in load_npz("f2a_diaglin_zoh_exp_state_dict.npz").items()}
    block["s4_layers.0.layer.kernel.P"] = torch.zeros(1, 16, 4, 2)
    assert "not S4D" in refuse(capsys, tmp_path, save(tmp_path, block, "block.pt"))
    config = OmegaConf.load(FIXTURES / "f3a_scifar_s4d_hparams.yaml")
    config.model.layer.mode = "nplr"
    OmegaConf.save(config, tmp_path / "nplr.yaml")
    message = refuse(capsys, tmp_path, FIXTURES / "f3a_scifar_s4d_state_dict.pt", "--config", tmp_path / "nplr.yaml")
    assert "S4 (DPLR)" in message and "not S4D" in message


def test_transposed_layernorm_is_refused_not_misconverted(tmp_path, capsys):
    sd = f3a_state_dict()
    for i in range(2):
        del sd[f"model.layers.{i}.norm.norm.weight"], sd[f"model.layers.{i}.norm.norm.bias"]
        sd[f"model.layers.{i}.norm.norm.m"], sd[f"model.layers.{i}.norm.norm.s"] = torch.zeros(1), torch.ones(1)
    message = refuse(capsys, tmp_path, save(tmp_path, sd), "--config", FIXTURES / "f3a_scifar_s4d_hparams.yaml")
    assert "TransposedLN" in message


def test_unsupported_framework_options_are_named(tmp_path, capsys):
    for key, value in [("model.layer.gate", 4), ("model.layer.disc", "dss"), ("model.bidirectional", True),
                       ("model.layer.dt_transform", "relu")]:
        config = OmegaConf.load(FIXTURES / "f3a_scifar_s4d_hparams.yaml")
        OmegaConf.update(config, key, value)
        OmegaConf.save(config, tmp_path / "config.yaml")
        message = refuse(capsys, tmp_path, FIXTURES / "f3a_scifar_s4d_state_dict.pt", "--config",
                         tmp_path / "config.yaml")
        assert key.split(".")[-1] in message and "not supported" in message, message


def test_unknown_tensors_are_listed(tmp_path, capsys):
    sd = f1_state_dict()
    sd["s4_layers.0.extra.weight"] = torch.zeros(3)
    sd["pos_emb"] = torch.zeros(3)
    message = refuse(capsys, tmp_path, save(tmp_path, {"model": sd, "acc": 1.0, "epoch": 1}))
    assert "2 tensors" in message and "s4_layers.0.extra.weight" in message and "pos_emb" in message


def test_a_bare_s4block_state_dict_is_not_a_model(tmp_path, capsys):
    block = {k: torch.from_numpy(v) for k, v in load_npz("f2a_diaglin_zoh_exp_state_dict.npz").items()}
    assert "single S4Block" in refuse(capsys, tmp_path, save(tmp_path, block))


# -- missing or contradicting options -------------------------------------------------------------------------------


def test_framework_pt_without_config_names_the_flags(tmp_path, capsys):
    message = refuse(capsys, tmp_path, FIXTURES / "f3a_scifar_s4d_state_dict.pt")
    assert "--config" in message and "--dt-transform" in message and "--decoder-mode" in message


def test_non_glu_s4block_needs_final_act(tmp_path, capsys):
    sd = {f"s4_layers.0.{k}": torch.from_numpy(v) for k, v in load_npz("f2a_diaglin_zoh_exp_state_dict.npz").items()}
    sd["s4_layers.0.output_linear.0.weight"] = sd["s4_layers.0.output_linear.0.weight"][:16]
    sd["s4_layers.0.output_linear.0.bias"] = sd["s4_layers.0.output_linear.0.bias"][:16]
    sd.update({"encoder.weight": torch.randn(16, 2), "encoder.bias": torch.randn(16), "norms.0.weight": torch.ones(16),
               "norms.0.bias": torch.zeros(16), "decoder.weight": torch.randn(3, 16), "decoder.bias": torch.zeros(3)})
    src = save(tmp_path, sd)
    assert "--final-act id" in refuse(capsys, tmp_path, src)
    assert main(["convert", str(src), str(tmp_path / "ok"), "--final-act", "id"]) == 0
    capsys.readouterr()


def test_flags_that_contradict_the_checkpoint(tmp_path, capsys):
    src = FIXTURES / "f1_state_dict.pt"
    assert "contradicts" in refuse(capsys, tmp_path, src, "--dt-transform", "softplus")
    assert "contradicts" in refuse(capsys, tmp_path, src, "--num-labels", "7")
    assert "--format s4block does not match" in refuse(capsys, tmp_path, src, "--format", "s4block")
    assert "--labels names 2 classes" in refuse(capsys, tmp_path, src, "--labels", "cat,dog")
    assert "applies to the lightning format" in refuse(capsys, tmp_path, src, "--config",
                                                       FIXTURES / "f3a_scifar_s4d_hparams.yaml")
    message = refuse(capsys, tmp_path, FIXTURES / "f3c_s4d_minimal_cifar_state_dict.pt", "--config",
                     FIXTURES / "f3a_scifar_s4d_hparams.yaml")
    assert "model.layer._name_" in message  # the config of another run


# -- unsafe or unreadable files ------------------------------------------------------------------------------------


class MakesMarker:
    """Unpickling this object creates a folder: proof of code execution."""

    def __init__(self, path):
        self.path = str(path)

    def __reduce__(self):
        return (os.mkdir, (self.path,))


@pytest.mark.parametrize("container", ["ckpt", "pt"])
def test_pickled_objects_outside_the_allow_list_are_refused_without_running(container, tmp_path, capsys):
    marker = tmp_path / "marker"
    if container == "ckpt":  # a Lightning file: the omegaconf classes are allowed, nothing else
        obj = {"state_dict": f3a_state_dict(), "pytorch-lightning_version": "2.6.6",
               "hyper_parameters": OmegaConf.load(FIXTURES / "f3a_scifar_s4d_hparams.yaml"),
               "callbacks": {"evil": MakesMarker(marker)}}
    else:
        obj = {"model": f1_state_dict(), "acc": MakesMarker(marker)}
    src = save(tmp_path, obj, "evil." + container)
    message = refuse(capsys, tmp_path, src)
    assert "posix.mkdir" in message and "without executing it" in message and "--trust-pickle" in message
    assert not marker.exists()
    torch.load(src, weights_only=False)  # control: the file really does run code when unpickled in full
    assert marker.exists()


def test_trust_pickle_loads_with_a_warning(tmp_path, capsys):
    rc = main(["convert", str(FIXTURES / "f1_state_dict.pt"), str(tmp_path / "out"), "--trust-pickle"])
    captured = capsys.readouterr()
    assert rc == 0 and "warning: --trust-pickle" in captured.err and "arbitrary code" in captured.err


def test_unreadable_files_are_refused(tmp_path, capsys):
    data = (FIXTURES / "f1_state_dict.pt").read_bytes()
    (tmp_path / "truncated.pt").write_bytes(data[: len(data) // 2])
    assert "not a readable PyTorch checkpoint" in refuse(capsys, tmp_path, tmp_path / "truncated.pt")
    (tmp_path / "notes.txt").write_text("learning rate 0.01\n")
    assert "not a readable PyTorch checkpoint" in refuse(capsys, tmp_path, tmp_path / "notes.txt")
    (tmp_path / "image.pt").write_bytes(b"\x89PNG\r\n\x1a\n" + bytes(range(256)))
    assert "not a readable PyTorch checkpoint" in refuse(capsys, tmp_path, tmp_path / "image.pt")
    assert "not a model checkpoint" in refuse(capsys, tmp_path, save(tmp_path, [1, 2, 3], "list.pt"))
    assert "not a model checkpoint" in refuse(capsys, tmp_path, save(tmp_path, {"lr": 0.1}, "dict.pt"))
    assert "is not a file" in refuse(capsys, tmp_path, tmp_path / "missing.pt")


# -- the output folder ----------------------------------------------------------------------------------------------


def test_existing_out_needs_overwrite(tmp_path, capsys):
    out = tmp_path / "out"
    out.mkdir()
    (out / "keep.txt").write_text("mine")
    message = refuse(capsys, tmp_path, FIXTURES / "f1_state_dict.pt", out=out)
    assert "already exists" in message and "--overwrite" in message
    assert (out / "keep.txt").read_text() == "mine"
    assert main(["convert", str(FIXTURES / "f1_state_dict.pt"), str(out), "--overwrite"]) == 0
    capsys.readouterr()
    assert not (out / "keep.txt").exists() and (out / "model.safetensors").exists()
    assert sorted(os.listdir(tmp_path)) == ["out"]  # no temp or backup folder left


def test_failed_verification_writes_nothing_unless_forced(tmp_path, capsys):
    message = refuse(capsys, tmp_path, FIXTURES / "f1_state_dict.pt", "--tolerance", "0", code=1)
    assert "verification failed" in message and "--force" in message
    assert main(["convert", str(FIXTURES / "f1_state_dict.pt"), str(tmp_path / "out"), "--tolerance", "0",
                 "--force"]) == 0
    assert "FAILED" in capsys.readouterr().out
    assert "**FAILED** — written anyway because `--force` was given." in (tmp_path / "out" / "README.md").read_text()


def test_a_failure_while_writing_leaves_no_partial_folder(tmp_path, capsys, monkeypatch):
    import s4d_hf.conversion.pipeline as pipeline

    def broken_card(*args, **kwargs):
        raise RuntimeError("disk full")

    monkeypatch.setattr(pipeline, "write_model_card", broken_card)
    message = refuse(capsys, tmp_path, FIXTURES / "f1_state_dict.pt", out=tmp_path / "new" / "deeper" / "out",
                     code=1)
    assert "RuntimeError: disk full" in message  # the parents it created are removed too
