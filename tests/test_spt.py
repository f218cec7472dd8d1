"""Self-pretraining (``--task self-pretraining``) and fine-tuning from a backbone (``--init-from``)."""

import argparse
import json

import numpy as np
import pytest
import torch
from safetensors.torch import load_file

from s4d_hf import S4DConfig, S4DForSequenceClassification, S4DModel
from s4d_hf.training.spt import S4DForSelfPretraining, SPTCollator

from test_training_data import TINY, make_level_npz, train_cli


def parse(*args):
    from s4d_hf.cli import train

    parser = argparse.ArgumentParser()
    train.add_arguments(parser)
    args = parser.parse_args([str(a) for a in args])
    args._argv = []
    return args


def tiny_model(objective, bidirectional=False, input_dim=2, seed=0):
    torch.manual_seed(seed)
    config = S4DConfig(input_dim=input_dim, d_model=16, n_layers=1, d_state=8, bidirectional=bidirectional)
    return S4DForSelfPretraining(config, objective=objective).eval()


def padded_batch(seed=0):
    rng = np.random.default_rng(seed)
    examples = [{"input_values": rng.standard_normal((n, 2)).astype(np.float32), "labels": 1} for n in (12, 7, 9)]
    return SPTCollator("time-series-classification")(examples)


def test_causal_loss_is_next_frame_regression_over_valid_pairs():
    model, batch = tiny_model("causal"), padded_batch()
    assert "labels" in batch and torch.equal(batch["labels"], batch["input_values"])  # dataset labels dropped
    with torch.no_grad():
        loss = model(**batch).loss
        # brute force, example by example on its unpadded inputs: frame t predicts frame t + 1
        errors = []
        for x, m in zip(batch["input_values"], batch["attention_mask"]):
            x = x[: int(m.sum())][None]
            prediction = model.head(model.s4d(input_values=x).last_hidden_state)
            errors.append((prediction[0, :-1] - x[0, 1:]).reshape(-1))
    expected = torch.cat(errors).pow(2).mean()
    torch.testing.assert_close(loss, expected, rtol=1e-5, atol=1e-6)


def test_masked_objective_hides_the_masked_frames():
    model, batch = tiny_model("masked", bidirectional=True), padded_batch()
    where = model._mask(batch["attention_mask"].bool())  # eval mode: the same mask on every call
    assert where.any() and not where[batch["attention_mask"] == 0].any()
    changed = dict(batch, input_values=batch["input_values"] + 5.0 * where[..., None])  # change only masked inputs
    with torch.no_grad():
        out, out_changed = model(**batch), model(**changed)
    # the predictions do not see the masked inputs, the targets (labels) are the originals
    torch.testing.assert_close(out.logits, out_changed.logits)
    expected = (out.logits[where] - batch["labels"][where]).pow(2).mean()
    torch.testing.assert_close(out.loss, expected)


def test_causal_refuses_bidirectional(tmp_path, capsys):
    data = make_level_npz(tmp_path / "d.npz")
    code = train_cli("--task", "self-pretraining", "--dataset", data, "--output-dir", tmp_path / "bb", *TINY,
                     "--bidirectional", "--spt-objective", "causal", "--max-steps", 2)
    assert code == 2 and "--spt-objective causal cannot train a --bidirectional model" in capsys.readouterr().err
    assert not (tmp_path / "bb").exists()


@pytest.mark.parametrize("objective,extra", [("causal", []), ("masked", ["--bidirectional"])])
def test_a_few_steps_reduce_the_pretraining_loss(tmp_path, objective, extra):
    from accelerate.state import AcceleratorState

    from s4d_hf.training.tasks import prepare_job
    from s4d_hf.training.trainer_backend import train

    data = make_level_npz(tmp_path / "d.npz", n=48, length=32)
    args = parse("--task", "self-pretraining", "--dataset", data, "--output-dir", tmp_path / "bb", *TINY, *extra,
                 "--max-steps", 30, "--batch-size", 16, "--lr", 0.01, "--warmup", 0)
    job = prepare_job(args)
    assert job.model.objective == objective and job.args.data_task == "time-series-classification"
    batch = job.collator(job.splits.eval)

    def eval_loss(model):
        model.eval()
        with torch.no_grad():
            return float(model(**batch).loss)

    before = eval_loss(job.model)
    AcceleratorState._reset_state(reset_partial_state=True)
    try:
        result = train(job)
    finally:
        AcceleratorState._reset_state(reset_partial_state=True)
    after = eval_loss(result.model)
    assert after < 0.8 * before, (before, after)


def pretrain(tmp_path, *extra, data=None):
    data = data or make_level_npz(tmp_path / "d.npz", n=48, length=16)
    out = tmp_path / "backbone"
    code = train_cli("--task", "self-pretraining", "--dataset", data, "--output-dir", out, *TINY, "--max-steps", 6,
                     "--batch-size", 16, *extra)
    assert code == 0
    return data, out


def test_backbone_folder_and_init_from_load_exactly(tmp_path, capsys):
    from transformers import AutoModel, set_seed

    from s4d_hf.training.tasks import prepare_job

    data, backbone = pretrain(tmp_path)
    saved = load_file(str(backbone / "model.safetensors"))
    assert not any(k.startswith(("s4d.", "head.")) for k in saved)  # a bare S4DModel, the SPT head dropped
    model = AutoModel.from_pretrained(backbone)
    assert type(model) is S4DModel
    for k, v in model.state_dict().items():
        torch.testing.assert_close(v, saved[k], rtol=0, atol=0)
    results = json.loads((backbone / "all_results.json").read_text())
    assert results["spt_objective"] == "causal" and results["global_step"] == 6

    # --init-from: a fresh classifier around the pretrained backbone
    args = parse("--task", "time-series-classification", "--dataset", data, "--output-dir", tmp_path / "ft",
                 "--init-from", backbone, "--max-steps", 2, "--seed", 3)
    job = prepare_job(args)
    assert f"loaded {len(saved)} backbone tensors; newly initialised: classifier.weight, classifier.bias" in \
        capsys.readouterr().err
    state = job.model.state_dict()
    assert job.model.config.d_model == 16 and job.model.config.num_labels == 2
    for k, v in saved.items():
        torch.testing.assert_close(state["s4d." + k], v, rtol=0, atol=0)
    set_seed(3)
    fresh = S4DForSequenceClassification(job.model.config)
    for k in ("classifier.weight", "classifier.bias"):
        torch.testing.assert_close(state[k], fresh.state_dict()[k], rtol=0, atol=0)  # the seed's fresh head
    trained = [k for k in saved if not torch.equal(saved[k], fresh.state_dict()["s4d." + k])]
    assert "layers.0.mixer.output_linear.weight" in trained  # loading changed something real

    # and the whole fine-tuning run works from it
    assert train_cli("--task", "time-series-classification", "--dataset", data, "--output-dir", tmp_path / "ft",
                     "--init-from", backbone, "--max-steps", 2, "--no-progress") == 0
    assert (tmp_path / "ft" / "model.safetensors").is_file()
    # the backbone carries the processor (normalisation statistics) a fine-tuning run on the same data saves
    assert json.loads((backbone / "preprocessor_config.json").read_text()) == \
        json.loads((tmp_path / "ft" / "preprocessor_config.json").read_text())


def refuse(tmp_path, capsys, data, *args, match):
    out = tmp_path / "ft"
    assert train_cli("--task", "time-series-classification", "--dataset", data, "--output-dir", out,
                     "--max-steps", 2, "--no-progress", *args) == 2
    err = capsys.readouterr().err
    assert match in err and "--init-from" in err, err
    assert not out.exists()


def test_bad_init_from(tmp_path, capsys):
    data, backbone = pretrain(tmp_path)
    refuse(tmp_path, capsys, data, "--init-from", tmp_path / "missing", match="no such folder")
    (tmp_path / "bert").mkdir()
    (tmp_path / "bert" / "config.json").write_text(json.dumps({"model_type": "bert"}))
    refuse(tmp_path, capsys, data, "--init-from", tmp_path / "bert", match="not an S4D model")
    refuse(tmp_path, capsys, data, "--init-from", backbone, "--d-model", 32,
           match="--d-model 32 does not match --init-from")
    wide = make_level_npz(tmp_path / "wide.npz", channels=3)
    refuse(tmp_path, capsys, wide, "--init-from", backbone, match="input_dim mismatch")
