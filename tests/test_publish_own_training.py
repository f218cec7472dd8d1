"""Publishing a folder trained outside s4d-hf (issue 16 item 3): a plain `transformers.Trainer` run saved with
`trainer.save_model` (config.json, model.safetensors, training_args.bin, no training_args.json, no README.md), the
processor saved by hand, the code files removed and the auto_map cut to the saved class. `s4d-hf release FOLDER
--dataset ... --task ...` (or `--info INFO.json`) measures it through its own processor and model, makes it portable
and writes its card; `s4d-hf push` uploads it without the pickle file, to the local Hub stand-in of test_hub.py."""

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from huggingface_hub import ModelCard
from test_hub import TOKEN, hub  # noqa: F401 - the local Hub stand-in (a fixture)
from test_training_data import make_level_npz

import s4d_hf
from s4d_hf.cli import main as cli
from s4d_hf.hub.remote_code import SOURCES, code_files

ROOT = Path(__file__).resolve().parent.parent
TASK = "time-series-classification"


@pytest.fixture(scope="module")
def own(tmp_path_factory):
    """(folder, data): a tiny S4D classifier trained 2 steps with a plain Trainer, saved with save_model."""
    from transformers import Trainer, TrainingArguments

    tmp = tmp_path_factory.mktemp("own")
    data = make_level_npz(tmp / "levels.npz", n=48, channels=2, label_names=np.array(["low", "high"]))
    with np.load(data) as arrays:
        X, y = arrays["X"], arrays["y"]
    torch.manual_seed(0)
    config = s4d_hf.S4DConfig(input_dim=2, num_labels=2, d_model=8, n_layers=1, d_state=4,
                              id2label={0: "low", 1: "high"}, label2id={"low": 0, "high": 1})
    processor = s4d_hf.S4DTimeSeriesProcessor(feature_size=2).fit(list(X))
    train = [{"input_values": torch.from_numpy(processor(x, return_tensors="np")["input_values"][0]),
              "labels": int(label)} for x, label in zip(X, y)]
    args = TrainingArguments(output_dir=str(tmp / "trainer"), use_cpu=True, report_to="none", max_steps=2,
                             save_strategy="no", per_device_train_batch_size=8, disable_tqdm=True)
    trainer = Trainer(model=s4d_hf.S4DForSequenceClassification(config), args=args, train_dataset=train)
    trainer.train()
    folder = tmp / "my-s4d"
    trainer.save_model(str(folder))
    processor.save_pretrained(folder)
    for path in folder.glob("*.py"):  # as saved where the code files were not copied
        path.unlink()
    saved = json.loads((folder / "config.json").read_text())
    saved["auto_map"] = {"AutoModelForSequenceClassification": "modeling_s4d.S4DForSequenceClassification"}
    (folder / "config.json").write_text(json.dumps(saved))
    assert (folder / "training_args.bin").is_file() and not (folder / "training_args.json").exists()
    assert not (folder / "README.md").exists()
    return folder, data


def _copy(own, tmp_path) -> Path:
    return Path(shutil.copytree(own[0], tmp_path / "my-s4d"))


def _last_json(capsys) -> dict:
    return json.loads(capsys.readouterr().out.strip().splitlines()[-1])


@pytest.fixture(scope="module")
def released(own, tmp_path_factory):
    """The own-training folder after `s4d-hf release --dataset --task --info` (licence and command overridden)."""
    folder = Path(shutil.copytree(own[0], tmp_path_factory.mktemp("released") / "my-s4d"))
    info = folder.parent / "info.json"
    info.write_text(json.dumps({"license": "mit", "dataset": {"license": "CC0-1.0"}}))
    rc = cli(["release", str(folder), "--dataset", str(own[1]), "--task", TASK, "--info", str(info),
              "--training-command", "python my_train.py --max-steps 2"])
    assert rc == 0
    return folder


def test_release_measures_writes_the_card_and_makes_the_folder_portable(released, own, capsys):
    folder = released
    card = ModelCard.load(folder / "README.md")
    measured = {r.metric_type: r.metric_value for r in card.data.eval_results}
    assert set(measured) == {"accuracy", "f1"}
    assert card.data.license == "mit" and card.data.pipeline_tag == "tabular-classification"
    assert "python my_train.py --max-steps 2" in card.text and "CC0-1.0" in card.text
    assert f'repo = "<user>/{folder.name}"' in card.text  # the folder's name, not the name of its staging copy
    # the card's reproduce command prints the model-index numbers
    evaluate = f"s4d-hf evaluate {folder} --dataset {own[1]} --task {TASK}"
    assert evaluate in card.text
    assert cli(evaluate.split()[1:]) == 0
    assert _last_json(capsys) == pytest.approx(measured, abs=1e-9)
    # make_portable: every code file, the full auto_map and the pipeline
    assert all((folder / name).read_bytes() == SOURCES[name].read_bytes() for name in code_files(folder))
    assert "timeseries_processing_s4d.py" in code_files(folder) and "pipelines.py" in code_files(folder)
    config = json.loads((folder / "config.json").read_text())
    assert config["auto_map"]["AutoConfig"] == "configuration_s4d.S4DConfig"
    assert config["auto_map"]["AutoModel"] == "modeling_s4d.S4DModel"
    assert TASK in config["custom_pipelines"]
    assert (folder / "confusion_matrix.png").is_file() and (folder / "training_args.bin").is_file()


def test_push_dry_run_leaves_out_the_pickle_with_a_notice(released, capsys):
    rc = cli(["push", str(released), "--repo-id", "me/my-s4d", "--dry-run"])
    out, err = capsys.readouterr()
    assert rc == 0, out + err
    assert "FAIL" not in out
    notices = [line for line in out.splitlines() if "leaving out" in line]
    assert notices == ["  note  leaving out training_args.bin: a pickle file (loading it can run arbitrary code); "
                       "model.safetensors holds the weights"]
    listed = [line.split()[0] for line in out.split("would upload")[1].splitlines()[1:]]
    assert "README.md" in listed and "model.safetensors" in listed
    assert not [f for f in listed if f.endswith((".bin", ".pt", ".pth", ".pkl", ".pickle", ".ckpt"))]


def test_push_to_the_hub_stand_in_uploads_no_pickle(released, hub, tmp_path):  # noqa: F811 - the fixture
    env = {k: v for k, v in os.environ.items() if not k.startswith(("HF_", "HUGGINGFACE_"))}
    env.update(HF_ENDPOINT=f"http://127.0.0.1:{hub.server_port}", HF_HUB_OFFLINE="0", HF_TOKEN=TOKEN,
               HF_HOME=str(tmp_path / "hf_home"), PYTHONPATH=str(ROOT), HF_HUB_DISABLE_TELEMETRY="1")
    proc = subprocess.run([sys.executable, "-m", "s4d_hf.cli", "push", str(released), "--repo-id", "me/my-s4d"],
                          env=env, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "leaving out training_args.bin" in proc.stdout
    uploaded = sorted(p.name for p in (hub.store / "me" / "my-s4d").iterdir())
    expected = sorted(p.name for p in released.iterdir() if p.name != "training_args.bin")
    assert uploaded == expected and "training_args.bin" not in uploaded


def test_release_with_an_info_json_alone(own, tmp_path, capsys):
    folder = _copy(own, tmp_path)
    info = {"task": TASK, "metrics": {"accuracy": 0.75},
            "dataset": {"id": "me/levels", "name": "Levels", "description": "two-channel series, two levels",
                        "source": "my own sensors", "license": "CC0-1.0",
                        "splits": {"train": "40 series", "test": "8 series"}},
            "command": "python my_train.py"}
    (tmp_path / "info.json").write_text(json.dumps(info))
    assert cli(["release", str(folder), "--info", str(tmp_path / "info.json")]) == 0
    assert _last_json(capsys) == {"metrics": {"accuracy": 0.75}, "baseline": None}
    card = ModelCard.load(folder / "README.md")
    assert {r.metric_type: r.metric_value for r in card.data.eval_results} == {"accuracy": 0.75}
    assert "given to `s4d-hf release --info`" in card.text and "s4d-hf evaluate" not in card.text
    assert (folder / "modeling_s4d.py").is_file() and (folder / "eigenvalues.png").is_file()
    assert cli(["push", str(folder), "--repo-id", "me/my-s4d", "--dry-run"]) == 0


@pytest.mark.parametrize("args, message", [
    ([], "no training_args.json (not an s4d-hf train run): pass --dataset SPEC --task TASK"),
    (["--dataset", "DATA"], "--dataset and --task go together"),
    (["--dataset", "DATA", "--task", TASK, "--label-column-name", "y", "--extra", "real"], "--extra: only for"),
], ids=["nothing", "no-task", "extra"])
def test_release_refuses_bad_flags_in_one_line(own, tmp_path, capsys, args, message):
    folder = _copy(own, tmp_path)
    before = sorted(p.name for p in folder.iterdir())
    rc = cli(["release", str(folder), *[str(own[1]) if a == "DATA" else a for a in args]])
    err = capsys.readouterr().err.strip().splitlines()
    assert rc == 2 and len(err) == 1 and err[0].startswith("s4d-hf release: error: ") and message in err[0], err
    assert sorted(p.name for p in folder.iterdir()) == before


def test_release_refuses_a_folder_without_a_processor(own, tmp_path, capsys):
    folder = _copy(own, tmp_path)
    (folder / "preprocessor_config.json").unlink()
    before = sorted(p.name for p in folder.iterdir())
    rc = cli(["release", str(folder), "--dataset", str(own[1]), "--task", TASK])
    err = capsys.readouterr().err.strip().splitlines()
    assert rc == 2 and len(err) == 1
    assert "no processor (preprocessor_config.json" in err[0] and "S4DTimeSeriesProcessor(feature_size=C)" in err[0]
    assert sorted(p.name for p in folder.iterdir()) == before  # nothing written


def test_release_refuses_own_training_flags_on_an_s4d_hf_train_folder(own, tmp_path, capsys):
    folder = _copy(own, tmp_path)
    (folder / "training_args.json").write_text(json.dumps({"task": TASK, "dataset": str(own[1]), "command": "x"}))
    assert cli(["release", str(folder), "--dataset", str(own[1]), "--task", TASK]) == 2
    assert "has training_args.json" in capsys.readouterr().err
