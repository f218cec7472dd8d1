"""Make a saved S4D folder work where s4d-hf is not installed: the code files and JSON entries that let
``trust_remote_code=True`` users run every Auto class and the folder's pipeline.

    folder_task(folder) -> str | None     the folder's pipeline task, read from its processor files
    make_portable(folder) -> list[str]    copy the package's code into the folder and write auto_map/custom_pipelines
    stale_code(folder) -> list[str]       code files in the folder that differ from the package's (empty = current)

What ``make_portable`` writes, by task (the choice per task is explained in ``s4d_hf/pipelines.py``):

* every folder: ``configuration_s4d.py``, ``modeling_s4d.py`` and their ``from .x import`` siblings, and a
  ``config.json`` ``auto_map`` naming each Auto class a user or a pipeline calls for its head (AutoModel, and
  AutoModelFor{SequenceClassification, AudioClassification, ImageClassification} or AutoModelForCausalLM);
* the processor's module (``feature_extraction_s4d.py``, ``image_processing_s4d.py``, ``timeseries_processing_s4d.py``
  or ``tokenization_s4d.py``), whose own JSON entries its ``save_pretrained`` wrote;
* audio and time-series folders: ``pipelines.py`` and a ``custom_pipelines`` entry for their task
  ("audio-classification", "time-series-classification" or "time-series-regression").

Used by ``s4d-hf train``, ``convert`` and ``release`` on the folders they write, and by ``s4d-hf remote-code FOLDER``
to refresh the copies in a folder (e.g. every shipped checkpoint after a change to the package's model code).
"""

from __future__ import annotations

import filecmp
import json
import os
import re
import shutil
from pathlib import Path

from ..processing import saved_processor_name
from ..staging import write_atomically

PACKAGE = Path(__file__).resolve().parents[1]

# file name in a folder -> its source in the package (each imports nothing from s4d_hf, only flat siblings)
SOURCES = {
    "configuration_s4d.py": PACKAGE / "modeling" / "configuration_s4d.py",
    "modeling_s4d.py": PACKAGE / "modeling" / "modeling_s4d.py",
    "feature_extraction_s4d.py": PACKAGE / "processing" / "feature_extraction_s4d.py",
    "image_processing_s4d.py": PACKAGE / "processing" / "image_processing_s4d.py",
    "timeseries_processing_s4d.py": PACKAGE / "processing" / "timeseries_processing_s4d.py",
    "tokenization_s4d.py": PACKAGE / "processing" / "tokenization_s4d.py",
    "pipelines.py": PACKAGE / "pipelines.py",
}
for _path in (PACKAGE / "modeling").glob("*.py"):  # the model's sibling modules (ssm_s4d.py, ...)
    if not _path.name.startswith("__"):
        SOURCES.setdefault(_path.name, _path)

# processor class name (as saved in preprocessor_config.json / tokenizer_config.json) -> its module file
PROCESSOR_MODULES = {
    "S4DFeatureExtractor": "feature_extraction_s4d.py",
    "S4DImageProcessor": "image_processing_s4d.py",
    "S4DTimeSeriesProcessor": "timeseries_processing_s4d.py",
    "S4DByteTokenizer": "tokenization_s4d.py",
}

HEAD_AUTO_CLASSES = {
    "S4DForSequenceClassification": ("AutoModelForSequenceClassification", "AutoModelForAudioClassification",
                                     "AutoModelForImageClassification"),
    "S4DForCausalLM": ("AutoModelForCausalLM",),
    "S4DModel": (),
}

CUSTOM_PIPELINES = {  # task -> (class in pipelines.py, the Auto class the pipeline loads the model with)
    "audio-classification": ("S4DAudioClassificationPipeline", "AutoModelForAudioClassification"),
    "time-series-classification": ("TimeSeriesClassificationPipeline", "AutoModelForSequenceClassification"),
    "time-series-regression": ("TimeSeriesRegressionPipeline", "AutoModelForSequenceClassification"),
}


def _read_json(path: Path) -> dict:
    with open(path, encoding="utf-8") as f:
        return json.load(f)


def _write_json(path: Path, obj: dict) -> None:
    """As transformers writes its JSON files (sorted keys, indent 2), atomically."""
    write_atomically(path, json.dumps(obj, indent=2, sort_keys=True) + "\n")


def processor_class(folder: str | os.PathLike) -> str | None:
    """The S4D processor class saved in the folder (preprocessor_config.json or tokenizer_config.json), or None."""
    folder = Path(folder)
    if (folder / "preprocessor_config.json").is_file():
        saved = _read_json(folder / "preprocessor_config.json")
        return saved_processor_name(saved) or None
    if (folder / "tokenizer_config.json").is_file():
        return _read_json(folder / "tokenizer_config.json").get("tokenizer_class")
    return None


def folder_task(folder: str | os.PathLike) -> str | None:
    """The pipeline task of a saved S4D folder, from its processor (and, for time series, the problem type)."""
    folder = Path(folder)
    name = processor_class(folder)
    config = _read_json(folder / "config.json")
    if name == "S4DFeatureExtractor":
        return "audio-classification"
    if name == "S4DImageProcessor":
        return "image-classification"
    if name == "S4DTimeSeriesProcessor":
        regression = config.get("problem_type") == "regression" or (
            config.get("problem_type") is None and len(config.get("id2label") or {0: 0, 1: 1}) == 1)
        return "time-series-regression" if regression else "time-series-classification"
    if name in ("S4DByteTokenizer", "ByT5Tokenizer") or "S4DForCausalLM" in (config.get("architectures") or []):
        return "text-generation"
    return None


def _siblings(name: str) -> set[str]:
    """The file and, recursively, the sibling files it imports with ``from .x import`` (as transformers copies)."""
    found, todo = set(), [name]
    while todo:
        current = todo.pop()
        if current in found:
            continue
        found.add(current)
        text = SOURCES[current].read_text(encoding="utf-8")
        todo += [f"{m}.py" for m in re.findall(r"^\s*from\s+\.(\w+)\s+import", text, flags=re.M)]
    return found


def code_files(folder: str | os.PathLike) -> set[str]:
    """The package's code files this folder needs."""
    names = _siblings("modeling_s4d.py")
    processor = processor_class(folder)
    if processor in PROCESSOR_MODULES:
        names |= _siblings(PROCESSOR_MODULES[processor])
    if folder_task(folder) in CUSTOM_PIPELINES:
        names |= _siblings("pipelines.py")
    return names


def make_portable(folder: str | os.PathLike) -> list[str]:
    """Copy the package's code into a saved S4D folder and write ``auto_map`` (every head's Auto classes) and, for
    audio and time series, ``custom_pipelines`` into its config.json. Returns the code files written. Idempotent."""
    folder = Path(folder)
    config = _read_json(folder / "config.json")
    if config.get("model_type") != "s4d":
        raise ValueError(f"{folder / 'config.json'}: model_type is {config.get('model_type')!r}, not 's4d'")
    names = sorted(code_files(folder))
    for name in names:
        shutil.copyfile(SOURCES[name], folder / name)
        os.chmod(folder / name, 0o644)

    auto_map = {k: v for k, v in (config.get("auto_map") or {}).items() if not k.startswith("AutoModel")}
    auto_map["AutoConfig"] = "configuration_s4d.S4DConfig"
    auto_map["AutoModel"] = "modeling_s4d.S4DModel"
    heads = [a for a in config.get("architectures") or [] if a in HEAD_AUTO_CLASSES] or ["S4DForSequenceClassification"]
    for head in heads:
        for auto in HEAD_AUTO_CLASSES[head]:
            auto_map[auto] = f"modeling_s4d.{head}"
    if config.get("vocab_size") and not config.get("bidirectional"):
        auto_map["AutoModelForCausalLM"] = "modeling_s4d.S4DForCausalLM"
    config["auto_map"] = auto_map

    task = folder_task(folder)
    if task in CUSTOM_PIPELINES:
        impl, auto = CUSTOM_PIPELINES[task]
        config["custom_pipelines"] = {task: {"impl": f"pipelines.{impl}", "pt": [auto]}}
    else:
        config.pop("custom_pipelines", None)
    _write_json(folder / "config.json", config)
    return names


def stale_code(folder: str | os.PathLike) -> list[str]:
    """Code files the folder should carry that are missing or differ from the package's sources."""
    folder = Path(folder)
    return sorted(name for name in code_files(folder)
                  if not (folder / name).is_file() or not filecmp.cmp(folder / name, SOURCES[name], shallow=False))
