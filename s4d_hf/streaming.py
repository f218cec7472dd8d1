"""Streaming classification: feed a recording or a time series chunk by chunk, get a running prediction.

S4D is a linear recurrence x_k = dA x_{k-1} + dB u_k per layer (paper eq. 2 discretised), so a chunk can be
processed by the FFT convolution *starting from the state the previous chunk left*, and the result is exactly that
of the whole sequence (``S4DLayer.forward(state=...)``: convolution plus the state's free response). Memory is
constant in the stream length: each layer keeps one (B, H, N/2) complex state, and the pooled prediction keeps a
running sum (mean pooling) or the last hidden state ("last" pooling). After the last chunk the logits equal
``model(whole sequence).logits``.

Rules that make "equal to the whole sequence" true:

* only unidirectional models: a bidirectional kernel looks at the future (refused with a ValueError);
* fixed normalisation: a chunk must be normalised with statistics that do not depend on the chunk. A
  ``S4DTimeSeriesProcessor`` applies its stored training ``mean``/``std``; an ``S4DFeatureExtractor`` must have
  ``do_normalize=False`` (its per-recording statistics cannot be known before the recording ends);
* one sampling rate per stream. Under the extractor's "rate" policy the model's step size is scaled; the "resample"
  policy is refused for other rates (resampling chunk by chunk is not resampling the whole signal at the edges).

How a chunk continues the cached state: transformers' rule (``S4DModel._restarts``) reads several new positions
with no attention_mask, or a mask no longer than them, as "the whole sequence again" and restarts from the zero
state. The model reads only the last L entries of a longer mask, so the streamer passes the chunk's mask with one
leading 1 ("there is history before these positions"), which keeps memory constant.
"""

import torch
from transformers.cache_utils import DynamicCache

from .modeling.modeling_s4d import S4DForSequenceClassification, S4DSequenceClassifierOutput
from .processing.feature_extraction_s4d import S4DFeatureExtractor
from .processing.timeseries_processing_s4d import S4DTimeSeriesProcessor


class S4DStreamer:
    """Running predictions of an :class:`S4DForSequenceClassification` over a stream of chunks.

    Args:
        model: a unidirectional S4D sequence-classification model in eval mode.
        processor: optional ``S4DFeatureExtractor`` (audio, ``do_normalize=False``) or ``S4DTimeSeriesProcessor``.
            With a processor a chunk is one stream's piece in any form the processor takes ((l,) or (l, C) arrays,
            DataFrames, ...). Without one a chunk is model input: ``input_values`` of shape (B, l, input_dim) or
            (B, l) (B streams advanced together).
        rate: step-size multiplier for chunks without a sampling rate (the model's ``forward(rate=...)``).

    ```python
    >>> streamer = S4DStreamer(model, processor)
    >>> for chunk in chunks:
    ...     logits = streamer.push(chunk).logits      # (1, num_labels): prediction from everything seen so far
    >>> streamer.reset()                              # start a new stream
    ```
    """

    def __init__(self, model: S4DForSequenceClassification, processor=None, rate: float | None = None):
        if not isinstance(model, S4DForSequenceClassification):
            raise TypeError(f"model must be an S4DForSequenceClassification; got {type(model).__name__}")
        if model.config.bidirectional:
            raise ValueError("a bidirectional S4D model looks at future positions and has no recurrent state: it "
                             "cannot stream. Use a unidirectional model (config.bidirectional=False).")
        if model.config.input_dim is None:
            raise ValueError("model has no continuous input (config.input_dim is None); streaming takes audio or "
                             "time-series chunks")
        if processor is not None and not isinstance(processor, (S4DFeatureExtractor, S4DTimeSeriesProcessor)):
            raise TypeError(f"processor must be an S4DFeatureExtractor, an S4DTimeSeriesProcessor or None; got "
                            f"{type(processor).__name__}")
        if isinstance(processor, S4DFeatureExtractor) and processor.do_normalize:
            raise ValueError("processor has do_normalize=True: per-recording normalisation needs the whole recording, "
                             "so chunks would be normalised differently from the full sequence. Stream with a "
                             "model trained on an extractor with do_normalize=False (or fixed statistics).")
        if isinstance(processor, S4DTimeSeriesProcessor) and (processor.downsample > 1 or processor.series_features):
            raise ValueError(f"processor has downsample={processor.downsample}, series_features="
                             f"{processor.series_features}: that transform reads whole windows or the whole series, "
                             "so chunks would be processed differently from the full sequence. Streaming needs a "
                             "processor without them.")
        if rate is not None and not (isinstance(rate, (int, float)) and not isinstance(rate, bool) and rate > 0):
            raise ValueError(f"rate must be a positive number; got {rate!r}")
        self.model = model
        self.processor = processor
        self.rate = rate
        self.reset()

    def reset(self) -> None:
        """Forget the stream: zero SSM states, empty running pool."""
        self.cache = None
        self.steps = 0  # positions seen so far
        self._sum = self._count = self._last = None
        self._sampling_rate = None

    @torch.no_grad()
    def push(self, chunk, sampling_rate: int | None = None) -> S4DSequenceClassifierOutput:
        """Process the next chunk and return the prediction for the stream so far.

        Args:
            chunk: see the class docstring. Chunks of any length >= 1.
            sampling_rate (`int`, *optional*): with an audio extractor, the rate of the chunk (constant over a stream).

        Returns:
            ``S4DSequenceClassifierOutput`` with ``logits`` (B, num_labels), equal (to float rounding) to the model's
            logits on the concatenation of every chunk pushed since the last reset.
        """
        if self.model.training:
            raise ValueError("model is in training mode (dropout, batch statistics): call model.eval() before streaming")
        input_values, mask, rate = self._model_inputs(chunk, sampling_rate)
        batch = input_values.shape[0]
        if self.cache is None:
            self.cache = DynamicCache(config=self.model.config)
            attention_mask = mask
        else:
            if batch != self._sum.shape[0]:
                raise ValueError(f"chunk has batch size {batch} but the stream has {self._sum.shape[0]}")
            attention_mask = torch.cat([mask.new_ones(batch, 1), mask], dim=1)  # leading 1: continue, see module doc
        outputs = self.model.s4d(input_values=input_values, attention_mask=attention_mask, cache=self.cache,
                                 use_cache=True, rate=rate)
        pooled = self._update_pool(outputs.last_hidden_state, mask)
        self.steps += input_values.shape[1]
        return S4DSequenceClassifierOutput(logits=self.model.classifier(pooled).float())

    def _update_pool(self, hidden_states: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        """Fold a chunk's (B, l, H) hidden states into the running pool, as ``modeling_s4d.pool`` over the whole
        sequence: mean over valid positions, or the last valid position."""
        mask = mask.to(hidden_states.dtype)
        batch, length, hidden = hidden_states.shape
        if self._sum is None:
            self._sum = hidden_states.new_zeros(batch, hidden)
            self._count = hidden_states.new_zeros(batch)
            self._last = hidden_states.new_zeros(batch, hidden)
        chunk_valid = mask.sum(1) > 0
        seen_valid = self._count > 0
        self._sum += (hidden_states * mask[..., None]).sum(1)
        self._count += mask.sum(1)
        if self.model.config.pooling == "mean":
            return self._sum / self._count.clamp(min=1)[:, None]
        # the chunk's last valid position; with none, its last position (the whole-sequence pool's choice while
        # nothing at all is valid)
        last = length - 1 - mask.flip(-1).argmax(-1)
        chunk_last = hidden_states[torch.arange(batch, device=hidden_states.device), last]
        self._last = torch.where((chunk_valid | ~seen_valid)[:, None], chunk_last, self._last)
        return self._last

    def _model_inputs(self, chunk, sampling_rate) -> tuple[torch.Tensor, torch.Tensor, float | None]:
        """chunk -> (input_values (B, l, C) or (B, l), mask (B, l), rate)."""
        device = self.model.device
        if self.processor is None:
            if sampling_rate is not None:
                raise ValueError("sampling_rate needs an audio processor (S4DFeatureExtractor); without one pass "
                                 "rate=... to S4DStreamer")
            values = torch.as_tensor(chunk)
            if values.dim() not in (2, 3) or values.shape[1] == 0:
                raise ValueError(f"chunk must be input_values of shape (batch, length, {self.model.config.input_dim}) "
                                 f"or (batch, length) with length >= 1 when no processor is given; got "
                                 f"{tuple(values.shape)}")
            if not torch.isfinite(values).all():
                raise ValueError("chunk contains NaN or inf")
            values = values.to(device)
            return values, torch.ones(values.shape[:2], dtype=torch.long, device=device), self.rate

        if isinstance(self.processor, S4DFeatureExtractor):
            if sampling_rate is None:
                sampling_rate = self.processor.sampling_rate
            if self._sampling_rate is None:
                self._sampling_rate = sampling_rate
            elif sampling_rate != self._sampling_rate:
                raise ValueError(f"sampling_rate changed within the stream ({self._sampling_rate} -> {sampling_rate}); "
                                 "call reset() to start a new stream")
            if sampling_rate != self.processor.sampling_rate and self.processor.rate_policy == "resample":
                raise ValueError("the extractor's rate_policy='resample' cannot stream audio at another rate "
                                 "(chunk-wise resampling differs from resampling the whole signal at chunk edges); "
                                 "use rate_policy='rate'")
            features = self.processor(chunk, sampling_rate=sampling_rate, return_tensors="pt")
        else:
            if sampling_rate is not None:
                raise ValueError("sampling_rate is for audio; a time-series processor takes none")
            features = self.processor(chunk, return_tensors="pt")
        if features["input_values"].shape[0] != 1:
            raise ValueError("with a processor, push one stream's chunk at a time (got several examples); stream "
                             "several series with one S4DStreamer each, or pass model inputs without a processor")
        rate = features.get("rate", None)
        if rate is not None and self.rate is not None:
            raise ValueError("rate was given to S4DStreamer and the extractor also derives one from sampling_rate")
        return (features["input_values"].to(device), features["attention_mask"].to(device),
                rate if rate is not None else self.rate)


__all__ = ["S4DStreamer"]
