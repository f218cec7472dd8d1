"""The finished run as a Hub-ready folder: model (config.json, model.safetensors, remote code), processor, model
card (README.md) and the run's numbers (all_results.json, eval_results.json, log_history.json, training_args.json).

The folder is assembled in a temporary sibling and renamed into place, so ``output_dir`` is either absent or
complete.
"""

from __future__ import annotations

import json
import math
import os
import sys
from pathlib import Path

from ..hub.cards import card_task, shown_folder, write_model_card
from ..hub.remote_code import make_portable
from .data.core import BYTE_VOCAB_SIZE, DatasetSplits, fit_normalization
from .folders import staged_output_folder


def save_processor(output_dir: str | os.PathLike, task: str, splits: DatasetSplits, stats: dict | None = None) -> None:
    """Save the processor that turns raw inputs into what the model was trained on.

    audio: ``S4DFeatureExtractor`` (per-clip zero-mean unit-variance); images: ``S4DImageProcessor`` (resize to
    the training size, /255, per-channel mean/std of the train split); time series: ``S4DTimeSeriesProcessor`` with
    the splits' ``series_transform`` and the train split's per-channel mean/std (of the transformed series);
    causal-lm: ``S4DByteTokenizer`` (ids = byte + 3, no ``</s>`` appended).
    ``stats``: the statistics from :func:`~s4d_hf.training.data.fit_normalization` (refitted on ``splits.train``
    when not given). Raises ImportError when ``s4d_hf.processing`` is not installed.
    """
    try:  # a documented lazy load: without s4d_hf.processing the folder is written without a processor
        from s4d_hf.processing import S4DFeatureExtractor, S4DImageProcessor, S4DTimeSeriesProcessor, byte_tokenizer
    except ImportError as e:
        raise ImportError(f"saving the {task} processor needs s4d_hf.processing, which this installation does not "
                          f"have ({e})") from e
    if task == "causal-lm":
        tokenizer = byte_tokenizer()
        assert len(tokenizer) == BYTE_VOCAB_SIZE
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
                                           std=[float(v) for v in stats["std"]], **(splits.series_transform or {}))
    processor.save_pretrained(str(output_dir))


# Trainer bookkeeping in the metric dicts, not metrics.
_RUN_KEYS = ("runtime", "samples_per_second", "steps_per_second")


def split_metrics(metrics: dict, prefix: str, *, loss: bool = True) -> dict:
    """{name: finite value} of the ``prefix``_* entries of ``metrics`` (without the Trainer's runtime entries)."""
    out = {}
    for key, value in metrics.items():
        name = key[len(prefix) + 1:]
        if key.startswith(prefix + "_") and name not in _RUN_KEYS and (loss or name != "loss") \
                and isinstance(value, (int, float)) and math.isfinite(value):
            out[name] = value
    return out


def dataset_info(spec: str, options: dict | None, splits: DatasetSplits) -> dict:
    """The card's ``dataset`` entry (schema: :mod:`s4d_hf.hub.cards`) of the data a run was trained on."""
    name = Path(spec).name if os.path.exists(spec) else spec
    source = f"`s4d-hf train --dataset {spec}`" + (
        " with " + ", ".join(f"{k}={v}" for k, v in sorted(options.items())) if options else "")
    return {
        "id": name, "name": name, "description": splits.description or name, "source": source,
        "license": splits.license or "unknown",
        "splits": {"train": f"{len(splits.train)} examples", "eval": f"{len(splits.eval)} examples (model selection)",
                   "test": f"{len(splits.test)} examples"},
        **({"citation": splits.citation} if splits.citation else {}),
    }


def run_card_info(job, result, config, n_parameters: int, command: str) -> dict:
    """The card ``info`` entries every training run has: name, data, command, time, size and limitations."""
    out, c = job.output_dir, config
    dataset = dataset_info(job.args.dataset, getattr(job.args, "dataset_option", None), job.splits)
    seconds = result.train_metrics.get("train_runtime", 0)
    duration = f"{seconds:.0f} s" if seconds < 120 else f"{seconds / 60:.0f} min"
    return {
        "model_name": out.name,
        "repo_id": f"<user>/{out.name}",
        "evaluate_folder": shown_folder(out),
        "dataset": dataset,
        "command": command,
        "training_time": f"{duration} ({result.global_step} optimizer steps, {job.args.backend} backend, "
                         f"{result.world_size} process(es))",
        "summary": f"Configuration: d_model={c.d_model}, n_layers={c.n_layers}, d_state={c.d_state}, init={c.init}, "
                   f"disc={c.disc}, bidirectional={c.bidirectional}, prenorm={c.prenorm}, norm={c.norm} "
                   f"({n_parameters:,} parameters).",
        "limitations": [f"Trained and tested on {dataset['name']} only ({len(job.splits.test)} test examples); other "
                        "data is untested."],
        "plots": [],
    }


def trained_card_info(job, result, config, results: dict, n_parameters: int, has_processor: bool) -> dict:
    """The card ``info`` of a trained folder: test metrics in the model-index, no baseline yet (``s4d-hf release``
    measures one), the eval split and the test loss as further evaluations."""
    command = job.command
    if result.world_size > 1:  # the same arguments, under a launcher
        command = command.replace("s4d-hf train", f"accelerate launch --multi_gpu --num_processes "
                                  f"{result.world_size} -m s4d_hf.train", 1)
    info = run_card_info(job, result, config, n_parameters, command)
    test = split_metrics(result.test_metrics, "test", loss=False)
    extra = [{"name": "eval split", "description": f"the split that selected the checkpoint (best eval "
                                                   f"{results.get('best_metric_name', '')})",
              "metrics": split_metrics(result.eval_metrics, "eval")}]
    test_loss = split_metrics(result.test_metrics, "test").get("loss")
    if test_loss is not None:
        extra.append({"name": "test split loss", "metrics": {"loss": test_loss}, "description": (
            "mean squared error on standardised targets ((y - mean) / std of the train split); mse, mae and rmse "
            "are in the targets' units" if job.task == "time-series-regression" else "the training objective")})
    if not has_processor:
        info["limitations"].append("This folder has no processor (s4d_hf.processing was not installed when it was "
                                   "written): inputs must be normalised as in training.")
    return {**info, "task": card_task(job.task), "metrics": test or None, "baseline": None,
            "extra_results": [e for e in extra if e["metrics"]]}


def write_json(path: Path, obj) -> None:
    path.write_text(json.dumps(obj, indent=2, sort_keys=True, default=str) + "\n")


def run_arguments(job) -> dict:
    """training_args.json: the parsed arguments (private ones left out) and the exact command line."""
    return {**{k: v for k, v in vars(job.args).items() if not k.startswith("_")}, "command": job.command}


def write_task_output(job, result, state_dict: dict) -> Path:
    """Write the Hub-ready folder of a task model with the weights ``state_dict`` (main process only; the task
    object of :mod:`s4d_hf.training.tasks` prepares them); returns its path. (Self-pretraining writes a backbone
    folder instead: :func:`s4d_hf.training.spt.write_backbone_output`.)"""
    out, model = job.output_dir, result.model
    with staged_output_folder(out) as tmp:
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
                   "best_metric_name": job.metrics.best, **job.memory.measure()}
        write_json(tmp / "all_results.json", results)
        write_json(tmp / "eval_results.json", {**result.eval_metrics, **result.test_metrics})
        write_json(tmp / "log_history.json", result.log_history)
        write_json(tmp / "training_args.json", run_arguments(job))
        write_model_card(tmp, trained_card_info(job, result, model.config, results, n_parameters, has_processor))
    return out
