"""The README stays true: CI runs exactly its two commands, and its Python quickstart runs."""

import pathlib
import re

import torch

ROOT = pathlib.Path(__file__).resolve().parent.parent
README = (ROOT / "README.md").read_text()


def readme_commands() -> list[str]:
    first_block = re.search(r"```bash\n(.*?)```", README, re.S).group(1)
    return [line for line in first_block.splitlines() if line and not line.startswith("#")]


def test_readme_opens_with_two_commands_that_ci_runs_verbatim():
    commands = readme_commands()
    assert len(commands) == 2
    ci = (ROOT / ".ci" / "run").read_text()
    for command in commands:
        assert command in ci.splitlines(), command


def test_quickstart_runs(tmp_path, monkeypatch):
    code = re.search(r"## Quickstart\n\n```python\n(.*?)```", README, re.S).group(1)
    monkeypatch.chdir(tmp_path)
    namespace: dict = {}
    exec(compile(code, "README quickstart", "exec"), namespace)
    assert isinstance(namespace["out"], torch.Tensor)


def test_bring_your_own_data_runs(tmp_path, monkeypatch, capsys):
    """Four tiny DatasetDicts saved to disk, trained on from the CLI, reloaded with the Auto classes."""
    code = re.search(r"### Bring your own data\n.*?```python\n(.*?)```", README, re.S).group(1)
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("HF_DATASETS_OFFLINE", "1")
    namespace: dict = {}
    exec(compile(code, "README bring your own data", "exec"), namespace)
    printed = capsys.readouterr().out
    assert "{0: 'low', 1: 'high'} torch.Size([1, 2])" in printed and "torch.Size([1, 10])" in printed
    for data in ("my_audio", "my_images", "my_series", "my_text"):
        assert (tmp_path / f"{data}-s4d" / "model.safetensors").is_file()


def test_readme_source_kind_table_quotes_the_measured_run():
    """Each row of benchmarks/hf_sources_results.json (one real-data run per 🤗 source kind) is in the README's table,
    with its metric, steps and rows; and every run's `s4d-hf evaluate` reproduced its training metrics."""
    import json

    results = json.loads((ROOT / "benchmarks" / "hf_sources_results.json").read_text())
    assert results["all_evaluate_match_training"]
    lines = [line for line in README.splitlines() if line.startswith("| ") and "`--task " in line]
    assert len(lines) == len(results["rows"]) >= 6
    for row, line in zip(results["rows"], lines):
        steps = row["train_command"].split("--max-steps ")[1].split()[0]
        rows = " / ".join(str(row["rows"][split]) for split in ("train", "eval", "test"))
        assert line.startswith(f"| {row['kind']} ") and f"--task {row['task']} " in line, line
        assert f"| {rows}" in line and f"| {steps} |" in line, line
        assert f"{row['metric']} {row['test_metric']:.4f}" in line, line
