"""The converted folder is Hub-ready: a real `python -m s4d_hf.cli convert` subprocess writes it, and a process in
which s4d_hf cannot be imported loads it with trust_remote_code and reproduces the reference logits (f1)."""

import os
import pathlib
import subprocess
import sys

import torch

from conftest import FIXTURES, load_npz

TOL = 1e-5


REMOTE_SCRIPT = """
import sys
sys.modules["s4d_hf"] = None  # importing s4d_hf now fails: only the folder's own code can be used
import numpy as np, torch
from transformers import AutoModelForSequenceClassification
folder, inputs = sys.argv[1], sys.argv[2]
model = AutoModelForSequenceClassification.from_pretrained(folder, trust_remote_code=True).eval()
assert type(model).__module__.startswith("transformers_modules"), type(model).__module__
with torch.no_grad():
    logits = model(input_values=torch.from_numpy(np.load(inputs)["input"])).logits
torch.save(logits, folder + "/remote_logits.pt")
"""


def test_cli_subprocess_and_remote_code_without_the_package(tmp_path):
    out = tmp_path / "f1"
    root = pathlib.Path(__file__).resolve().parent.parent
    env = {**os.environ, "PYTHONPATH": str(root), "HF_HUB_OFFLINE": "1"}
    result = subprocess.run([sys.executable, "-m", "s4d_hf.cli", "convert", str(FIXTURES / "f1_state_dict.pt"),
                             str(out)], env=env, capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr
    assert result.stderr == "" and f"wrote    {out}" in result.stdout
    assert {"config.json", "model.safetensors", "README.md", "modeling_s4d.py", "configuration_s4d.py",
            "ssm_s4d.py"} <= set(os.listdir(out))

    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
    env.update(HF_HUB_OFFLINE="1", HF_MODULES_CACHE=str(tmp_path / "modules"))
    script = tmp_path / "load.py"
    script.write_text(REMOTE_SCRIPT)
    result = subprocess.run([sys.executable, str(script), str(out), str(FIXTURES / "f1_io.npz")], cwd=tmp_path,
                            env=env, capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr[-3000:]
    expected = torch.from_numpy(load_npz("f1_io.npz")["logits"])
    assert (torch.load(out / "remote_logits.pt") - expected).abs().max() <= TOL
