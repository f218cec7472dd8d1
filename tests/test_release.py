"""A trained folder -> `s4d-hf evaluate` reproduces the run's test metrics through the folder's own processor and
model; `s4d-hf release` measures the baseline, draws the plots and writes a card whose model-index equals what
evaluate prints, and the result passes `s4d-hf push --dry-run`'s checks."""

import json

import numpy as np
import pytest

from test_training_data import TINY, make_level_npz, make_regression_npz, train_cli

from s4d_hf.cli import main as cli


def last_json(capsys) -> dict:
    return json.loads(capsys.readouterr().out.strip().splitlines()[-1])


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("release")
    data = make_level_npz(tmp / "levels.npz", n=64, label_names=np.array(["low", "high"]))
    out = tmp / "s4d-levels"
    assert train_cli("--task", "time-series-classification", "--dataset", data, "--output-dir", out, *TINY,
                     "--batch-size", 8, "--max-steps", 16, "--eval-steps", 8) == 0
    return out


def test_evaluate_reproduces_the_runs_test_metrics(trained, capsys):
    assert cli(["evaluate", str(trained)]) == 0
    printed = last_json(capsys)
    run = json.loads((trained / "eval_results.json").read_text())
    assert printed["accuracy"] == pytest.approx(run["test_accuracy"], abs=1e-9)
    assert printed["f1"] == pytest.approx(run["test_f1"], abs=1e-6)


def test_evaluate_regression_in_original_units(tmp_path, capsys):
    data = make_regression_npz(tmp_path / "reg.npz")
    out = tmp_path / "reg"
    assert train_cli("--task", "time-series-regression", "--dataset", data, "--output-dir", out, *TINY,
                     "--batch-size", 8, "--max-steps", 16) == 0
    assert cli(["evaluate", str(out)]) == 0
    printed = last_json(capsys)
    run = json.loads((out / "eval_results.json").read_text())
    assert printed["rmse"] == pytest.approx(run["test_rmse"], rel=1e-4)


def test_release_writes_a_card_that_evaluate_and_push_agree_with(trained, capsys):
    from s4d_hf.hub.cards import read_card_metrics

    assert cli(["release", str(trained)]) == 0
    capsys.readouterr()
    assert cli(["evaluate", str(trained)]) == 0
    assert read_card_metrics(trained) == pytest.approx(last_json(capsys))
    card = (trained / "README.md").read_text()
    assert "1-NN" in card and "s4d-hf train" in card
    assert f'repo = "<user>/{trained.name}"' in card  # the folder's name, not the name of its staging copy
    for png in ("training_curve.png", "confusion_matrix.png", "eigenvalues.png"):
        assert (trained / png).is_file() and png in card
    assert cli(["push", str(trained), "--repo-id", "me/s4d-levels", "--dry-run"]) == 0
    assert cli(["release", str(trained), "--baseline-only"]) == 0
    baseline = last_json(capsys)
    assert baseline["accuracy"] == json.loads((trained / "release.json").read_text())["baseline"]["value"]


def test_evaluate_refuses_a_folder_without_training_args(tmp_path, capsys):
    assert cli(["evaluate", str(tmp_path)]) == 2  # a usage error
    assert "training_args.json" in capsys.readouterr().err


def test_release_copies_only_this_datasets_method_comparisons_into_the_card(trained, tmp_path, capsys):
    dataset = json.loads((trained / "training_args.json").read_text())["dataset"]

    def row(method, name, a, b):
        arms = dict(zip({"ptd": ("legs", "legs-ptd"), "spt": ("scratch", "spt-then-fine-tune")}[method], (a, b)))
        return {"method": method, "dataset": name, "metric": "accuracy", "seeds": [0, 1, 2], "steps": 40,
                "model": "--d-model 8", **({"spt_steps": 20} if method == "spt" else {}),
                "arms": {arm: {"per_seed": [v] * 3, "mean": v, "std": 0.0} for arm, v in arms.items()}}

    results = tmp_path / "methods_results.json"
    results.write_text(json.dumps({"rows": [row("ptd", dataset, 0.625, 0.75), row("spt", dataset, 0.5, 0.875),
                                            row("ptd", "elsewhere", 0.0123, 0.0456)]}))
    assert cli(["release", str(trained), "--methods", str(results)]) == 0
    card = (trained / "README.md").read_text()
    assert "legs: 0.625 ± 0 / legs-ptd: 0.75 ± 0" in card
    assert "scratch: 0.5 ± 0 / spt-then-fine-tune: 0.875 ± 0" in card and "40 (after 20 SPT steps)" in card
    assert "0.0123" not in card and f"benchmarks/methods.py ptd --datasets {dataset}" in card
    assert cli(["release", str(trained), "--methods", str(tmp_path / "missing.json")]) == 2
    assert "--methods" in capsys.readouterr().err


def test_accuracy_by_voice_family_groups_each_clip_with_its_family(monkeypatch):
    """--extra families: every clip wrong in one family and right elsewhere gives 0.0 for that family, 1.0 for the
    others, with the clip counts of `spoken_digit_specs` (the independent record of who speaks each clip)."""
    from types import SimpleNamespace

    from s4d_hf.hub import release as release_module
    from s4d_hf.training.data.builtin.spoken_digits import spoken_digit_specs

    specs = spoken_digit_specs(0, {"test": 3, "unseen": 100})   # unseen: its default size, as release loads it
    wrong = specs["test"][0]["speaker"]

    def logits(split_specs, wrong_family=None):
        out = np.zeros((len(split_specs), 10))
        for i, spec in enumerate(split_specs):
            out[i, (spec["labels"] + (spec["speaker"] == wrong_family)) % 10] = 1.0
        return out

    unseen = SimpleNamespace(test=[{"labels": s["labels"]} for s in specs["unseen"]])
    monkeypatch.setattr(release_module, "load_dataset_spec", lambda name, task, seed: unseen)
    monkeypatch.setattr(release_module, "predict_logits",
                        lambda folder, task, splits, examples: logits(specs["unseen"]))
    run_args = {"dataset": "spoken-digits", "task": "audio-classification",
                "dataset_option": {"n_per_class": "5", "n_test_per_class": "3"}}
    splits = SimpleNamespace(test=[{"labels": s["labels"]} for s in specs["test"]])
    test, unseen_result = release_module._accuracy_by_family("FOLDER", run_args, splits, logits(specs["test"], wrong))
    for result, split_specs, bad in ((test, specs["test"], wrong), (unseen_result, specs["unseen"], None)):
        counts = {}
        for spec in split_specs:
            counts[spec["speaker"]] = counts.get(spec["speaker"], 0) + 1
        expected = {f"accuracy {name} ({n} clips)": 0.0 if name == bad else 1.0 for name, n in counts.items()}
        assert result["metrics"] == expected and len(expected) > 2
    assert next(iter(test["metrics"])).startswith(f"accuracy {wrong} ")   # sorted from the worst family
