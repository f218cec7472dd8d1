"""Processors: audio feature extractor, image processor, time-series processor, byte tokenizer.

Every output is checked against an independent computation (explicit formulas, scipy, PIL), every processor
round-trips through save_pretrained / Auto*.from_pretrained, and every bad input raises ValueError/TypeError naming
the argument."""

import json

import numpy as np
import pandas as pd
import pytest
import torch
from PIL import Image
from scipy.signal import resample_poly
from transformers import AutoFeatureExtractor, AutoImageProcessor, AutoTokenizer

from s4d_hf import (
    BYTE_VOCAB_SIZE,
    S4DConfig,
    S4DFeatureExtractor,
    S4DForSequenceClassification,
    S4DImageProcessor,
    S4DTimeSeriesProcessor,
    byte_tokenizer,
)


def normalized(x: np.ndarray) -> np.ndarray:
    """Per-channel zero mean, unit variance over time (the extractor's do_normalize)."""
    return (x - x.mean(0)) / np.sqrt(x.var(0) + 1e-7)


# -- audio ---------------------------------------------------------------------------------------------------------


def test_audio_batch_is_normalised_padded_and_masked():
    rng = np.random.default_rng(0)
    a, b = rng.normal(size=50).astype(np.float32), rng.normal(size=30).astype(np.float32)
    out = S4DFeatureExtractor()([a, b], sampling_rate=16000, return_tensors="pt")
    assert set(out) == {"input_values", "attention_mask"}  # no rate at the model's own rate
    assert out["input_values"].shape == (2, 50) and out["input_values"].dtype == torch.float32
    np.testing.assert_allclose(out["input_values"][0].numpy(), normalized(a), atol=1e-6)
    np.testing.assert_allclose(out["input_values"][1, :30].numpy(), normalized(b), atol=1e-6)
    assert (out["input_values"][1, 30:] == 0).all()
    assert out["attention_mask"].tolist() == [[1] * 50, [1] * 30 + [0] * 20]


def test_audio_integer_pcm_is_scaled_to_float():
    pcm16 = np.array([-32768, -1, 0, 16384, 32767], dtype=np.int16)
    pcm8 = np.array([0, 64, 128, 255], dtype=np.uint8)  # 8-bit WAV is unsigned, centred on 128
    fe = S4DFeatureExtractor(do_normalize=False)
    np.testing.assert_allclose(fe(pcm16, sampling_rate=16000)["input_values"][0], pcm16 / 32768.0, atol=1e-7)
    np.testing.assert_allclose(fe(pcm8, sampling_rate=16000)["input_values"][0], (pcm8 - 128.0) / 128.0, atol=1e-7)
    pcm32 = np.array([2**31 - 1, -(2**31)], dtype=np.int32)
    np.testing.assert_allclose(fe(pcm32, sampling_rate=16000)["input_values"][0], pcm32 / 2.0**31, atol=1e-7)


def test_audio_mono_and_stereo_are_matched_to_feature_size():
    rng = np.random.default_rng(1)
    stereo = rng.normal(size=(40, 2)).astype(np.float32)
    mono = S4DFeatureExtractor(do_normalize=False)(stereo, sampling_rate=16000)["input_values"][0]
    np.testing.assert_allclose(mono, stereo.mean(1), atol=1e-7)
    both = S4DFeatureExtractor(feature_size=2, do_normalize=False)(stereo[:, 0], sampling_rate=16000)["input_values"]
    assert both[0].shape == (40, 2)
    np.testing.assert_allclose(both[0], np.stack([stereo[:, 0]] * 2, 1), atol=1e-7)
    # torch tensors and lists of numbers are read like arrays; there is no maximum length
    fe = S4DFeatureExtractor()
    long = rng.normal(size=200_000).astype(np.float32)
    assert fe(torch.from_numpy(long), sampling_rate=16000)["input_values"][0].shape == (200_000,)
    np.testing.assert_allclose(fe([0.1, -0.2, 0.3], sampling_rate=16000)["input_values"][0],
                               normalized(np.array([0.1, -0.2, 0.3])), atol=1e-6)


def test_audio_rate_policy_returns_the_step_size_multiplier():
    x = np.random.default_rng(2).normal(size=64).astype(np.float32)
    out = S4DFeatureExtractor()(x, sampling_rate=8000, return_tensors="pt")
    assert out["rate"] == 2.0 and isinstance(out["rate"], float)  # a Python float: forward(rate=...) scales dt
    np.testing.assert_allclose(out["input_values"][0].numpy(), normalized(x), atol=1e-6)  # samples untouched
    assert S4DFeatureExtractor()(x, sampling_rate=44100)["rate"] == pytest.approx(16000 / 44100)


def test_audio_resample_policy_matches_scipy_polyphase():
    x = np.random.default_rng(3).normal(size=300).astype(np.float32)
    out = S4DFeatureExtractor(rate_policy="resample")(x, sampling_rate=8000, return_tensors="np")
    assert "rate" not in out
    expected = normalized(resample_poly(x.astype(np.float64), 2, 1))
    assert out["input_values"].shape == (1, 600)
    np.testing.assert_allclose(out["input_values"][0], expected, atol=1e-5)
    down = S4DFeatureExtractor(rate_policy="resample", do_normalize=False)(x, sampling_rate=48000)["input_values"][0]
    np.testing.assert_allclose(down, resample_poly(x.astype(np.float64), 1, 3), atol=1e-6)


def test_audio_extractor_saves_its_policy_and_loads_with_auto_feature_extractor(tmp_path):
    S4DFeatureExtractor(sampling_rate=8000, rate_policy="resample", do_normalize=False).save_pretrained(tmp_path)
    saved = json.loads((tmp_path / "preprocessor_config.json").read_text())
    assert saved["rate_policy"] == "resample" and saved["feature_extractor_type"] == "S4DFeatureExtractor"
    assert saved["auto_map"] == {"AutoFeatureExtractor": "feature_extraction_s4d.S4DFeatureExtractor",
                                 "AutoProcessor": "feature_extraction_s4d.S4DFeatureExtractor"}
    assert (tmp_path / "feature_extraction_s4d.py").exists()  # remote code copied next to it
    loaded = AutoFeatureExtractor.from_pretrained(tmp_path)
    assert type(loaded) is S4DFeatureExtractor
    assert (loaded.sampling_rate, loaded.rate_policy, loaded.do_normalize) == (8000, "resample", False)


@pytest.mark.parametrize("raw_audio,kwargs,error,words", [
    (np.zeros(0, np.float32), {}, ValueError, ["raw_audio", "empty"]),
    ([], {}, ValueError, ["raw_audio", "empty"]),
    ([np.ones(5), np.zeros(0)], {}, ValueError, ["raw_audio[1]", "empty"]),
    (np.array([0.0, np.nan]), {}, ValueError, ["raw_audio", "NaN"]),
    (np.array([0.0, np.inf]), {}, ValueError, ["raw_audio", "inf"]),
    (np.zeros((2, 3, 4)), {}, ValueError, ["raw_audio", "(length,) or (length, channels)", "(2, 3, 4)"]),
    (np.zeros((4, 16000)), {}, ValueError, ["raw_audio", "16000 channels", "list of 1-D arrays"]),
    (np.zeros((100, 3)), {}, ValueError, ["raw_audio", "3 channels", "feature_size=1"]),
    (np.zeros(5, complex), {}, TypeError, ["raw_audio", "complex128"]),
    (np.zeros(5, bool), {}, TypeError, ["raw_audio", "bool"]),
    (np.zeros(5, np.uint16), {}, TypeError, ["raw_audio", "uint16"]),
    ("speech.wav", {}, TypeError, ["raw_audio", "str", "soundfile"]),
    (np.ones(5), {"sampling_rate": 0}, ValueError, ["sampling_rate", "0"]),
    (np.ones(5), {"sampling_rate": -8000}, ValueError, ["sampling_rate", "-8000"]),
    (np.ones(5), {"sampling_rate": 8000.5}, ValueError, ["sampling_rate", "8000.5"]),
    (np.ones(5), {"sampling_rate": float("nan")}, ValueError, ["sampling_rate", "nan"]),
    (np.ones(5), {"sampling_rate": "16k"}, TypeError, ["sampling_rate", "'16k'"]),
    (np.ones(5), {"sampling_rate": True}, TypeError, ["sampling_rate", "True"]),
])
def test_audio_bad_input_names_the_argument(raw_audio, kwargs, error, words):
    with pytest.raises(error) as info:
        S4DFeatureExtractor()(raw_audio, **kwargs)
    for word in words:
        assert word in str(info.value), (word, str(info.value))


@pytest.mark.parametrize("kwargs,word", [
    (dict(rate_policy="interpolate"), "rate_policy"),
    (dict(sampling_rate=0), "sampling_rate"),
    (dict(feature_size=0), "feature_size"),
])
def test_audio_bad_constructor_arguments(kwargs, word):
    with pytest.raises(ValueError, match=word):
        S4DFeatureExtractor(**kwargs)


# -- time series ---------------------------------------------------------------------------------------------------


def test_timeseries_fit_stores_per_channel_statistics_and_normalises_with_them():
    rng = np.random.default_rng(4)
    train = [rng.normal(size=(n, 3)) * [1.0, 2.0, 3.0] + [0.0, 5.0, -5.0] for n in (40, 25, 60)]
    processor = S4DTimeSeriesProcessor(feature_size=3).fit(train)
    everything = np.concatenate(train)
    np.testing.assert_allclose(processor.mean, everything.mean(0), rtol=1e-12)
    np.testing.assert_allclose(processor.std, everything.std(0), rtol=1e-12)
    assert all(type(v) is float for v in processor.mean + processor.std)  # JSON-serialisable

    out = processor([train[1], train[0]], return_tensors="pt")
    assert out["input_values"].shape == (2, 40, 3) and out["input_values"].dtype == torch.float32
    np.testing.assert_allclose(out["input_values"][0, :25].numpy(),
                               (train[1] - everything.mean(0)) / everything.std(0), atol=1e-6)
    assert (out["input_values"][0, 25:] == 0).all()
    assert out["attention_mask"].tolist() == [[1] * 25 + [0] * 15, [1] * 40]
    # a constant channel is only centred (std 1), not divided by zero
    constant = S4DTimeSeriesProcessor(feature_size=2).fit([np.stack([np.arange(5.0), np.full(5, 7.0)], 1)])
    assert constant.std[1] == 1.0 and constant.mean[1] == 7.0


def test_timeseries_accepts_univariate_arrays_lists_3d_arrays_and_dataframes():
    rng = np.random.default_rng(5)
    series = rng.normal(size=(30, 2))
    processor = S4DTimeSeriesProcessor(feature_size=2, mean=[1.0, -1.0], std=[2.0, 0.5])
    expected = ((series - [1.0, -1.0]) / [2.0, 0.5]).astype(np.float32)
    for form in (series, torch.from_numpy(series), pd.DataFrame(series, columns=["a", "b"])):
        np.testing.assert_allclose(processor(form)["input_values"][0], expected, atol=1e-6)
    batch = processor(np.stack([series, series]))["input_values"]  # (B, L, C) array: a batch
    assert batch.shape == (2, 30, 2)
    univariate = S4DTimeSeriesProcessor()
    assert univariate([1.0, 2.0, 3.0])["input_values"].shape == (1, 3, 1)  # list of numbers: one series
    assert univariate(np.arange(4.0))["input_values"].shape == (1, 4, 1)
    assert univariate(np.arange(4.0)[:, None])["input_values"].shape == (1, 4, 1)


def test_timeseries_dataframe_columns_are_matched_by_name():
    rng = np.random.default_rng(6)
    frame = pd.DataFrame(rng.normal(size=(20, 3)) * [1, 10, 100], columns=["temp", "wind", "rain"])
    processor = S4DTimeSeriesProcessor(feature_size=3).fit([frame])
    assert processor.channel_names == ["temp", "wind", "rain"]
    shuffled = frame[["rain", "temp", "wind"]]
    np.testing.assert_array_equal(processor(shuffled)["input_values"], processor(frame)["input_values"])
    with pytest.raises(ValueError, match=r"lacks the column\(s\) \['wind'\]"):
        processor(frame[["temp", "rain"]].assign(other=1.0))


def test_timeseries_nan_policy_error_names_the_example_steps_and_channels():
    x = np.ones((10, 2))
    x[3, 1] = x[7, 1] = np.nan
    processor = S4DTimeSeriesProcessor(feature_size=2)
    with pytest.raises(ValueError) as info:
        processor([np.ones((5, 2)), x])
    message = str(info.value)
    assert "sequences[1]" in message and "[3, 7]" in message and "channels [1]" in message
    assert "nan_policy='impute'" in message


def test_timeseries_imputed_steps_are_masked_and_ignored_by_the_model():
    rng = np.random.default_rng(7)
    x = rng.normal(size=(40, 2))
    x[5, 0] = x[20, 1] = np.nan
    processor = S4DTimeSeriesProcessor(feature_size=2, mean=[0.5, -0.5], std=[2.0, 3.0], nan_policy="impute")
    out = processor(x, return_tensors="pt")
    mask = out["attention_mask"][0]
    assert mask[5] == 0 and mask[20] == 0 and mask.sum() == 38
    assert out["input_values"][0, 5, 0] == 0 and out["input_values"][0, 20, 1] == 0  # 0 = training mean
    assert out["input_values"][0, 5, 1] == pytest.approx((x[5, 1] + 0.5) / 3.0)  # the observed channel stays

    model = S4DForSequenceClassification(S4DConfig(input_dim=2, d_model=16, n_layers=2, d_state=8, num_labels=3,
                                                   prenorm=True)).eval()
    other_fill = out["input_values"].clone()
    other_fill[0, 5] = 123.0
    other_fill[0, 20] = -50.0
    with torch.no_grad():
        a = model(**out).logits
        b = model(input_values=other_fill, attention_mask=out["attention_mask"]).logits
        unmasked = model(input_values=other_fill).logits
    torch.testing.assert_close(a, b, rtol=0, atol=1e-6)  # whatever sits at a masked step, the model ignores it
    assert (a - unmasked).abs().max() > 1e-3  # ... and the mask is what does it
    with pytest.raises(ValueError, match="return_attention_mask=False but values were imputed"):
        processor(x, return_attention_mask=False)


def test_timeseries_processor_round_trips_and_both_extractors_load_with_auto_feature_extractor(tmp_path):
    processor = S4DTimeSeriesProcessor(feature_size=2, nan_policy="impute").fit(
        [pd.DataFrame(np.random.default_rng(8).normal(size=(9, 2)), columns=["x", "y"])])
    processor.save_pretrained(tmp_path / "ts")
    S4DFeatureExtractor(sampling_rate=22050).save_pretrained(tmp_path / "audio")
    saved = json.loads((tmp_path / "ts" / "preprocessor_config.json").read_text())
    assert saved["feature_extractor_type"] == "S4DTimeSeriesProcessor"
    assert saved["auto_map"] == {"AutoFeatureExtractor": "timeseries_processing_s4d.S4DTimeSeriesProcessor",
                                 "AutoProcessor": "timeseries_processing_s4d.S4DTimeSeriesProcessor"}
    ts = AutoFeatureExtractor.from_pretrained(tmp_path / "ts")
    audio = AutoFeatureExtractor.from_pretrained(tmp_path / "audio")
    assert type(ts) is S4DTimeSeriesProcessor and type(audio) is S4DFeatureExtractor
    assert (ts.mean, ts.std, ts.nan_policy, ts.channel_names) == (processor.mean, processor.std, "impute", ["x", "y"])
    assert audio.sampling_rate == 22050


@pytest.mark.parametrize("sequences,error,words", [
    (np.zeros((0, 2)), ValueError, ["sequences", "empty"]),
    ([], ValueError, ["sequences", "empty list"]),
    ([np.ones((3, 2)), np.ones((0, 2))], ValueError, ["sequences[1]", "empty"]),
    (np.ones((5, 3)), ValueError, ["sequences", "3 channel(s)", "feature_size=2"]),
    (np.ones((5,)), ValueError, ["sequences", "1 channel(s)", "feature_size=2"]),
    (np.ones((2, 3, 4, 2)), ValueError, ["sequences", "(2, 3, 4, 2)", "(batch, length, channels)"]),
    (np.array([[1.0, np.inf]]), ValueError, ["sequences", "inf", "time step 0, channel 1"]),
    (np.array([[1.0, np.nan]]), ValueError, ["sequences", "NaN"]),
    (np.ones((4, 2), complex), TypeError, ["sequences", "complex128"]),
    (np.array([["a", "b"]]), TypeError, ["sequences", "<U1"]),
    ("series.csv", TypeError, ["sequences", "str"]),
    (pd.DataFrame({"a": ["x", "y"], "b": [1.0, 2.0]}), TypeError, ["sequences", "column 'a'"]),
    ([np.ones((3, 2)), [[1.0, 2.0], [3.0]]], TypeError, ["sequences[1]", "ragged"]),
])
def test_timeseries_bad_input_names_the_argument(sequences, error, words):
    with pytest.raises(error) as info:
        S4DTimeSeriesProcessor(feature_size=2)(sequences)
    for word in words:
        assert word in str(info.value), (word, str(info.value))


@pytest.mark.parametrize("kwargs,word", [
    (dict(nan_policy="drop"), "nan_policy"),
    (dict(feature_size=2, mean=[0.0, 0.0]), "mean and std"),
    (dict(feature_size=2, mean=[0.0], std=[1.0]), "mean must be 2"),
    (dict(feature_size=1, mean=[0.0], std=[0.0]), "std must be positive"),
    (dict(feature_size=1, mean=[float("nan")], std=[1.0]), "finite"),
    (dict(downsample=0), "downsample must be a positive integer"),
    (dict(downsample=True), "downsample must be a positive integer"),
    (dict(log_floor=0), "log_floor must be a positive number"),
    (dict(series_features=["log", "loud"]), "series_features must be distinct names"),
    (dict(series_features=["log", "log"], feature_size=2), "series_features must be distinct names"),
    (dict(series_features=["log", "raw"]), "makes 2 channel"),
    (dict(series_features=["log"], nan_policy="impute"), "nan_policy='error'"),
])
def test_timeseries_bad_constructor_arguments(kwargs, word):
    with pytest.raises(ValueError, match=word):
        S4DTimeSeriesProcessor(**kwargs)


def test_timeseries_series_transform_pools_computes_features_fits_and_round_trips(tmp_path):
    processor = S4DTimeSeriesProcessor(feature_size=2, downsample=2, series_features=["log", "log_rms"], log_floor=1.0)
    series = [3.0, 5.0, -2.0, -4.0, 8.0]  # windows of 2 averaged: 4, -3, 8
    log = [np.log1p(4.0), -np.log1p(3.0), np.log1p(8.0)]
    log_rms = np.log(np.sqrt((16 + 9 + 64) / 3) + 1.0)
    expected = np.stack([log, [log_rms] * 3], axis=1)
    np.testing.assert_allclose(processor(series)["input_values"][0], expected, rtol=1e-6)
    fitted = processor.fit([series, np.array(series)[:, None] * 10])  # statistics of the transformed channels
    ten = np.stack([np.sign([40.0, -30.0, 80.0]) * np.log1p([40.0, 30.0, 80.0]),
                    [np.log(np.sqrt(8900 / 3) + 1)] * 3], 1)
    both = np.concatenate([expected, ten])
    np.testing.assert_allclose(fitted.mean, both.mean(0), rtol=1e-6)
    np.testing.assert_allclose(fitted.std, both.std(0), rtol=1e-6)
    fitted.save_pretrained(tmp_path)
    loaded = AutoFeatureExtractor.from_pretrained(tmp_path)
    assert (loaded.downsample, loaded.series_features, loaded.log_floor) == (2, ["log", "log_rms"], 1.0)
    np.testing.assert_allclose(loaded(series)["input_values"], fitted(series)["input_values"])
    np.testing.assert_allclose(fitted(series)["input_values"][0], (expected - both.mean(0)) / both.std(0), rtol=1e-5)
    with pytest.raises(ValueError, match="expects one channel"):
        loaded(np.zeros((6, 2)))
    with pytest.raises(ValueError, match="NaN"):
        loaded([1.0, None, 2.0])


def test_timeseries_fit_rejects_a_channel_without_observations():
    x = np.ones((4, 2))
    x[:, 1] = np.nan
    with pytest.raises(ValueError, match="channel 1 has no observed value"):
        S4DTimeSeriesProcessor(feature_size=2, nan_policy="impute").fit([x])


# -- images --------------------------------------------------------------------------------------------------------


def test_image_is_a_raster_order_pixel_sequence():
    rng = np.random.default_rng(9)
    pixels = rng.integers(0, 256, size=(5, 7, 3), dtype=np.uint8)
    processor = S4DImageProcessor(do_resize=False, image_mean=[0.1, 0.2, 0.3], image_std=[0.5, 0.25, 2.0])
    out = processor(Image.fromarray(pixels), return_tensors="pt")["pixel_values"]
    assert out.shape == (1, 35, 3) and out.dtype == torch.float32
    mean, std = np.array([0.1, 0.2, 0.3]), np.array([0.5, 0.25, 2.0])
    for i in range(5):
        for j in range(7):
            np.testing.assert_allclose(out[0, i * 7 + j].numpy(), (pixels[i, j] / 255.0 - mean) / std, atol=1e-6)
    # numpy (H, W, C), numpy (C, H, W) and torch give the same sequence as PIL
    for form in (pixels, pixels.transpose(2, 0, 1), torch.from_numpy(pixels)):
        torch.testing.assert_close(processor(form, return_tensors="pt")["pixel_values"], out, rtol=0, atol=0)


def test_image_grayscale_equals_pil_luma_and_resize_equals_pil_resize():
    rng = np.random.default_rng(10)
    image = Image.fromarray(rng.integers(0, 256, size=(20, 24, 3), dtype=np.uint8))
    gray = S4DImageProcessor(do_grayscale=True, do_resize=False, do_normalize=False)
    out = gray(image)["pixel_values"][0]
    assert out.shape == (20 * 24, 1)
    np.testing.assert_allclose(out[:, 0], np.asarray(image.convert("L")).reshape(-1) / 255.0, atol=1e-7)
    np.testing.assert_array_equal(gray(np.asarray(image))["pixel_values"][0], out)  # arrays: same luma as PIL
    assert S4DImageProcessor(do_grayscale=True)(image)["pixel_values"].shape == (1, 32 * 32, 1)  # default 32x32

    resized = S4DImageProcessor(size={"height": 8, "width": 6}, do_normalize=False)(image)["pixel_values"][0]
    reference = np.asarray(image.resize((6, 8), Image.BILINEAR)) / 255.0
    np.testing.assert_allclose(resized, reference.reshape(-1, 3), atol=1e-6)


def test_image_modes_are_converted_to_rgb():
    processor = S4DImageProcessor(do_resize=False, do_normalize=False)
    assert processor(Image.new("L", (4, 3), 128))["pixel_values"].shape == (1, 12, 3)
    rgba = Image.new("RGBA", (2, 2), (255, 0, 0, 0))  # fully transparent: composited on white
    np.testing.assert_allclose(processor(rgba)["pixel_values"][0], np.ones((4, 3)), atol=1e-7)
    assert processor(np.zeros((6, 6), np.uint8))["pixel_values"].shape == (1, 36, 3)
    batch = processor([Image.new("RGB", (3, 3)), np.zeros((3, 3, 3), np.uint8)])["pixel_values"]
    assert batch.shape == (2, 9, 3)


def test_image_processor_round_trips_with_auto_image_processor(tmp_path):
    S4DImageProcessor(do_grayscale=True, size={"height": 28, "width": 28}, image_mean=[0.13],
                      image_std=[0.31]).save_pretrained(tmp_path)
    saved = json.loads((tmp_path / "preprocessor_config.json").read_text())
    # no image-processor type or AutoImageProcessor entry: transformers would read them as a hint for a video
    # processor in remote code and prompt (see S4DImageProcessor.to_dict); AutoImageProcessor reads this entry
    assert "image_processor_type" not in saved and saved["do_grayscale"] is True
    assert saved["auto_map"] == {"AutoFeatureExtractor": "image_processing_s4d.S4DImageProcessor",
                                 "AutoProcessor": "image_processing_s4d.S4DImageProcessor"}
    S4DConfig(input_dim=1).save_pretrained(tmp_path)  # as in every model folder: the config names the model type
    loaded = AutoImageProcessor.from_pretrained(tmp_path)
    assert type(loaded) is S4DImageProcessor
    assert (loaded.do_grayscale, dict(loaded.size), tuple(loaded.image_mean)) == (True, {"height": 28, "width": 28},
                                                                                  (0.13,))
    assert loaded(Image.new("RGB", (40, 30)))["pixel_values"].shape == (1, 784, 1)


@pytest.mark.parametrize("images,kwargs,error,words", [
    (Image.new("RGB", (0, 0)), {}, ValueError, ["images", "zero size"]),
    (Image.new("RGB", (5, 0)), {}, ValueError, ["images", "zero size"]),
    (np.zeros((0, 4, 3), np.uint8), {}, ValueError, ["images", "zero size"]),
    (np.zeros((4, 4, 3), bool), {}, TypeError, ["images", "bool"]),
    (np.zeros((4, 4, 3), complex), {}, TypeError, ["images", "complex128"]),
    (np.full((4, 4, 3), np.nan), {}, ValueError, ["images", "NaN"]),
    (np.zeros((5, 6, 7)), {}, ValueError, ["images", "channel axis", "(5, 6, 7)"]),
    (np.zeros((1, 2, 3, 4, 5)), {}, ValueError, ["images", "(1, 2, 3, 4, 5)"]),
    ([], {}, ValueError, ["images", "empty"]),
    (42, {}, TypeError, ["images", "int"]),
    ("does-not-exist.png", {}, ValueError, ["images", "does-not-exist.png"]),
    ([Image.new("RGB", (3, 3)), Image.new("RGB", (4, 4))], {"do_resize": False}, ValueError, ["different sizes"]),
    (Image.new("RGB", (3, 3)), {"do_grayscale": True}, ValueError, ["image_mean", "1 channel"]),
])
def test_image_bad_input_names_the_argument(images, kwargs, error, words):
    with pytest.raises(error) as info:
        S4DImageProcessor()(images, **kwargs)
    for word in words:
        assert word in str(info.value), (word, str(info.value))


# -- text ----------------------------------------------------------------------------------------------------------


def test_byte_tokenizer_maps_utf8_bytes_to_ids_plus_three_and_round_trips(tmp_path):
    tokenizer = byte_tokenizer()
    text = "héllo, S4D ✓"
    ids = tokenizer(text, add_special_tokens=False)["input_ids"]
    assert ids == [b + 3 for b in text.encode("utf-8")]
    assert len(tokenizer) == BYTE_VOCAB_SIZE == 259
    assert (tokenizer.pad_token_id, tokenizer.eos_token_id, tokenizer.unk_token_id) == (0, 1, 2)
    tokenizer.save_pretrained(tmp_path)
    loaded = AutoTokenizer.from_pretrained(tmp_path)
    assert loaded(text, add_special_tokens=False)["input_ids"] == ids
    assert loaded.decode(ids) == text
