"""S4D as a good citizen of transformers, and its checkpoints where s4d-hf is not installed.

* Importing s4d_hf (and its first use) adds registrations only: a deep snapshot of transformers' pipeline registry and
  Auto mappings before and after, in a fresh process.
* Every shipped checkpoint, in a real virtualenv without s4d-hf (``tests/bare_env.py``): its pipeline on the inputs a
  user passes gives the scores of ``model(**processor(x))`` computed here, and the same as with s4d-hf installed.
* Every card's "How to use" code runs verbatim in both environments and prints the same.
* Every checkpoint carries current copies of the package's code, an ``auto_map`` for each Auto class of its head,
  and ``custom_pipelines`` where its task needs one; ``AutoProcessor`` returns its processor without a prompt.
"""

import json
import os
import re
import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
import pytest
import soundfile
import torch
from PIL import Image
from transformers import (
    AutoModelForCausalLM,
    AutoModelForSequenceClassification,
    AutoProcessor,
    AutoTokenizer,
)

import s4d_hf
from s4d_hf.hub.remote_code import CUSTOM_PIPELINES, folder_task, stale_code

from bare_env import BareEnvUnavailable, run_bare

ROOT = Path(__file__).resolve().parents[1]
CHECKPOINTS = sorted(p for p in (ROOT / "checkpoints").iterdir() if (p / "config.json").is_file())
REMOTE_TASKS = tuple(CUSTOM_PIPELINES)  # tasks whose pipeline travels with the folder


# -- no global side effects ----------------------------------------------------------------------------------------

SNAPSHOT = textwrap.dedent("""
    import json, sys, warnings
    import torch, transformers
    from transformers.pipelines import PIPELINE_REGISTRY, SUPPORTED_TASKS
    from transformers.models.auto import auto_factory, configuration_auto
    import transformers.models.auto as auto

    def name(x):
        return getattr(x, "__qualname__", None) and f"{x.__module__}.{x.__qualname__}" or repr(x)

    def snapshot():
        out = {"task:" + t: repr({k: (tuple(map(name, v)) if isinstance(v, tuple) else name(v)) for k, v in e.items()})
               for t, e in PIPELINE_REGISTRY.supported_tasks.items()}
        out["SUPPORTED_TASKS is the registry's"] = SUPPORTED_TASKS is PIPELINE_REGISTRY.supported_tasks
        for module in (auto.modeling_auto, auto.feature_extraction_auto, auto.image_processing_auto,
                       auto.processing_auto, auto.tokenization_auto, auto.video_processing_auto, configuration_auto):
            for attr, mapping in vars(module).items():
                if hasattr(mapping, "_extra_content"):
                    for key, value in mapping._extra_content.items():
                        out[f"{module.__name__}.{attr}[{name(key)}]"] = repr(value) if isinstance(value, (tuple, dict)) \\
                            else name(value)
        out["logging"] = transformers.logging.get_verbosity()
        out["default dtype"] = str(torch.get_default_dtype())
        out["warning filters"] = len(warnings.filters)
        return out

    before = snapshot()
    import s4d_hf
    s4d_hf.S4DConfig(input_dim=1)  # first use: the deferred registrations run here
    after = snapshot()
    json.dump({"before": before, "after": after}, open(sys.argv[1], "w"))
""")


def test_importing_s4d_hf_only_adds_registrations(tmp_path):
    (tmp_path / "snap.py").write_text(SNAPSHOT)
    result = subprocess.run([sys.executable, str(tmp_path / "snap.py"), str(tmp_path / "out.json")],
                            capture_output=True, text=True, timeout=300, cwd=tmp_path)
    assert result.returncode == 0, result.stderr[-3000:]
    data = json.loads((tmp_path / "out.json").read_text())
    before, after = data["before"], data["after"]
    changed = {k for k in before if before[k] != after.get(k)}
    assert not changed, f"import s4d_hf changed: {sorted(changed)}"
    added = set(after) - set(before)
    assert "task:time-series-classification" in added
    for key in added:  # a new task, and Auto entries for S4D's own config and classes
        assert key == "task:time-series-classification" or "S4D" in key or "['s4d']" in key, key
    assert all("S4D" in after[k] or "s4d" in after[k] or k.startswith("task:") for k in added)


# -- every checkpoint, with and without s4d-hf -----------------------------------------------------------------------

PIPELINE_SCRIPT = textwrap.dedent("""
    import json, sys
    mode, root = sys.argv[1], sys.argv[2]
    if mode == "installed":
        import s4d_hf  # noqa: F401
    import numpy as np
    from PIL import Image
    from transformers import pipeline

    REMOTE = %r
    results = {}
    for name, item in json.load(open(root + "/spec.json")).items():
        task, folder = item["task"], item["folder"]
        kwargs = {"trust_remote_code": True} if mode == "bare" or task in REMOTE else {}
        pipe = pipeline(task, model=folder, **kwargs)
        out = {"class": type(pipe).__name__}
        if task == "audio-classification":
            out["array"] = pipe(np.load(root + "/audio.npy"), top_k=None)
            out["dict"] = pipe({"raw": np.load(root + "/audio2.npy"), "sampling_rate": item["rate"] * 2}, top_k=None)
            out["wav"] = pipe(root + "/clip.wav", top_k=None)
        elif task == "image-classification":
            out["pil"] = pipe(Image.open(root + "/image.png"), top_k=None)
            out["path"] = pipe(root + "/image.png", top_k=None)
        elif task.startswith("time-series"):
            series = np.load(root + "/series.npy")[:, : item["channels"]]
            out["array"] = pipe(series, top_k=None) if task.endswith("classification") else pipe(series)
        else:
            out["text"] = pipe("ROMEO:", max_new_tokens=20, do_sample=False)[0]["generated_text"]
            out["ids"] = pipe.tokenizer("ROMEO:")["input_ids"]
        results[name] = out
    json.dump(results, open(root + "/" + mode + ".json", "w"))
""") % (REMOTE_TASKS,)


def _config(folder: Path) -> dict:
    return json.loads((folder / "config.json").read_text())


@pytest.fixture(scope="module")
def checkpoint_runs(tmp_path_factory):
    """Each checkpoint's pipeline on the same inputs with s4d-hf installed and in the bare virtualenv."""
    root = tmp_path_factory.mktemp("checkpoint_pipelines")
    rng = np.random.default_rng(0)
    spec = {}
    for folder in CHECKPOINTS:
        task = folder_task(folder)
        processor = folder / "preprocessor_config.json"
        per_series = processor.is_file() and json.loads(processor.read_text()).get("series_features")
        # a processor with series_features takes the one-channel series as recorded and computes the model's channels
        channels = 1 if per_series else _config(folder).get("input_dim") or 1
        item = {"task": task, "folder": str(folder), "channels": channels}
        if task == "audio-classification":
            item["rate"] = json.loads((folder / "preprocessor_config.json").read_text())["sampling_rate"]
        spec[folder.name] = item
    rate = next(item["rate"] for item in spec.values() if "rate" in item)
    np.save(root / "audio.npy", (0.2 * rng.normal(size=rate // 2)).astype(np.float32))
    np.save(root / "audio2.npy", (0.2 * rng.normal(size=rate)).astype(np.float32))
    soundfile.write(root / "clip.wav", 0.2 * rng.normal(size=rate), 2 * rate, subtype="PCM_16")
    Image.fromarray(rng.integers(0, 256, size=(20, 24, 3), dtype=np.uint8)).save(root / "image.png")
    np.save(root / "series.npy", rng.normal(size=(120, 8)))
    (root / "spec.json").write_text(json.dumps(spec))
    (root / "script.py").write_text(PIPELINE_SCRIPT)

    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
    env.update(HF_MODULES_CACHE=str(root / "modules_installed"))
    installed = subprocess.run([sys.executable, str(root / "script.py"), "installed", str(root)], cwd=root, env=env,
                               capture_output=True, text=True, timeout=900)
    assert installed.returncode == 0, installed.stderr[-3000:]
    try:
        bare = run_bare(PIPELINE_SCRIPT, "bare", str(root), cwd=root, timeout=900)
    except BareEnvUnavailable as reason:
        bare = reason
    return root, spec, bare


def _scores(result: list[dict]) -> dict:
    return {r["label"]: r.get("score", r.get("value")) for r in result}


def _probabilities(logits: torch.Tensor, config) -> dict:
    if config.problem_type == "regression":
        return {config.id2label[i]: v for i, v in enumerate(logits[0].tolist())}
    return {config.id2label[i]: v for i, v in enumerate(logits[0].softmax(-1).tolist())}


@pytest.mark.parametrize("folder", CHECKPOINTS, ids=[p.name for p in CHECKPOINTS])
def test_checkpoint_pipeline_with_s4d_hf_equals_the_model_on_its_processor(checkpoint_runs, folder):
    root, spec, _ = checkpoint_runs
    out = json.loads((root / "installed.json").read_text())[folder.name]
    task = spec[folder.name]["task"]
    processor = AutoProcessor.from_pretrained(folder)
    model_class = AutoModelForCausalLM if task == "text-generation" else AutoModelForSequenceClassification
    model = model_class.from_pretrained(folder).eval()
    with torch.no_grad():
        if task == "audio-classification":
            rate = spec[folder.name]["rate"]
            wav, wav_rate = soundfile.read(root / "clip.wav", dtype="float32")
            truth = {"array": processor(np.load(root / "audio.npy"), sampling_rate=rate, return_tensors="pt"),
                     "dict": processor(np.load(root / "audio2.npy"), sampling_rate=2 * rate, return_tensors="pt"),
                     "wav": processor(wav, sampling_rate=wav_rate, return_tensors="pt")}
            assert float(truth["wav"]["rate"]) == 0.5  # 16 kHz input to an 8 kHz model: the rate change
        elif task == "image-classification":
            inputs = processor(Image.open(root / "image.png"), return_tensors="pt")
            truth = {"pil": inputs, "path": inputs}
        elif task.startswith("time-series"):
            series = np.load(root / "series.npy")[:, : spec[folder.name]["channels"]]
            truth = {"array": processor(series, return_tensors="pt")}
        else:
            ids = processor("ROMEO:", return_tensors="pt")["input_ids"]
            assert ids[0].tolist() == [b + 3 for b in b"ROMEO:"] == out["ids"]  # one id per byte, no </s>
            generated = model.generate(ids, attention_mask=torch.ones_like(ids), max_new_tokens=20, do_sample=False)
            assert out["text"] == processor.decode(generated[0], skip_special_tokens=True)
            return
        for kind, inputs in truth.items():
            expected = _probabilities(model(**inputs).logits, model.config)
            got = _scores(out[kind])  # the image pipeline returns the top 5 of 10 classes
            assert got == pytest.approx({label: expected[label] for label in got}, abs=1e-5), kind
            assert min(got.values()) >= max([v for k, v in expected.items() if k not in got], default=0) - 1e-6, kind


@pytest.mark.parametrize("folder", CHECKPOINTS, ids=[p.name for p in CHECKPOINTS])
def test_checkpoint_pipeline_without_s4d_hf_gives_the_same_outputs(checkpoint_runs, folder):
    root, spec, bare = checkpoint_runs
    if isinstance(bare, BareEnvUnavailable):
        pytest.skip(f"no bare virtualenv: {bare}")
    assert bare.returncode == 0, bare.stderr[-3000:]
    installed = json.loads((root / "installed.json").read_text())[folder.name]
    remote = json.loads((root / "bare.json").read_text())[folder.name]
    assert remote["class"] == installed["class"]
    for kind, value in installed.items():
        if isinstance(value, list) and value and isinstance(value[0], dict):
            assert _scores(remote[kind]) == pytest.approx(_scores(value), abs=1e-6), kind
        else:
            assert remote[kind] == value, kind


# -- the cards' code, verbatim ---------------------------------------------------------------------------------------

CARD_SCRIPT = textwrap.dedent("""
    import contextlib, io, json, os, sys
    results = {}
    for name, (folder, code) in json.load(open(sys.argv[1])).items():
        os.chdir(folder)
        buffer = io.StringIO()
        with contextlib.redirect_stdout(buffer):
            exec(compile(code, name + "/README.md", "exec"), {"__name__": "__main__"})
        results[name] = buffer.getvalue()
    json.dump(results, open(sys.argv[2], "w"))
""")


def test_every_card_how_to_use_runs_verbatim_with_and_without_s4d_hf(tmp_path):
    snippets = {}
    for folder in CHECKPOINTS:
        card = (folder / "README.md").read_text()
        code = re.search(r"## How to use\n\n```python\n(.*?)```", card, re.S).group(1)
        repo = re.search(r'repo = "([^"]+)"', code).group(1)
        work = tmp_path / folder.name
        (work / repo).parent.mkdir(parents=True)
        (work / repo).symlink_to(folder, target_is_directory=True)  # the Hub repository, as a local folder
        Image.fromarray(np.random.default_rng(1).integers(0, 256, (28, 28), dtype=np.uint8)).save(work / "image.png")
        snippets[folder.name] = (str(work), code)
    (tmp_path / "snippets.json").write_text(json.dumps(snippets))
    (tmp_path / "cards.py").write_text(CARD_SCRIPT)

    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
    env.update(HF_MODULES_CACHE=str(tmp_path / "modules"))
    full = subprocess.run([sys.executable, str(tmp_path / "cards.py"), str(tmp_path / "snippets.json"),
                           str(tmp_path / "full.json")], env=env, capture_output=True, text=True, timeout=900)
    assert full.returncode == 0, full.stderr[-3000:]
    printed = json.loads((tmp_path / "full.json").read_text())
    for name, text in printed.items():
        assert text.strip(), f"{name}: the card's code printed nothing"
    assert "</s>" not in printed["s4d-shakespeare"]
    assert printed["s4d-shakespeare"].splitlines()[0].startswith("ROMEO:")
    try:
        bare = run_bare(CARD_SCRIPT, str(tmp_path / "snippets.json"), str(tmp_path / "bare.json"), cwd=tmp_path)
    except BareEnvUnavailable as reason:
        pytest.skip(f"no bare virtualenv: {reason}")
    assert bare.returncode == 0, bare.stderr[-3000:]
    assert json.loads((tmp_path / "bare.json").read_text()) == printed


# -- what the folders carry ------------------------------------------------------------------------------------------

@pytest.mark.parametrize("folder", CHECKPOINTS, ids=[p.name for p in CHECKPOINTS])
def test_checkpoint_carries_current_code_and_every_auto_entry(folder):
    assert stale_code(folder) == [], "refresh with: s4d-hf remote-code checkpoints/*"
    config = _config(folder)
    auto_map = config["auto_map"]
    task = folder_task(folder)
    needed = {"AutoConfig", "AutoModel"} | (
        {"AutoModelForCausalLM"} if task == "text-generation" else
        {"AutoModelForSequenceClassification", "AutoModelForAudioClassification", "AutoModelForImageClassification"})
    assert needed <= set(auto_map), sorted(needed - set(auto_map))
    for reference in auto_map.values():
        assert (folder / (reference.split(".")[0] + ".py")).is_file(), reference
    assert set(config.get("custom_pipelines") or {}) == ({task} if task in REMOTE_TASKS else set())


@pytest.mark.parametrize("folder", CHECKPOINTS, ids=[p.name for p in CHECKPOINTS])
def test_auto_processor_returns_the_folders_processor_without_a_prompt(folder):
    expected = {"audio-classification": "S4DFeatureExtractor", "image-classification": "S4DImageProcessor",
                "time-series-classification": "S4DTimeSeriesProcessor",
                "time-series-regression": "S4DTimeSeriesProcessor", "text-generation": "S4DByteTokenizer"}
    processor = AutoProcessor.from_pretrained(folder)  # pytest's stdin raises on read: a prompt would fail here
    assert type(processor).__name__ == expected[folder_task(folder)]
    assert type(processor).__module__.startswith("s4d_hf.")


def test_byte_tokenizer_appends_no_end_of_text_unless_asked(tmp_path):
    tokenizer = s4d_hf.byte_tokenizer()
    assert tokenizer("To be")["input_ids"] == [b + 3 for b in b"To be"]
    assert tokenizer("To be", add_special_tokens=False)["input_ids"] == [b + 3 for b in b"To be"]
    with_eos = s4d_hf.S4DByteTokenizer(add_eos=True)
    assert with_eos("To be")["input_ids"] == [b + 3 for b in b"To be"] + [with_eos.eos_token_id]
    with_eos.save_pretrained(tmp_path)
    reloaded = AutoTokenizer.from_pretrained(tmp_path)
    assert type(reloaded).__name__ == "S4DByteTokenizer" and reloaded.add_eos
    assert reloaded.decode(tokenizer("été ♪")["input_ids"]) == "été ♪"
