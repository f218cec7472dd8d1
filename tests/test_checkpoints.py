"""Every shipped checkpoint: `s4d-hf evaluate` reproduces the metrics in its card, and the folder is Hub-ready
(passes `s4d-hf push --dry-run`'s checks). Skipped for a checkpoint whose data is not installed here."""

import pathlib

import pytest

from s4d_hf.cli import main as cli
from s4d_hf.hub.cards import read_card_metrics
from s4d_hf.hub.evaluation import evaluate_folder
from s4d_hf.training.data import DatasetNotInstalledError

CHECKPOINTS = sorted(p for p in (pathlib.Path(__file__).parent.parent / "checkpoints").iterdir()
                     if (p / "README.md").is_file())


@pytest.mark.parametrize("folder", CHECKPOINTS, ids=lambda p: p.name)
def test_evaluate_reproduces_the_card(folder):
    card = read_card_metrics(folder)
    try:
        measured = evaluate_folder(folder)
    except DatasetNotInstalledError as e:
        pytest.skip(str(e))
    assert set(card) == set(measured)
    for name, value in card.items():
        assert measured[name] == pytest.approx(value, rel=1e-5, abs=1e-6), name


@pytest.mark.parametrize("folder", CHECKPOINTS, ids=lambda p: p.name)
def test_checkpoint_is_hub_ready(folder):
    assert cli(["push", str(folder), "--repo-id", f"s4d-hf/{folder.name}", "--dry-run"]) == 0
    assert (folder / "model.safetensors").stat().st_size < 8_000_000
    assert not list(folder.glob("*.bin")) and not list(folder.glob("*.pt"))


def test_readme_table_quotes_every_card_and_its_baseline():
    """The README's checkpoint table lists every shipped folder with its card's main metric and baseline (3 d.p.)."""
    import json
    import re

    readme = (pathlib.Path(__file__).parent.parent / "README.md").read_text()
    rows = {m.group(1): m.group(0) for m in re.finditer(r"^\| \[(s4d-[\w-]+)\]\(checkpoints/.*$", readme, re.M)}
    assert sorted(rows) == sorted(p.name for p in CHECKPOINTS)
    for folder in CHECKPOINTS:
        release = json.loads((folder / "release.json").read_text())
        main = release["baseline"]["metric"]
        cells = [c.strip(" *") for c in rows[folder.name].split("|")]
        assert cells[5] == f"{read_card_metrics(folder)[main]:.3f}", folder.name
        assert cells[6].split()[0].strip("*") == f"{release['baseline']['value']:.3f}", folder.name
