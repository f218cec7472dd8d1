"""The finished run as a Hub-ready folder: model (config.json, model.safetensors, remote code), processor, model
card (README.md) and the run's numbers (all_results.json, eval_results.json, log_history.json, training_args.json).

The folder is assembled in a temporary sibling and renamed into place, so ``output_dir`` is either absent or
complete.
"""

from __future__ import annotations

import contextlib
import json
import math
import os
import shutil
import sys
from pathlib import Path

from ..hub.remote_code import make_portable
from .data import BYT5_VOCAB_SIZE, DatasetSplits, fit_normalization


PIPELINE_TAGS = {
    "audio-classification": "audio-classification",
    "image-classification": "image-classification",
    "time-series-classification": "time-series-classification",
    "time-series-regression": "time-series-regression",
    "causal-lm": "text-generation",
}


def save_processor(output_dir: str | os.PathLike, task: str, splits: DatasetSplits, stats: dict | None = None) -> None:
    """Save the processor that turns raw inputs into what the model was trained on.

    audio: ``S4DFeatureExtractor`` (per-clip zero-mean unit-variance); images: ``S4DImageProcessor`` (resize to
    the training size, /255, per-channel mean/std of the train split); time series: ``S4DTimeSeriesProcessor`` with
    the train split's per-channel mean/std; causal-lm: ``S4DByteTokenizer`` (ids = byte + 3, no ``</s>`` appended).
    ``stats``: the statistics from :func:`~s4d_hf.training.data.fit_normalization` (refitted on ``splits.train``
    when not given). Raises ImportError when ``s4d_hf.processing`` is not installed.
    """
    try:
        from s4d_hf.processing import S4DFeatureExtractor, S4DImageProcessor, S4DTimeSeriesProcessor, byte_tokenizer
    except ImportError as e:
        raise ImportError(f"saving the {task} processor needs s4d_hf.processing, which this installation does not "
                          f"have ({e})") from e
    if task == "causal-lm":
        tokenizer = byte_tokenizer()
        assert len(tokenizer) == BYT5_VOCAB_SIZE
        tokenizer.save_pretrained(str(output_dir))
        return
    stats = fit_normalization(task, splits.train) if stats is None else stats
    if task == "audio-classification":
        processor = S4DFeatureExtractor(feature_size=splits.input_dim, sampling_rate=splits.sampling_rate,
                                        padding_value=0.0, do_normalize=True)
    elif task == "image-classification":
        height, width = splits.image_size
        processor = S4DImageProcessor(size={"height": height, "width": width}, do_resize=True,
                                      do_grayscale=splits.input_dim == 1, do_convert_rgb=splits.input_dim == 3,
                                      do_rescale=True, rescale_factor=1 / 255, do_normalize=True,
                                      image_mean=[float(v) for v in stats["mean"]],
                                      image_std=[float(v) for v in stats["std"]])
    else:
        processor = S4DTimeSeriesProcessor(feature_size=splits.input_dim, mean=[float(v) for v in stats["mean"]],
                                           std=[float(v) for v in stats["std"]])
    processor.save_pretrained(str(output_dir))


def _fmt(value) -> str:
    if isinstance(value, float):
        return f"{value:.4g}" if math.isfinite(value) else str(value)
    return str(value)


def write_model_card(folder: str | os.PathLike, *, task: str, dataset: str, splits: DatasetSplits, config,
                     results: dict, command: str, world_size: int, backend: str, has_processor: bool) -> None:
    """README.md: metadata (pipeline tag, test metrics as model-index) and a short description of the run."""
    from huggingface_hub import EvalResult, ModelCard, ModelCardData

    folder = Path(folder)
    name = folder.name.split(".tmp-")[0].lstrip(".")
    test = {k[len("test_"):]: v for k, v in results.items() if k.startswith("test_") and isinstance(v, (int, float))
            and k not in ("test_runtime", "test_samples_per_second", "test_steps_per_second")}
    dataset_name = Path(dataset).name if os.path.exists(dataset) else dataset
    data = ModelCardData(
        library_name="transformers", pipeline_tag=PIPELINE_TAGS[task], license="apache-2.0",
        tags=["s4d", "state-space-model", task], model_name=name,
        eval_results=[EvalResult(task_type=PIPELINE_TAGS[task], dataset_type=dataset_name, dataset_name=dataset_name,
                                 dataset_split="test", metric_type=k, metric_value=float(v))
                      for k, v in test.items() if k != "loss"] or None,
    )
    size = (f"d_model={config.d_model}, n_layers={config.n_layers}, d_state={config.d_state}, init={config.init}, "
            f"disc={config.disc}, bidirectional={config.bidirectional}, prenorm={config.prenorm}, norm={config.norm}")
    if world_size > 1:  # the same arguments, under a launcher
        command = command.replace("s4d-hf train", f"accelerate launch --multi_gpu --num_processes {world_size} "
                                  "-m s4d_hf.train", 1)
    rows = "\n".join(f"| {k} | {_fmt(results.get('eval_' + k, ''))} | {_fmt(v)} |" for k, v in test.items())
    loss_note = ("\nloss: mean squared error on standardised targets ((y - mean) / std of the train split); mse, mae "
                 "and rmse are in the targets' units.\n" if task == "time-series-regression" else "")
    auto_class = "AutoModelForCausalLM" if task == "causal-lm" else "AutoModelForSequenceClassification"
    body = f"""
# {name}

An [S4D](https://arxiv.org/abs/2206.11893) model ({size}; {results['num_parameters']:,} parameters)
trained for **{task}** on `{dataset_name}` with `s4d-hf train` ({backend} backend, {world_size} process(es),
{results.get('global_step', '?')} optimizer steps).

## Results

The selected checkpoint (best eval {results.get('best_metric_name', '')}) on the eval and the held-out test split:

| metric | eval | test |
|---|---|---|
{rows}
{loss_note}
## Data

{splits.description or dataset_name}. Splits: {len(splits.train)} train / {len(splits.eval)} eval /
{len(splits.test)} test examples. Data licence: {splits.license or 'unknown'}.
{('Citation: ' + splits.citation) if splits.citation else ''}

## Reproduce

```bash
{command}
```

## Use

```python
import s4d_hf  # or trust_remote_code=True without the package
from transformers import {auto_class}
model = {auto_class}.from_pretrained("{name}")
```
{'' if has_processor else chr(10) + '**Note:** this folder has no processor (s4d_hf.processing was not installed '
 'when it was written); inputs must be normalised as in training.' + chr(10)}"""
    ModelCard(f"---\n{data.to_yaml()}\n---\n{body}").save(str(folder / "README.md"))


def _json(path: Path, obj) -> None:
    path.write_text(json.dumps(obj, indent=2, sort_keys=True, default=str) + "\n")


@contextlib.contextmanager
def staged_folder(out: Path):
    """Yield an empty temporary sibling of ``out`` to write the folder into. When the block finishes, it replaces
    ``out`` by renames (an existing ``out`` is swapped out only at the end); on any error it is removed and ``out``
    is left as it was: never a half-written output folder. The folder carries the run marker (so that a later
    ``--overwrite`` may replace it); an existing ``out`` is replaced only if it is empty or carries the marker."""
    from .job import folder_state, write_marker

    tmp = out.parent / f".{out.name}.tmp-{os.getpid()}"
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir(parents=True)
    try:
        yield tmp
        write_marker(tmp, "output")
        if folder_state(out, "output") == "foreign":  # appeared or changed while the run trained
            raise ValueError(f"--output-dir {out} was created by someone else during the run; it is not replaced")
        if out.exists():
            old = out.parent / f".{out.name}.old-{os.getpid()}"
            out.rename(old)
            tmp.rename(out)
            shutil.rmtree(old)
        else:
            tmp.rename(out)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise


def run_arguments(job) -> dict:
    """training_args.json: the parsed arguments (private ones left out) and the exact command line."""
    return {**{k: v for k, v in vars(job.args).items() if not k.startswith("_")}, "command": job.command}


def write_output(job, result) -> Path:
    """Write the Hub-ready folder (main process only); returns its path. Self-pretraining writes a backbone folder
    (:func:`s4d_hf.training.spt.write_backbone_output`)."""
    from .job import fold_target_scale

    if job.task == "self-pretraining":
        from .spt import write_backbone_output

        return write_backbone_output(job, result)

    out = job.output_dir
    with staged_folder(out) as tmp:
        model, state_dict = result.model, dict(result.state_dict)
        if job.task == "time-series-regression":  # on copies: the state dict may share the model's tensors
            W, b = state_dict["classifier.weight"].detach().clone(), state_dict["classifier.bias"].detach().clone()
            fold_target_scale(W, b, job.target_mean, job.target_std)
            state_dict.update({"classifier.weight": W, "classifier.bias": b})
        model.config.use_cache = True  # the config default; Trainer sets it to False for training
        n_parameters = sum(v.numel() for k, v in state_dict.items() if k != "lm_head.weight")  # lm_head is tied
        model.save_pretrained(str(tmp), state_dict=state_dict)  # (it empties the dict it is given)
        has_processor = True
        try:
            save_processor(tmp, job.task, job.splits, job.norm_stats)
        except ImportError as e:
            has_processor = False
            print(f"warning: {e}; the output folder has no processor", file=sys.stderr)
        make_portable(tmp)  # code copies, every head's auto_map, the folder's custom pipeline
        results = {**result.train_metrics, **result.eval_metrics, **result.test_metrics,
                   "global_step": result.global_step, "world_size": result.world_size,
                   "num_parameters": n_parameters,
                   "best_metric_name": job.metrics.best}
        _json(tmp / "all_results.json", results)
        _json(tmp / "eval_results.json", {**result.eval_metrics, **result.test_metrics})
        _json(tmp / "log_history.json", result.log_history)
        _json(tmp / "training_args.json", run_arguments(job))
        write_model_card(tmp, task=job.task, dataset=job.args.dataset, splits=job.splits, config=model.config,
                         results=results, command=job.command, world_size=result.world_size,
                         backend=job.args.backend, has_processor=has_processor)
    return out
