"""Pipelines for S4D models: the new ``time-series-classification`` task, ``audio-classification`` inputs that
transformers' own pipeline cannot read without ffmpeg or torchaudio, and two fixes for S4D folders in the built-in
``image-classification`` and ``text-generation`` tasks.

* :class:`TimeSeriesClassificationPipeline` (task "time-series-classification", registered through transformers'
  ``PIPELINE_REGISTRY``): an (L, C) array, a list of numbers or a pandas DataFrame -> labels with scores, or the
  predicted values of a regression model. ``pipe.save_pretrained(folder)`` copies this file into the folder and
  writes ``custom_pipelines`` into its config, so ``pipeline(model=folder, trust_remote_code=True)`` works where
  s4d_hf is not installed.
* :class:`S4DAudioClassificationPipeline` replaces the implementation behind "audio-classification". For an S4D
  feature extractor it decodes WAV/FLAC paths and bytes with soundfile, and hands audio at any sampling rate to the
  extractor, whose ``rate_policy`` decides between the S4D rate change and resampling (numpy/scipy). For every other
  model it is transformers' ``AudioClassificationPipeline`` unchanged.
* :class:`S4DImageClassificationPipeline` and :class:`S4DTextGenerationPipeline` fix two traps of the built-in
  tasks for S4D folders (a remote-code prompt for a video processor; ByT5's </s> appended to prompts).

This file imports nothing from s4d_hf (it is copied as remote code).
"""

import io

import numpy as np
import torch
from transformers import (
    AudioClassificationPipeline,
    AutoModelForSequenceClassification,
    ImageClassificationPipeline,
    Pipeline,
    TextGenerationPipeline,
)
from transformers.pipelines import PIPELINE_REGISTRY


def postprocess_logits(logits: torch.Tensor, config, top_k: int | None, function_to_apply: str | None) -> list[dict]:
    """(num_labels,) logits -> [{"label", "score"}] sorted by score (classification: softmax, or sigmoid for
    multi-label), or [{"label", "value"}] in label order for regression (num_labels outputs, no activation)."""
    problem_type = config.problem_type
    if problem_type is None and config.num_labels == 1:
        problem_type = "regression"  # as the model's loss: one output and no problem type is regression
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
    Time-series classification (and regression) with an S4D sequence-classification model and an
    ``S4DTimeSeriesProcessor`` saved in the same folder.

    ```python
    >>> from transformers import pipeline
    >>> pipe = pipeline("time-series-classification", model="my-s4d-ts")   # s4d_hf imported
    >>> pipe(np.random.randn(120, 3))            # (L, C) array, a list of numbers, or a DataFrame
    [{'label': ..., 'score': ...}, ...]                # sorted by score; regression: [{'label', 'value'}]
    ```

    Call arguments: ``top_k`` (default 5, capped at num_labels) and ``function_to_apply`` ("softmax", "sigmoid",
    "none"). Regression models (problem_type "regression", or one label and no problem type) return
    ``[{"label", "value"}]`` per target, in label order. A list of series returns one result per series.
    """

    _load_processor = False
    _load_image_processor = False
    _load_video_processor = False
    _load_feature_extractor = True
    _load_tokenizer = False

    def __call__(self, inputs, **kwargs):
        # A list of numbers is one univariate series, not a list of inputs (the base class would iterate it).
        if isinstance(inputs, (list, tuple)) and len(inputs) > 0 and all(
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
        return postprocess_logits(model_outputs.logits[0], self.model.config, top_k, function_to_apply)


def read_audio(inputs) -> tuple[np.ndarray, int]:
    """A WAV/FLAC/OGG file path or its bytes -> (float32 samples (L,) or (L, C), sampling rate), with soundfile
    (libsndfile; no ffmpeg)."""
    try:
        import soundfile
    except ImportError:
        raise ImportError("reading audio files needs soundfile: pip install 's4d-hf[audio]'") from None
    source = io.BytesIO(inputs) if isinstance(inputs, bytes) else inputs
    try:
        audio, sampling_rate = soundfile.read(source, dtype="float32", always_2d=False)
    except (soundfile.LibsndfileError, RuntimeError) as error:
        shown = "<bytes>" if isinstance(inputs, bytes) else repr(inputs)
        raise ValueError(f"inputs {shown} could not be decoded as audio by soundfile ({error}); WAV, FLAC and OGG "
                         "files are supported") from None
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


class S4DImageClassificationPipeline(ImageClassificationPipeline):
    """transformers' image-classification pipeline without its attempt to load a video processor, which image
    classification never uses: for a folder whose preprocessor_config.json maps a custom image processor (S4D's, for
    remote code), that attempt guesses a "...VideoProcessor" in remote code and prompts for trust_remote_code."""

    _load_video_processor = False


class S4DTextGenerationPipeline(TextGenerationPipeline):
    """transformers' text-generation pipeline; for S4D models the prompt is encoded without special tokens by
    default. S4D language models use ``ByT5Tokenizer``, which appends </s> to every encoded text: a prompt ending
    in end-of-text would make the model start a new document. Pass ``add_special_tokens=True`` to get it back."""

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        if getattr(self.model.config, "model_type", None) == "s4d":
            self._preprocess_params.setdefault("add_special_tokens", False)


def _replace_builtin(task: str, builtin: type, replacement: type) -> None:
    """Put ``replacement`` (a subclass of the built-in pipeline) behind a built-in task, keeping the task's model
    classes and default model. Done in place rather than through ``register_pipeline``, which would mark the class
    as a custom pipeline: ``save_pretrained`` would then make folders of a built-in task need trust_remote_code."""
    entry = PIPELINE_REGISTRY.supported_tasks[task]
    if entry["impl"] in (builtin, f"{builtin.__module__}.{builtin.__qualname__}"):  # transformers stores dotted paths
        PIPELINE_REGISTRY.supported_tasks[task] = {**entry, "impl": replacement}


def register_pipelines() -> None:
    """Register "time-series-classification" and put the S4D-aware subclasses behind "audio-classification",
    "image-classification" and "text-generation" (for other models they behave as transformers' own)."""
    PIPELINE_REGISTRY.register_pipeline(
        "time-series-classification",
        pipeline_class=TimeSeriesClassificationPipeline,
        pt_model=AutoModelForSequenceClassification,
    )
    _replace_builtin("audio-classification", AudioClassificationPipeline, S4DAudioClassificationPipeline)
    _replace_builtin("image-classification", ImageClassificationPipeline, S4DImageClassificationPipeline)
    _replace_builtin("text-generation", TextGenerationPipeline, S4DTextGenerationPipeline)


__all__ = [
    "TimeSeriesClassificationPipeline",
    "S4DAudioClassificationPipeline",
    "S4DImageClassificationPipeline",
    "S4DTextGenerationPipeline",
    "register_pipelines",
    "read_audio",
]
