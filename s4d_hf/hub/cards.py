"""Model cards for s4d-hf checkpoints: README.md with Hub metadata, rendered from ``model_cards/s4d_model_card.md.j2``.

    render_model_card(folder, info) -> str      the card's text (YAML metadata + Markdown)
    write_model_card(folder, info) -> Path      writes FOLDER/README.md (atomically)
    read_card_metrics(folder) -> dict           {metric type: value} of the card's model-index (what evaluate checks)

The one card renderer: ``s4d-hf train`` (a trained folder, or a self-pretrained backbone), ``s4d-hf release`` (a
shipped checkpoint with its baseline and plots) and ``s4d-hf convert`` (a converted checkpoint with its verification)
each build an ``info`` dict and call :func:`write_model_card`.

Every number in a card comes from ``info``, and every number in ``info`` must come from a command in the repository
(training log, ``s4d-hf evaluate``, the baseline command, the conversion's checks). The only facts read here are of
the folder itself: the parameter count (``model.safetensors``), whether it has a processor and whether the model reads
token ids (``config.json``), and its PNG plots.

The ``info`` dict
-----------------
Required keys::

    model_name     str    card title and model-index name, e.g. "s4d-fashion-mnist"
    task           str    one of TASKS: "audio-classification", "image-classification",
                          "time-series-classification", "time-series-regression", "text-generation", and
                          "text-classification" (a converted token-id classifier), "feature-extraction" (a backbone)
    command        str    the exact command that made the weights (training, or ``s4d-hf convert``)
    limitations    list[str]  what the model does not do / was not tested on
    metrics        dict   {metric type: float} measured on the test split, e.g. {"accuracy": 0.912}; these go into
                          the model-index and are the keys `s4d-hf evaluate FOLDER` prints. None where nothing was
                          measured on a test split (a converted checkpoint, a self-pretrained backbone): no model-index
    baseline       dict   a same-split baseline, for honesty; None where none was measured yet (a fresh `s4d-hf train`
                          folder: `s4d-hf release` measures one). The key must be given either way:
        name         str    e.g. "logistic regression on pixels"
        metric       str    one of the keys of `metrics`
        value        float  its score on the same test split
        command      str    the command that produced `value`
        params       int    optional: the baseline's parameter count
        description  str    optional: one sentence on how it was fitted

Required with ``metrics`` (optional otherwise)::

    dataset        dict   the data the model was trained and tested on:
        id           str    `datasets:` metadata and model-index dataset type; the Hub dataset id when the same data
                            is on the Hub (e.g. "zalando-datasets/fashion_mnist"), else a short name
        name         str    display name, e.g. "Fashion-MNIST"
        description  str    one or two sentences: what the examples and labels are
        source       str    provenance: where the files came from (package and version, URL, generator command)
        license      str    the data's licence, e.g. "MIT"
        splits       dict   split name -> how it was made and its size; must contain the test split
        citation     str    optional: how to cite the data (BibTeX or text)

Optional keys::

    training_time  str    measured wall-clock time, e.g. "14 min"
    hardware       str    what it was trained on, e.g. "2 CPU cores (x86-64), no GPU"
    license        str    the model's licence as a Hub licence id (default "apache-2.0"); None: not stated (a
                          converted checkpoint carries the licence of the run that trained it)
    test_split     str    the split `metrics` were measured on (default "test")
    repo_id        str    Hub repository used in the loading snippet (default "<user>/<folder name>")
    summary        str    a paragraph under the title
    intended_use   str    default: a sentence for research and demonstration use
    tags           list[str]  added to the default tags (s4d, state-space-model, s4d-hf, custom_code, task tags)
    plots          list[{file, caption}]  PNG files in the folder to embed; default: every *.png in the folder
    extra_results  list[{name, description, metrics: {type: float}}]  further evaluations (another test set, another
                          sampling rate), shown in the card body only: the model-index holds the test split alone
    transformer_baseline  dict  a same-size Transformer trained with the run's data and budget (`s4d-hf baseline`,
                          built by s4d_hf.hub.release from transformer_baseline.json): with it, the card has a
                          three-way table S4D | Transformer | `baseline` (the classic one). Keys:
        name, metric, value, command  as `baseline` (metric: one of `metrics`)
        params       int    the Transformer's non-embedding parameters
        training_time, peak_memory, hardware  str  its measured training wall time, peak memory (None: not
                            recorded) and the machine it ran on
        description  str    how it was built and trained
        s4d          dict   the S4D row: params (int, non-embedding, counted the same way), training_time and
                            peak_memory (str, or None where the run did not record it), hardware (str or None)
    method_comparisons  list[{name, metric, steps, arms, seeds, model, command}]  PTD/SPT comparison rows from
                          benchmarks/methods_results.json (`s4d-hf release --methods`), shown in the card body only
    n_params       int    if given, must equal the count read from model.safetensors
    evaluate_folder str   the folder argument shown for `s4d-hf evaluate` (default: the folder as given, relative to
                          the working directory when inside it; see :func:`shown_folder`)
    evaluate_command str  the command that recomputes `metrics` (default: `s4d-hf evaluate <evaluate_folder>`);
                          None: no command does (metrics given with `s4d-hf release --info`), and the card says so
    self_pretraining dict  a self-pretrained backbone (task "feature-extraction"): objective, loss (what was
                          minimised), fine_tune_command (`s4d-hf train ... --init-from FOLDER`)
    conversion     dict   a converted checkpoint: the Provenance and Options sections
        provenance   list[(field, Markdown text)]  source file, sha256, container, format, training config, ...
        options      list[{name, value, source, detail}]  every S4DConfig value and where it came from
        dropped      dict   source key -> why it was not converted
        notes        list[str]  facts about the source model that are not options
    verification   dict   checks run before the folder was written (a converted checkpoint):
        status       str    "passed", "failed", or "forced" (failed, written anyway)
        description  str    what the checks compare, and the tolerance rule
        checks       list[{name, max_abs_diff, tolerance, passed, detail}]

Metadata: ``library_name: transformers``. The checkpoint is loaded by transformers' Auto classes (custom code through
``auto_map`` in config.json), so that is the library that does the work, and the Hub shows its "Use this model"
snippet (with ``trust_remote_code=True`` for repositories that carry an ``auto_map``) and counts downloads through
config.json. ``s4d-hf`` is not a library known to the Hub: as ``library_name`` it would get neither; it is a tag.
"""

import json
import math
import numbers
import struct
from pathlib import Path

import jinja2  # a core dependency (torch requires it too)

from ..staging import write_atomically

# model_cards/s4d_model_card.md.j2, reached through the package's link to it so that it ships in the wheel too
TEMPLATE_DIR = Path(__file__).parent
TEMPLATE_NAME = "s4d_model_card.md.j2"

# task -> Hub pipeline_tag, display name, extra tags. The Hub has no time-series classification or regression task;
# a fixed-length series is a row of ordered features, so the tabular tasks are the nearest (tagged "time-series").
TASKS = {
    "audio-classification": {"pipeline_tag": "audio-classification", "name": "Audio classification",
                             "tags": ["audio", "raw-waveform"]},
    "image-classification": {"pipeline_tag": "image-classification", "name": "Image classification",
                             "tags": ["vision", "pixel-sequence"]},
    "time-series-classification": {"pipeline_tag": "tabular-classification", "name": "Time-series classification",
                                   "tags": ["time-series", "time-series-classification"]},
    "time-series-regression": {"pipeline_tag": "tabular-regression", "name": "Time-series regression",
                               "tags": ["time-series", "time-series-regression"]},
    "text-generation": {"pipeline_tag": "text-generation", "name": "Causal language modelling",
                        "tags": ["byte-level", "causal-lm"]},
}
# Tasks that only conversion and self-pretraining produce (no How-to-use pipeline: the Auto class snippet).
TASKS.update({
    "text-classification": {"pipeline_tag": "text-classification", "name": "Sequence classification",
                            "tags": ["token-ids"]},
    "feature-extraction": {"pipeline_tag": "feature-extraction", "name": "Feature extraction",
                           "tags": ["self-pretraining"]},
})
# `s4d-hf train --task` -> card task, where they differ.
TRAINING_TASK_TO_CARD = {"causal-lm": "text-generation"}
BASE_TAGS = ["s4d", "state-space-model", "s4d-hf", "custom_code"]
REQUIRED_KEYS = ("model_name", "task", "metrics", "baseline", "command", "limitations")
# A folder with any of these has a processor (or tokenizer) to prepare raw inputs.
PROCESSOR_FILES = ("preprocessor_config.json", "processor_config.json", "tokenizer_config.json", "tokenizer.json")
VERIFICATION_STATUS = ("passed", "failed", "forced")
DATASET_KEYS = ("id", "name", "description", "source", "license", "splits")
BASELINE_KEYS = ("name", "metric", "value", "command")
# Buffers saved next to the weights; they are not parameters.
_BUFFER_SUFFIXES = ("running_mean", "running_var", "num_batches_tracked")


def _fail(name: str, value, expected: str):
    raise ValueError(f"info[{name!r}] = {value!r}: expected {expected}")


def _text(d: dict, key: str, where: str) -> str:
    value = d.get(key)
    if not isinstance(value, str) or not value.strip():
        _fail(f"{where}{key}", value, "a non-empty string")
    return value.strip()


def _number(value, name: str) -> float | int:
    """A finite metric value as a plain Python number (numpy scalars would not survive the YAML dump)."""
    if isinstance(value, bool) or not isinstance(value, numbers.Real) or not math.isfinite(value):
        _fail(name, value, "a finite number measured by a command in the repository")
    return int(value) if isinstance(value, numbers.Integral) else float(value)


def count_parameters(folder) -> int:
    """Number of parameters in FOLDER/model.safetensors, read from its header (no tensor is loaded).

    Tied weights are stored once, so they count once; BatchNorm running statistics are buffers, not parameters.
    """
    path = Path(folder) / "model.safetensors"
    with open(path, "rb") as f:
        (header_len,) = struct.unpack("<Q", f.read(8))
        header = json.loads(f.read(header_len))
    return sum(math.prod(t["shape"]) for name, t in header.items()
               if name != "__metadata__" and not name.endswith(_BUFFER_SUFFIXES))


def _plots(folder: Path, plots) -> list[tuple[str, str]]:
    if plots is None:
        files = sorted(p.name for p in folder.glob("*.png"))
        return [(f, Path(f).stem.replace("_", " ").capitalize()) for f in files]
    if not isinstance(plots, list):
        _fail("plots", plots, "a list of {'file': 'x.png', 'caption': '...'}")
    out = []
    for i, plot in enumerate(plots):
        if not isinstance(plot, dict) or not isinstance(plot.get("file"), str):
            _fail(f"plots[{i}]", plot, "a dict with 'file' (a PNG in the folder) and 'caption'")
        if Path(plot["file"]).suffix.lower() != ".png" or not (folder / plot["file"]).is_file():
            _fail(f"plots[{i}]['file']", plot["file"], f"a PNG file present in {folder}")
        out.append((plot["file"], plot.get("caption") or Path(plot["file"]).stem.replace("_", " ").capitalize()))
    return out


def card_task(training_task: str) -> str:
    """The card task (a key of TASKS) of an ``s4d-hf train --task`` value."""
    return TRAINING_TASK_TO_CARD.get(training_task, training_task)


def shown_folder(folder) -> str:
    """How a folder is shown in a card's commands: relative to the working directory when inside it."""
    try:
        return str(Path(folder).resolve().relative_to(Path.cwd()))
    except ValueError:
        return str(folder)


def check_info(folder, info: dict) -> dict:
    """Validate ``info`` (schema in the module docstring) and return a copy with the optional keys filled in.

    Raises ValueError naming the key, the value received and what was expected.
    """
    if not isinstance(info, dict):
        raise TypeError(f"info must be a dict, got {type(info).__name__}")
    missing = [k for k in REQUIRED_KEYS if k not in info]
    if missing:
        raise ValueError(f"info is missing required key(s) {missing}; see s4d_hf.hub.cards for the schema")
    info = dict(info)
    for key in ("model_name", "command"):
        info[key] = _text(info, key, "")
    for key in ("training_time", "hardware"):
        info[key] = _text(info, key, "") if info.get(key) is not None else None
    if info["task"] not in TASKS:
        _fail("task", info["task"], f"one of {sorted(TASKS)}")
    info.setdefault("test_split", "test")
    if info["metrics"] is not None or info.get("dataset") is not None:
        info["dataset"] = _check_dataset(info.get("dataset"), info["test_split"])
    else:
        info["dataset"] = None
    info["metrics"] = _check_metrics(info["metrics"])
    info["baseline"] = _check_baseline(info["baseline"], info["metrics"])
    info["transformer_baseline"] = _check_transformer_baseline(info.get("transformer_baseline"), info["metrics"])

    limitations = info["limitations"]
    if isinstance(limitations, str) or not isinstance(limitations, list) or not limitations \
            or not all(isinstance(x, str) and x.strip() for x in limitations):
        _fail("limitations", limitations, "a non-empty list of sentences")
    info["extra_results"] = _check_extra_results(info.get("extra_results", []))
    comparisons = info.setdefault("method_comparisons", [])
    keys = ("name", "metric", "steps", "arms", "seeds", "model", "command")
    if not isinstance(comparisons, list) or not all(isinstance(r, dict) and all(k in r for k in keys)
                                                     for r in comparisons):
        _fail("method_comparisons", comparisons, f"a list of dicts with {keys}")
    info["conversion"] = _check_conversion(info.get("conversion"))
    info["verification"] = _check_verification(info.get("verification"))
    info["self_pretraining"] = _check_self_pretraining(info.get("self_pretraining"))

    license_id = info.setdefault("license", "apache-2.0")
    if license_id is not None and (not isinstance(license_id, str) or license_id != license_id.strip().lower()
                                   or " " in license_id):
        _fail("license", license_id, "a Hub licence id such as 'apache-2.0' or 'mit', or None (not stated)")
    tags = info.setdefault("tags", [])
    if not isinstance(tags, list) or not all(isinstance(t, str) for t in tags):
        _fail("tags", tags, "a list of strings")
    folder = Path(folder)
    info.setdefault("repo_id", f"<user>/{folder.resolve().name}")
    info.setdefault("summary", "")
    info.setdefault("intended_use", _default_intended_use(info))
    info.setdefault("evaluate_folder", shown_folder(folder))
    info.setdefault("evaluate_command", f"s4d-hf evaluate {info['evaluate_folder']}")
    if info["evaluate_command"] is not None:
        info["evaluate_command"] = _text(info, "evaluate_command", "")
    return info


def _check_dataset(dataset, test_split: str) -> dict:
    if not isinstance(dataset, dict):
        _fail("dataset", dataset, f"a dict with keys {list(DATASET_KEYS)}")
    dataset = dict(dataset)
    for key in DATASET_KEYS[:-1]:
        dataset[key] = _text(dataset, key, "dataset.")
    dataset.setdefault("citation", None)
    splits = dataset["splits"]
    if not isinstance(splits, dict) or test_split not in splits:
        _fail("dataset.splits", splits, f"a dict of split name -> description that includes {test_split!r}")
    return dataset


def _check_metrics(metrics) -> dict | None:
    if metrics is None:
        return None
    if not isinstance(metrics, dict) or not metrics:
        _fail("metrics", metrics, "a non-empty dict {metric type: value}, e.g. {'accuracy': 0.912}, or None")
    return {name: _number(value, f"metrics.{name}") for name, value in metrics.items()}


def _check_baseline(baseline, metrics: dict | None) -> dict | None:
    if baseline is None:
        return None
    if not isinstance(baseline, dict) or any(k not in baseline for k in BASELINE_KEYS):
        _fail("baseline", baseline, f"a dict with keys {list(BASELINE_KEYS)} (a same-split baseline), or None")
    baseline = {"params": None, "description": None, **baseline}
    for key in ("name", "command"):
        baseline[key] = _text(baseline, key, "baseline.")
    if baseline["metric"] not in (metrics or {}):
        _fail("baseline.metric", baseline["metric"], f"one of the card's metrics {list(metrics or {})}")
    baseline["value"] = _number(baseline["value"], "baseline.value")
    return baseline


def _check_transformer_baseline(transformer, metrics: dict | None) -> dict | None:
    if transformer is None:
        return None
    keys = (*BASELINE_KEYS, "params", "training_time", "hardware", "description", "s4d")
    if not isinstance(transformer, dict) or any(k not in transformer for k in keys):
        _fail("transformer_baseline", transformer, f"a dict with keys {list(keys)}, or None")
    out = _check_baseline({k: v for k, v in transformer.items() if k in BASELINE_KEYS}, metrics)
    for key in ("training_time", "hardware", "description"):
        out[key] = _text(transformer, key, "transformer_baseline.")
    peak = transformer.get("peak_memory")
    out["peak_memory"] = None if peak is None else _text(transformer, "peak_memory", "transformer_baseline.")
    out["params"] = _count(transformer["params"], "transformer_baseline.params")
    s4d = transformer["s4d"]
    if not isinstance(s4d, dict) or "params" not in s4d:
        _fail("transformer_baseline.s4d", s4d, "a dict with 'params' and optional 'training_time', 'peak_memory', "
              "'hardware'")
    out["s4d"] = {"params": _count(s4d["params"], "transformer_baseline.s4d.params"),
                  **{k: None if s4d.get(k) is None else _text(s4d, k, "transformer_baseline.s4d.")
                     for k in ("training_time", "peak_memory", "hardware")}}
    return out


def _count(value, name: str) -> int:
    if isinstance(value, bool) or not isinstance(value, numbers.Integral) or value < 0:
        _fail(name, value, "a parameter count (a non-negative integer)")
    return int(value)


def _check_extra_results(extra) -> list[dict]:
    if not isinstance(extra, list):
        _fail("extra_results", extra, "a list of {'name', 'description', 'metrics'}")
    out = []
    for i, result in enumerate(extra):
        if not isinstance(result, dict) or not isinstance(result.get("metrics"), dict) or not result["metrics"]:
            _fail(f"extra_results[{i}]", result, "a dict with 'name', 'description' and a non-empty 'metrics' dict")
        out.append({
            "name": _text(result, "name", f"extra_results[{i}]."), "description": result.get("description") or "",
            "metrics": {k: _number(v, f"extra_results[{i}].metrics.{k}") for k, v in result["metrics"].items()},
        })
    return out


def _check_conversion(conversion) -> dict | None:
    if conversion is None:
        return None
    keys = ("provenance", "options")
    if not isinstance(conversion, dict) or any(not isinstance(conversion.get(k), list) for k in keys):
        _fail("conversion", conversion, "a dict with the lists 'provenance' and 'options'")
    options = conversion["options"]
    if not all(isinstance(o, dict) and {"name", "value", "source", "detail"} <= set(o) for o in options):
        _fail("conversion.options", options, "a list of {name, value, source, detail}")
    return {"dropped": {}, "notes": [], **conversion}


def _check_verification(verification) -> dict | None:
    if verification is None:
        return None
    if not isinstance(verification, dict) or verification.get("status") not in VERIFICATION_STATUS:
        _fail("verification", verification, f"a dict with 'status' one of {VERIFICATION_STATUS}, 'description' "
              "and 'checks'")
    checks = verification.get("checks")
    keys = {"name", "max_abs_diff", "tolerance", "passed"}
    if not isinstance(checks, list) or not all(isinstance(c, dict) and keys <= set(c) for c in checks):
        _fail("verification.checks", checks, f"a list of dicts with {sorted(keys)} (and optional 'detail')")
    return {**verification, "description": _text(verification, "description", "verification."),
            "checks": [{"detail": "", **c} for c in checks]}


def _check_self_pretraining(spt) -> dict | None:
    if spt is None:
        return None
    if not isinstance(spt, dict):
        _fail("self_pretraining", spt, "a dict with 'objective', 'loss' and 'fine_tune_command'")
    return {key: _text(spt, key, "self_pretraining.") for key in ("objective", "loss", "fine_tune_command")}


def _default_intended_use(info: dict) -> str:
    if info["conversion"] is not None:
        return ("Research on state space models, and reuse of a state-spaces/s4 checkpoint with the Hugging Face "
                "libraries. The model computes what the source checkpoint computes; evaluate it on your data before "
                "any use.")
    task_name = TASKS[info["task"]]["name"].lower()
    data = f"on {info['dataset']['name']} only" if info["dataset"] else "only on the data of its training run"
    return (f"Research on state space models and a worked example of S4D for {task_name} with the Hugging Face "
            f"libraries. The model was trained and tested {data}; it is not meant for decisions about people or for "
            "use on other data without re-evaluation.")


def _metadata(info: dict) -> str:
    from huggingface_hub import EvalResult, ModelCardData

    task = TASKS[info["task"]]
    dataset, metrics = info["dataset"], info["metrics"] or {}
    results = [
        EvalResult(task_type=task["pipeline_tag"], task_name=task["name"], dataset_type=dataset["id"],
                   dataset_name=dataset["name"], dataset_split=info["test_split"], metric_type=name,
                   metric_name=f"{info['test_split'].capitalize()} {name}", metric_value=value)
        for name, value in metrics.items()
    ]
    data = ModelCardData(
        library_name="transformers", pipeline_tag=task["pipeline_tag"], license=info["license"],
        tags=BASE_TAGS + task["tags"] + [t for t in info["tags"] if t not in BASE_TAGS + task["tags"]],
        datasets=[dataset["id"]] if dataset else None, metrics=list(metrics) or None,
        model_name=info["model_name"], eval_results=results or None,  # eval_results needs model_name
    )
    return data.to_yaml()


def _num(value) -> str:
    return str(value) if isinstance(value, int) else f"{value:.4g}"


def _cell(value) -> str:
    """Text that stays inside one Markdown table cell."""
    return str(value).replace("|", "\\|").replace("\n", " ")


def render_model_card(folder, info: dict) -> str:
    """The README.md text for the checkpoint in ``folder`` described by ``info`` (schema: module docstring).

    ``folder`` must hold model.safetensors (its parameter count goes into the card), config.json and the PNG plots
    to embed.
    """
    folder = Path(folder)
    if not (folder / "model.safetensors").is_file():
        raise ValueError(f"folder {str(folder)!r} has no model.safetensors: expected a saved s4d-hf checkpoint")
    info = check_info(folder, info)
    n_params = count_parameters(folder)
    if info.get("n_params") is not None and info["n_params"] != n_params:
        _fail("n_params", info["n_params"], f"{n_params}, the count in {folder / 'model.safetensors'}")
    if not (TEMPLATE_DIR / TEMPLATE_NAME).is_file():
        raise FileNotFoundError(f"model card template {TEMPLATE_DIR / TEMPLATE_NAME} not found: cards are rendered "
                                "from a checkout of the s4d-hf repository")
    env = jinja2.Environment(loader=jinja2.FileSystemLoader(TEMPLATE_DIR), undefined=jinja2.StrictUndefined,
                             trim_blocks=True, lstrip_blocks=True, keep_trailing_newline=True, autoescape=False)
    env.filters["num"] = _num
    env.filters["cell"] = _cell
    config = json.loads((folder / "config.json").read_text()) if (folder / "config.json").is_file() else {}
    text = env.get_template(TEMPLATE_NAME).render(
        metadata=_metadata(info).strip(), info=info, t=TASKS[info["task"]], n_params=n_params,
        plots=_plots(folder, info.get("plots")), repo_id=info["repo_id"], evaluate_folder=info["evaluate_folder"],
        evaluate_json=json.dumps(info["metrics"]),
        processor=any((folder / name).is_file() for name in PROCESSOR_FILES),
        token_inputs=bool(config.get("vocab_size")),
    )
    return text.rstrip() + "\n"


def write_model_card(folder, info: dict) -> Path:
    """Render the card and write it to FOLDER/README.md (through a temporary file, so never half-written)."""
    return write_atomically(Path(folder) / "README.md", render_model_card(folder, info))


def read_card_metrics(folder) -> dict:
    """{metric type: value} of the model-index in FOLDER/README.md: the test-split metrics the card reports."""
    from huggingface_hub import ModelCard

    card = ModelCard.load(Path(folder) / "README.md")
    results = card.data.eval_results or []
    if not results:
        raise ValueError(f"{Path(folder) / 'README.md'} has no model-index metrics")
    return {r.metric_type: r.metric_value for r in results}
