"""Streaming: chunk-by-chunk predictions carry every layer's SSM state and equal the whole-sequence result."""

import numpy as np
import pytest
import torch
from transformers.cache_utils import DynamicCache

from s4d_hf import S4DConfig, S4DFeatureExtractor, S4DForSequenceClassification, S4DStreamer, S4DTimeSeriesProcessor


def classifier(input_dim: int, **kwargs) -> S4DForSequenceClassification:
    """A tiny random classifier whose logits are not tiny (the default init gives ~1e-3 or less), so that a 1e-5
    agreement means something."""
    config = dict(input_dim=input_dim, d_model=16, n_layers=2, d_state=8, num_labels=3)
    config.update(kwargs)
    model = S4DForSequenceClassification(S4DConfig(**config)).eval()
    with torch.no_grad():
        model.classifier.weight.normal_(0.0, 1.0)
    return model


def logits(model, **inputs) -> torch.Tensor:
    with torch.no_grad():
        return model(**inputs).logits


# uneven chunks, including single positions (the O(1) recurrent step) and multi-position ones (convolution from the
# carried state)
BOUNDS = [0, 1, 30, 31, 32, 77, 100]


@pytest.mark.parametrize("pooling,prenorm,norm", [("mean", False, "layer"), ("mean", True, "batch"),
                                                  ("last", False, "layer"), ("last", True, "layer")])
def test_every_running_prediction_equals_the_model_on_the_prefix(pooling, prenorm, norm):
    torch.manual_seed(0)
    model = classifier(2, pooling=pooling, prenorm=prenorm, norm=norm, init="inv", disc="bilinear")
    x = torch.randn(2, BOUNDS[-1], 2)
    streamer = S4DStreamer(model, rate=1.5)
    for start, end in zip(BOUNDS, BOUNDS[1:]):
        running = streamer.push(x[:, start:end]).logits
        torch.testing.assert_close(running, logits(model, input_values=x[:, :end], rate=1.5), rtol=0, atol=1e-5)
    assert streamer.steps == BOUNDS[-1]
    whole = logits(model, input_values=x, rate=1.5)
    assert whole.abs().max() > 0.02
    assert (running - whole).abs().max() < 1e-5
    # the rate changes the answer by 10x the tolerance or more, so the agreement shows it was carried through
    assert (whole - logits(model, input_values=x)).abs().max() > 1e-4

    streamer.reset()  # a new stream starts from the zero state
    torch.testing.assert_close(streamer.push(x[:, :40]).logits, logits(model, input_values=x[:, :40], rate=1.5),
                               rtol=0, atol=1e-5)


def test_a_chunk_without_a_longer_mask_would_restart_which_is_why_the_streamer_marks_continuation():
    """transformers' cache rule: several new positions with no mask (or one no longer than them) restart."""
    torch.manual_seed(1)
    model = classifier(1)
    x = torch.randn(1, 60)
    with torch.no_grad():
        cache = DynamicCache(config=model.config)
        model.s4d(input_values=x[:, :30], cache=cache, use_cache=True)
        naive = model.s4d(input_values=x[:, 30:], cache=cache, use_cache=True).last_hidden_state
        fresh = model.s4d(input_values=x[:, 30:]).last_hidden_state
        continued = model.s4d(input_values=x, use_cache=False).last_hidden_state[:, 30:]
    torch.testing.assert_close(naive, fresh, rtol=0, atol=0)  # restarted from zero
    assert (naive - continued).abs().max() > 1e-3
    streamer = S4DStreamer(model)
    streamer.push(x[:, :30])
    torch.testing.assert_close(streamer.push(x[:, 30:]).logits, logits(model, input_values=x), rtol=0, atol=1e-5)


def test_audio_chunks_at_8khz_stream_to_the_whole_recording_with_rate_2():
    torch.manual_seed(2)
    model = classifier(1)
    extractor = S4DFeatureExtractor(sampling_rate=16000, do_normalize=False)
    audio = (np.random.default_rng(0).uniform(-1, 1, size=400) * 32767).astype(np.int16)  # PCM chunks from a device
    streamer = S4DStreamer(model, extractor)
    for start in range(0, 400, 96):
        running = streamer.push(audio[start:start + 96], sampling_rate=8000).logits
    whole = logits(model, input_values=torch.from_numpy(audio / 32768.0)[None].float(), rate=2.0)
    torch.testing.assert_close(running, whole, rtol=0, atol=1e-5)
    with pytest.raises(ValueError, match="sampling_rate changed"):
        streamer.push(audio[:10], sampling_rate=16000)


@pytest.mark.parametrize("pooling", ["mean", "last"])
def test_time_series_chunks_use_the_stored_statistics_and_imputation_masks(pooling):
    torch.manual_seed(3)
    model = classifier(3, pooling=pooling)
    processor = S4DTimeSeriesProcessor(feature_size=3, nan_policy="impute", mean=[1.0, 0.0, -2.0], std=[2.0, 1.0, 4.0])
    series = np.random.default_rng(1).normal(size=(90, 3))
    series[7, 2] = series[50, 0] = np.nan
    series[75:, 1] = np.nan  # the whole last chunk is masked: "last" pooling must keep step 74 from the chunk before
    whole = logits(model, **processor(series, return_tensors="pt"))
    streamer = S4DStreamer(model, processor)
    for start in range(0, 90, 25):
        running = streamer.push(series[start:start + 25]).logits
    torch.testing.assert_close(running, whole, rtol=0, atol=1e-5)


def test_streaming_refusals_are_explicit():
    bidirectional = classifier(1, bidirectional=True)
    with pytest.raises(ValueError, match="bidirectional"):
        S4DStreamer(bidirectional)
    model = classifier(1)
    with pytest.raises(ValueError, match="do_normalize=True"):
        S4DStreamer(model, S4DFeatureExtractor())
    with pytest.raises(ValueError, match="rate_policy='resample'"):
        S4DStreamer(model, S4DFeatureExtractor(do_normalize=False, rate_policy="resample")).push(np.ones(8), 8000)
    with pytest.raises(TypeError, match="S4DForSequenceClassification"):
        S4DStreamer(model.s4d)
    with pytest.raises(ValueError, match="config.input_dim is None"):
        S4DStreamer(S4DForSequenceClassification(S4DConfig(vocab_size=10, d_model=8, n_layers=1, d_state=4)))
    with pytest.raises(ValueError, match="rate must be a positive number"):
        S4DStreamer(model, rate=0)
    with pytest.raises(ValueError, match="downsample=2"):
        S4DStreamer(model, S4DTimeSeriesProcessor(downsample=2))
    with pytest.raises(ValueError, match=r"series_features=\['standardized'\]"):
        S4DStreamer(model, S4DTimeSeriesProcessor(series_features=["standardized"]))
    streamer = S4DStreamer(model)
    with pytest.raises(ValueError, match=r"chunk must be input_values .* length >= 1"):
        streamer.push(torch.zeros(1, 0))
    with pytest.raises(ValueError, match="NaN"):
        streamer.push(torch.tensor([[0.0, float("nan")]]))
    streamer.push(torch.zeros(2, 5))
    with pytest.raises(ValueError, match="batch size 1 but the stream has 2"):
        streamer.push(torch.zeros(1, 5))
    with pytest.raises(ValueError, match="one stream's chunk at a time"):
        S4DStreamer(model, S4DTimeSeriesProcessor()).push([np.ones(4), np.ones(4)])
    model.train()
    with pytest.raises(ValueError, match="model.eval()"):
        S4DStreamer(model).push(torch.zeros(1, 5))
