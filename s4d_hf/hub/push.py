"""Check a checkpoint folder, then upload it to the Hugging Face Hub (``HfApi.create_repo`` + ``upload_folder``):
:func:`push_folder`, what ``s4d-hf push FOLDER --repo-id NAME`` runs (:mod:`s4d_hf.cli.push`).

Checks, each printed as it runs (the upload starts only when all pass):

    pickle files   *.bin / *.pt / *.pth / *.pkl / *.pickle / *.ckpt (loading those can run arbitrary code, e.g. the
                   training_args.bin a plain ``Trainer.save_model`` writes) are left out of the upload, each with a
                   one-line notice; model.safetensors holds the weights
    weights        model.safetensors is present
    config         config.json loads through AutoConfig as an S4DConfig
    remote code    config.json has an auto_map, and every module it names (plus their `from .x import` siblings)
                   is in the folder, so the repository loads with trust_remote_code=True without s4d_hf
    weights load   the config's architecture loads model.safetensors with no missing or unexpected keys
    processor      a feature-extractor / image-processor / processor / tokenizer file, valid JSON
    model card     README.md with library_name, pipeline_tag, license and a model-index with at least one metric;
                   every local image it embeds is in the folder

The token (``--token``, else ``HF_TOKEN`` or the stored login) is never printed: any error text is scrubbed of it.
"""

import glob
import json
import re
from dataclasses import dataclass
from pathlib import Path

from .cards import PROCESSOR_FILES, count_parameters

PICKLE_SUFFIXES = (".bin", ".pt", ".pth", ".pkl", ".pickle", ".ckpt")
CARD_FIELDS = ("library_name", "pipeline_tag", "license")
REPO_ID = re.compile(r"[\w.-]+/[\w.-]+")
COMMIT_MESSAGE = "Upload S4D checkpoint with s4d-hf"


class CheckFailed(ValueError):
    """A folder check failed; the message is the one-line reason."""


def folder_files(folder: Path) -> list[str]:
    """Relative paths of the folder's files, except hidden files/folders and Python caches."""
    out = []
    for path in sorted(folder.rglob("*")):
        rel = path.relative_to(folder)
        if path.is_file() and not any(p.startswith(".") or p == "__pycache__" for p in rel.parts):
            out.append(rel.as_posix())
    return out


def is_pickle(name: str) -> bool:
    return name.lower().endswith(PICKLE_SUFFIXES)


def pickle_notice(name: str) -> str:
    """The one line ``push`` prints for a pickle file it leaves out."""
    return (f"  note  leaving out {name}: a pickle file (loading it can run arbitrary code); model.safetensors holds "
            "the weights")


# --- the checks: each returns a one-line summary or raises CheckFailed -------------------------------------------

def check_no_pickles(folder: Path, files: list[str]) -> str:
    """``files``: every file of the folder. The pickles among them are left out (a notice each, see check_folder)."""
    pickles = [f for f in files if is_pickle(f)]
    return f"{len(pickles)} left out of the upload: {', '.join(pickles)}" if pickles else "none"


def check_weights(folder: Path, files: list[str]) -> str:
    if "model.safetensors" not in files:
        raise CheckFailed(f"model.safetensors missing in {folder}: save the model with save_pretrained()")
    try:
        return f"model.safetensors, {count_parameters(folder):,} parameters"
    except Exception as e:
        raise CheckFailed(f"model.safetensors is not a readable safetensors file: {e}") from None


def check_config(folder: Path):
    from transformers import AutoConfig

    import s4d_hf

    if not (folder / "config.json").is_file():
        raise CheckFailed(f"config.json missing in {folder}")
    try:
        config = AutoConfig.from_pretrained(folder)
    except Exception as e:
        reason = f"{type(e).__name__}: {e}".splitlines()[0]
        raise CheckFailed(f"config.json does not load with AutoConfig: {reason}") from None
    if not isinstance(config, s4d_hf.S4DConfig):
        raise CheckFailed(f"config.json loads as {type(config).__name__} (model_type {config.model_type!r}), "
                          "expected S4DConfig (model_type 's4d')")
    return config, f"S4DConfig: {config.n_layers} layers, d_model {config.d_model}, d_state {config.d_state}"


def check_remote_code(folder: Path, config) -> str:
    auto_map = getattr(config, "auto_map", None) or {}
    if "AutoConfig" not in auto_map or len(auto_map) < 2:
        raise CheckFailed(f"config.json auto_map {auto_map!r}: expected AutoConfig and at least one model class, "
                          "so that trust_remote_code=True works (save the model after `import s4d_hf`)")
    needed, todo = set(), [ref.split(".")[0] for ref in auto_map.values()]
    while todo:  # the modules auto_map names, and the sibling modules they import (as transformers copies them)
        module = todo.pop()
        if module in needed:
            continue
        needed.add(module)
        path = folder / f"{module}.py"
        if not path.is_file():
            raise CheckFailed(f"auto_map needs {module}.py, which is missing in {folder}")
        todo += re.findall(r"^\s*from\s+\.(\w+)\s+import", path.read_text(encoding="utf-8"), flags=re.M)
    return f"auto_map {sorted(auto_map)} -> {', '.join(sorted(m + '.py' for m in needed))}"


def check_weights_load(folder: Path, config) -> str:
    import s4d_hf

    names = config.architectures or []
    cls = getattr(s4d_hf, names[0], None) if names else None
    if cls is None:
        raise CheckFailed(f"config.json architectures {names!r}: expected one s4d_hf model class")
    from transformers.utils import logging

    verbosity, bars = logging.get_verbosity(), logging.is_progress_bar_enabled()
    logging.set_verbosity_error()  # the loading report is summarised below, in one line
    logging.disable_progress_bar()
    try:  # ignore_mismatched_sizes: report wrong shapes in loading_info instead of raising
        _, loading = cls.from_pretrained(folder, output_loading_info=True, ignore_mismatched_sizes=True)
    except Exception as e:
        raise CheckFailed(f"{names[0]} does not load from {folder}: {type(e).__name__}: {e}".splitlines()[0]) from None
    finally:
        logging.set_verbosity(verbosity)
        if bars:
            logging.enable_progress_bar()
    problems = [f"missing {k}" for k in sorted(loading.get("missing_keys") or [])]
    problems += [f"unexpected {k}" for k in sorted(loading.get("unexpected_keys") or [])]
    problems += [f"{k} is {tuple(saved)} in the file, {tuple(wanted)} in the config's model"
                 for k, saved, wanted in sorted(loading.get("mismatched_keys") or [])]
    if problems:
        more = f" (+{len(problems) - 3} more)" if len(problems) > 3 else ""
        raise CheckFailed(f"model.safetensors does not match {names[0]}: {'; '.join(problems[:3])}{more}")
    return f"{names[0]}: every tensor matches"


def check_processor(folder: Path, files: list[str]) -> str:
    present = [f for f in PROCESSOR_FILES if f in files]
    if not present:
        raise CheckFailed(f"no processor or tokenizer file in {folder}: expected one of {list(PROCESSOR_FILES)} "
                          "(save the feature extractor / image processor / tokenizer next to the model)")
    for name in present:
        try:
            json.loads((folder / name).read_text(encoding="utf-8"))
        except ValueError as e:
            raise CheckFailed(f"{name} is not valid JSON: {e}") from None
    return ", ".join(present)


def check_card(folder: Path, files: list[str]) -> str:
    from huggingface_hub import ModelCard

    if "README.md" not in files:
        raise CheckFailed(f"README.md (the model card) missing in {folder}: write it with s4d_hf.hub.cards")
    try:
        card = ModelCard.load(folder / "README.md")
    except Exception as e:
        raise CheckFailed(f"README.md metadata does not parse: {type(e).__name__}: {e}".splitlines()[0]) from None
    missing = [f for f in CARD_FIELDS if not getattr(card.data, f, None)]
    if missing:
        raise CheckFailed(f"README.md metadata lacks {missing}: expected {list(CARD_FIELDS)} and a model-index")
    results = card.data.eval_results or []
    if not results:
        raise CheckFailed("README.md metadata has no model-index with a measured metric")
    images = re.findall(r"!\[[^\]]*\]\(([^)\s]+)", card.text)
    absent = [i for i in images if "://" not in i and i not in files]
    if absent:
        raise CheckFailed(f"README.md embeds {absent}, not in the folder")
    metrics = ", ".join(f"{r.metric_type}={r.metric_value}" for r in results)
    return (f"library_name {card.data.library_name}, pipeline_tag {card.data.pipeline_tag}, license "
            f"{card.data.license}, model-index: {metrics}")


def check_folder(folder: Path, report=print) -> list[str]:
    """Run every check on ``folder``, report one line per check, return the files to upload.

    Pickle files are never uploaded: each gets a notice line (:func:`pickle_notice`) and is left out of the list.
    Raises CheckFailed with the first failure's reason after all checks that can run have run.
    """
    if not folder.is_dir():
        raise CheckFailed(f"folder {str(folder)!r} does not exist or is not a directory")
    everything = folder_files(folder)
    files = [f for f in everything if not is_pickle(f)]
    failures = []

    def run(name, check, *args):
        try:
            result = check(*args)
        except CheckFailed as e:
            report(f"  FAIL  {name:<13} {e}")
            failures.append(f"{name}: {e}")
            return None
        summary = result[1] if isinstance(result, tuple) else result
        report(f"  ok    {name:<13} {summary}")
        return result

    report(f"checking {folder}")
    run("pickle files", check_no_pickles, folder, everything)
    for name in everything:
        if is_pickle(name):
            report(pickle_notice(name))
    weights = run("weights", check_weights, folder, files)
    config = run("config", check_config, folder)
    if config is not None:
        run("remote code", check_remote_code, folder, config[0])
        if weights is not None:
            run("weights load", check_weights_load, folder, config[0])
    run("processor", check_processor, folder, files)
    run("model card", check_card, folder, files)
    if failures:
        more = f" (and {len(failures) - 1} more check(s) failed)" if len(failures) > 1 else ""
        raise CheckFailed(failures[0] + more)
    return files


def scrub(text, token: str | None) -> str:
    """``text`` on one line, without ``token`` or anything shaped like a Hub token."""
    text = " ".join(str(text).split())
    if token:
        text = text.replace(token, "***")
    return re.sub(r"\bhf_[A-Za-z0-9]{30,}", "hf_***", text)


class UploadFailed(RuntimeError):
    """The folder passed its checks but the Hub refused or failed the upload (the message names the error)."""


@dataclass
class PushResult:
    files: list[str]
    url: str | None = None  # None for a dry run
    commit_url: str | None = None


def push_folder(folder, repo_id: str, token: str | None = None, private: bool = False, dry_run: bool = False,
                commit_message: str = COMMIT_MESSAGE, report=print) -> PushResult:
    """Check ``folder`` (:func:`check_folder`, one reported line per check), then (unless ``dry_run``) create the
    repository and upload the files. Raises ValueError for a bad ``repo_id``, :class:`CheckFailed` for a refused
    folder, ValueError when the Hub is in offline mode, :class:`UploadFailed` when the upload fails. The messages may
    quote the Hub's answer: pass them through :func:`scrub` before showing them."""
    if not REPO_ID.fullmatch(repo_id):
        raise ValueError(f"--repo-id {repo_id!r}: expected 'namespace/name'")
    folder = Path(folder)
    files = check_folder(folder, report=report)
    if dry_run:
        return PushResult(files)
    from huggingface_hub import HfApi, constants

    if constants.is_offline_mode():
        raise ValueError("HF_HUB_OFFLINE is set: unset it (or set it to 0) to upload")
    try:
        api = HfApi(token=token)
        # without private: the Hub's default (public, unless the organisation defaults to private)
        url = api.create_repo(repo_id, private=private or None, exist_ok=True)
        commit = api.upload_folder(repo_id=repo_id, folder_path=folder, commit_message=commit_message,
                                   allow_patterns=[glob.escape(f) for f in files])
    except Exception as e:  # network / Hub errors
        raise UploadFailed(f"upload failed: {type(e).__name__}: {scrub(e, token)}") from e
    return PushResult(files, str(url), commit.commit_url)
