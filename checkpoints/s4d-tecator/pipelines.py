"""Pipelines that S4D folders carry with them (copied beside the model code and named in ``config.json``'s
``custom_pipelines``), so that ``pipeline(task, model=folder_or_repo, trust_remote_code=True)`` gives the S4D behaviour
where s4d-hf is not installed. Importing s4d_hf changes no built-in task.

How each task gets its S4D behaviour (the choice per task, and why):

* ``time-series-classification`` / ``time-series-regression``: new tasks, served by
  :class:`TimeSeriesClassificationPipeline` / :class:`TimeSeriesRegressionPipeline` from the folder's
  ``custom_pipelines``. In-process, importing s4d_hf also registers "time-series-classification" for folders without
  that entry (e.g. saved by a plain ``Trainer``).
* ``audio-classification``: :class:`S4DAudioClassificationPipeline` from the folder's ``custom_pipelines``.
  transformers' own pipeline decodes files with ffmpeg and resamples other rates with torchaudio before the feature
  extractor sees the audio, so the S4D sampling-rate change could not happen there. transformers requires
  ``trust_remote_code=True`` for any folder that ships a pipeline, also where s4d-hf is installed; there,
  ``pipeline_class=S4DAudioClassificationPipeline`` is the explicit alternative.
* ``image-classification`` and ``text-generation``: transformers' own pipelines. The S4D image processor is saved so
  that transformers does not probe for a video processor, and the byte tokenizer (``S4DByteTokenizer``) appends no
  ``</s>`` to a prompt, so the stock pipelines, ``generate()`` and user code all see the same inputs.

This file imports nothing from s4d_hf (it is copied as remote code).
"""

import io

import numpy as np
import torch
from transformers import AudioClassificationPipeline, AutoModelForSequenceClassification, Pipeline
from transformers.pipelines import PIPELINE_REGISTRY
from transformers.utils import logging


logger = logging.get_logger(__name__)


def is_regression(config) -> bool:
    """As the model's loss: problem_type "regression", or one output and no problem type."""
    return config.problem_type == "regression" or (config.problem_type is None and config.num_labels == 1)


def postprocess_logits(logits: torch.Tensor, config, top_k: int | None, function_to_apply: str | None) -> list[dict]:
    """(num_labels,) logits -> [{"label", "score"}] sorted by score (classification: softmax, or sigmoid for
    multi-label), or [{"label", "value"}] in label order for regression (num_labels outputs, no activation)."""
    problem_type = "regression" if is_regression(config) else config.problem_type
    if function_to_apply is None:
        function_to_apply = {"regression": "none", "multi_label_classification": "sigmoid"}.get(problem_type, "softmax")
    if function_to_apply not in ("softmax", "sigmoid", "none"):
        raise ValueError(f"function_to_apply must be 'softmax', 'sigmoid' or 'none'; got {function_to_apply!r}")
    logits = logits.float()
    if problem_type == "regression":
        return [{"label": config.id2label[i], "value": v} for i, v in enumerate(logits.tolist())]
    scores = {"softmax": logits.softmax(-1), "sigmoid": logits.sigmoid(), "none": logits}[function_to_apply]
    top_k = config.num_labels if top_k is None else min(top_k, config.num_labels)
    values, ids = scores.topk(top_k)
    return [{"label": config.id2label[i], "score": s} for s, i in zip(values.tolist(), ids.tolist())]


class TimeSeriesClassificationPipeline(Pipeline):
    """
    Time-series classification with an S4D sequence-classification model and an ``S4DTimeSeriesProcessor`` saved in
    the same folder.

    ```python
    >>> from transformers import pipeline
    >>> pipe = pipeline("time-series-classification", model="my-s4d-ts", trust_remote_code=True)
    >>> pipe(np.random.randn(120, 3))            # (L, C) array, a list of numbers, or a DataFrame
    [{'label': ..., 'score': ...}, ...]                # sorted by score
    ```

    Call arguments: ``top_k`` (default 5, capped at num_labels) and ``function_to_apply`` ("softmax", "sigmoid",
    "none"). A list of series returns one result per series. Given a regression model (problem_type "regression",
    or one label and no problem type) it returns ``[{"label", "value"}]`` per target, and warns once that the task
    is "time-series-regression".
    """

    task_name = "time-series-classification"

    _load_processor = False
    _load_image_processor = False
    _load_video_processor = False
    _load_feature_extractor = True
    _load_tokenizer = False

    def __call__(self, inputs, **kwargs):
        if isinstance(inputs, (list, tuple)) and len(inputs) == 0:
            raise ValueError("inputs is an empty list: pass a series ((L, C) array, list of numbers or DataFrame) "
                             "or a list of series")
        # A list of numbers is one univariate series, not a list of inputs (the base class would iterate it).
        if isinstance(inputs, (list, tuple)) and all(
            isinstance(v, (int, float, np.number)) for v in inputs
        ):
            inputs = np.asarray(inputs, dtype=np.float64)
        return super().__call__(inputs, **kwargs)

    def _sanitize_parameters(self, top_k=5, function_to_apply=None, **kwargs):
        return {}, {}, {"top_k": top_k, "function_to_apply": function_to_apply}

    def preprocess(self, inputs):
        if self.feature_extractor is None:
            raise ValueError("time-series-classification needs the S4DTimeSeriesProcessor saved with the model "
                             "(preprocessor_config.json), or pass feature_extractor=...")
        processed = self.feature_extractor(inputs, return_tensors="pt")
        if self.dtype is not None:
            processed = processed.to(dtype=self.dtype)
        return processed

    def _forward(self, model_inputs):
        return self.model(**model_inputs)

    def postprocess(self, model_outputs, top_k=5, function_to_apply=None):
        if is_regression(self.model.config) and self.task_name == "time-series-classification":
            logger.warning_once("this model is a regression model: it predicts values, not classes; its task is "
                                "'time-series-regression'")
        return postprocess_logits(model_outputs.logits[0], self.model.config, top_k, function_to_apply)


class TimeSeriesRegressionPipeline(TimeSeriesClassificationPipeline):
    """
    Time-series regression with an S4D model of problem_type "regression" (``num_labels`` targets) and an
    ``S4DTimeSeriesProcessor``: an (L, C) array, a list of numbers or a DataFrame -> ``[{"label", "value"}]``, one
    entry per target in label order (a list of series gives one such list per series).

    ```python
    >>> pipe = pipeline("time-series-regression", model="my-s4d-regressor", trust_remote_code=True)
    >>> pipe(np.random.randn(100, 1))
    [{'label': 'fat', 'value': ...}]
    ```
    """

    task_name = "time-series-regression"

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        if not is_regression(self.model.config):
            raise ValueError(f"time-series-regression needs a regression model (problem_type 'regression'); this "
                             f"one has problem_type {self.model.config.problem_type!r} and {self.model.config.num_labels} "
                             "labels: use the task 'time-series-classification'")


def read_audio(inputs) -> tuple[np.ndarray, int]:
    """A WAV/FLAC/OGG file path or its bytes -> (float32 samples (L,) or (L, C), sampling rate), with soundfile
    (libsndfile; no ffmpeg).

    A truncated file raises a ValueError naming it: libsndfile silently reads the frames a cut-off file still holds,
    so the header's promise is checked, both the frame count (FLAC) and the WAV/AIFF data-chunk size that libsndfile
    logs as ``data : 16000 (should be 7978)`` (bytes; divided by ``Block Align``). A streamed WAV (data size 0 or
    0xFFFFFFFF: "until the end") is not truncated. A file without frames is refused too.
    """
    import re

    try:
        import soundfile
    except ImportError:
        raise ImportError("reading audio files needs soundfile: pip install 's4d-hf[audio]'") from None
    shown = "<bytes>" if isinstance(inputs, bytes) else repr(inputs)
    source = io.BytesIO(inputs) if isinstance(inputs, bytes) else inputs
    try:
        info = soundfile.info(source)
        if isinstance(source, io.BytesIO):
            source.seek(0)
        audio, sampling_rate = soundfile.read(source, dtype="float32", always_2d=False)
    except (soundfile.LibsndfileError, RuntimeError) as error:
        raise ValueError(f"inputs {shown} could not be decoded as audio by soundfile ({error}); WAV, FLAC and OGG "
                         "files are supported") from None
    promised = info.frames
    short = re.search(r"^\s*(?:data|SSND)\s*:\s*(\d+)\s*\(should be (\d+)\)", info.extra_info, re.MULTILINE)
    if short and int(short.group(2)) < int(short.group(1)) and int(short.group(1)) not in (0, 0xFFFFFFFF):
        align = re.search(r"Block Align\s*:\s*(\d+)", info.extra_info)
        promised = max(promised, int(short.group(1)) // max(int(align.group(1)) if align else 1, 1))
    if len(audio) < promised:
        raise ValueError(f"inputs {shown} is truncated: its header promises {promised} frames but it holds "
                         f"{len(audio)}")
    if len(audio) == 0:
        raise ValueError(f"inputs {shown} holds no audio frames (shape {audio.shape})")
    return audio, sampling_rate


class S4DAudioClassificationPipeline(AudioClassificationPipeline):
    """transformers' audio-classification pipeline, which for S4D feature extractors (those with a ``rate_policy``)
    accepts without ffmpeg or torchaudio:

    * a numpy array / torch tensor (L,) or (L, C) at the extractor's ``sampling_rate``;
    * a dict ``{"raw" or "array": samples, "sampling_rate": rate}`` at any rate: the extractor applies its
      ``rate_policy`` ("rate": the model scales its step size by ``rate = model_rate / rate``; "resample");
    * a path to a WAV/FLAC/OGG file, or its bytes (decoded with soundfile, at the file's own rate).

    Scores equal ``model(**feature_extractor(audio, sampling_rate=rate))``. Other models get the parent's behaviour.
    """

    def preprocess(self, inputs):
        if not hasattr(self.feature_extractor, "rate_policy"):  # not an S4D extractor: transformers' behaviour
            return super().preprocess(inputs)
        if isinstance(inputs, str) and inputs.startswith(("http://", "https://")):
            from huggingface_hub.utils import httpx

            inputs = httpx.get(inputs, follow_redirects=True).content
        if isinstance(inputs, (str, bytes)):
            audio, sampling_rate = read_audio(inputs)
        elif isinstance(inputs, dict):
            if "sampling_rate" not in inputs or not ("raw" in inputs or "array" in inputs):
                raise ValueError(f"an audio dict needs the keys 'raw' (or 'array') and 'sampling_rate'; "
                                 f"got keys {sorted(inputs)}")
            audio = inputs["raw"] if "raw" in inputs else inputs["array"]
            sampling_rate = inputs["sampling_rate"]
        elif isinstance(inputs, (np.ndarray, torch.Tensor)):
            audio, sampling_rate = inputs, self.feature_extractor.sampling_rate
        else:
            raise TypeError("inputs must be a numpy array or torch tensor of samples, a dict with 'raw'/'array' and "
                            f"'sampling_rate', or an audio file path/bytes; got {type(inputs).__name__}")
        processed = self.feature_extractor(audio, sampling_rate=sampling_rate, return_tensors="pt")
        if self.dtype is not None:
            processed = processed.to(dtype=self.dtype)
        return processed


def register_pipelines() -> None:
    """Register the new task "time-series-classification" with transformers' ``PIPELINE_REGISTRY``, so that
    ``pipeline("time-series-classification", model=folder)`` works in-process for any S4D time-series folder. Built-in
    tasks are left alone: S4D folders bring their own behaviour for those through ``custom_pipelines`` (audio) or
    their processors (images, text)."""
    PIPELINE_REGISTRY.register_pipeline(
        "time-series-classification",
        pipeline_class=TimeSeriesClassificationPipeline,
        pt_model=AutoModelForSequenceClassification,
    )


__all__ = [
    "TimeSeriesClassificationPipeline",
    "S4DAudioClassificationPipeline",
    "TimeSeriesRegressionPipeline",
    "register_pipelines",
    "read_audio",
]
