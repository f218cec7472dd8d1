"""Bad and hostile inputs get one clear error (issue 13): the exception type, and a message naming the argument.

One parametrized table per component, each row ``(id, call, exception, pattern)``: ``call(tmp_path)`` must raise
``exception`` with a message matching ``pattern`` (which names the argument or field). Append rows to a table, or
add a table for a new component (CLI, loading) with its own runner. Every case runs under an alarm, so a hang fails
in seconds instead of stalling the suite. The last tests check that a call that raises leaves the model's config,
weights (and BatchNorm statistics) and cache exactly as they were.
"""

import copy
import io
import json
import struct

import numpy as np
import pytest
import soundfile
import torch
from PIL import Image

from s4d_hf import (
    S4DConfig,
    S4DFeatureExtractor,
    S4DForCausalLM,
    S4DForSequenceClassification,
    S4DImageProcessor,
    S4DModel,
    S4DTimeSeriesProcessor,
)
from s4d_hf.pipelines import read_audio

from conftest import file_tree

TINY = dict(d_model=8, n_layers=1, d_state=4)
INF, NAN = float("inf"), float("nan")


pytestmark = pytest.mark.usefixtures("fail_if_it_hangs")  # conftest.py: a hang fails after 60 s


def run_case(call, exception, pattern, tmp_path):
    with pytest.raises(exception, match=pattern):
        call(tmp_path)


def ids(table):
    return [row[0] for row in table]


def rows(table):
    return [row[1:] for row in table]


# -- config ----------------------------------------------------------------------------------------------------------


def config(**kwargs):
    return lambda tmp_path: S4DConfig(**kwargs)


def saved_config_with(**changes):
    """A saved config.json edited by hand (a string where an int belongs...), loaded with from_pretrained."""

    def call(tmp_path):
        S4DConfig(input_dim=1, **TINY).save_pretrained(tmp_path)
        path = tmp_path / "config.json"
        path.write_text(json.dumps({**json.loads(path.read_text()), **changes}))
        return S4DConfig.from_pretrained(tmp_path)

    return call


def assigned(field, value):
    def call(tmp_path):
        setattr(S4DConfig(input_dim=1, **TINY), field, value)

    return call


CONFIG_CASES = [
    ("dt_max_inf", config(dt_max=INF), ValueError, r"S4DConfig\.dt_max must be a finite number"),
    ("dt_min_inf", config(dt_min=INF), ValueError, r"S4DConfig\.dt_min"),
    ("dt_min_nan", config(dt_min=NAN), ValueError, r"S4DConfig\.dt_min"),
    ("dt_max_nan", config(dt_max=NAN), ValueError, r"S4DConfig\.dt_max"),
    ("dt_min_above_dt_max", config(dt_min=0.5, dt_max=0.1), ValueError, r"dt_min <= dt_max.*dt_min=0\.5"),
    ("dt_min_zero", config(dt_min=0.0), ValueError, r"0 < dt_min"),
    ("dt_max_huge", config(dt_max=1e6), ValueError, r"S4DConfig\.dt_max must be at most"),
    ("dropout_nan", config(dropout=NAN), ValueError, r"S4DConfig\.dropout"),
    ("dropout_one", config(dropout=1.0), ValueError, r"S4DConfig\.dropout must be in \[0, 1\)"),
    ("layer_norm_eps_inf", config(layer_norm_eps=INF), ValueError, r"S4DConfig\.layer_norm_eps"),
    ("layer_norm_eps_negative", config(layer_norm_eps=-1e-5), ValueError, r"S4DConfig\.layer_norm_eps must be "
                                                                          r"positive"),
    ("initializer_range_nan", config(initializer_range=NAN), ValueError, r"S4DConfig\.initializer_range"),
    ("initializer_range_negative", config(initializer_range=-0.02), ValueError, r"S4DConfig\.initializer_range"),
    ("ssm_lr_inf", config(ssm_lr=INF), ValueError, r"S4DConfig\.ssm_lr"),
    ("ssm_weight_decay_nan", config(ssm_weight_decay=NAN), ValueError, r"S4DConfig\.ssm_weight_decay"),
    ("d_model_string", config(d_model="16"), ValueError, r"S4DConfig\.d_model.*expected int, got str"),
    ("d_model_string_is_a_type_error_too", config(d_model="16"), TypeError, r"S4DConfig\.d_model"),
    ("n_layers_float", config(n_layers=2.5), ValueError, r"S4DConfig\.n_layers"),
    ("prenorm_string", config(prenorm="yes"), ValueError, r"S4DConfig\.prenorm"),
    ("d_model_zero", config(d_model=0), ValueError, r"S4DConfig\.d_model must be a positive integer"),
    ("d_state_negative", config(d_state=-2), ValueError, r"S4DConfig\.d_state"),
    ("init_unknown", config(init="hippo"), ValueError, r"S4DConfig\.init must be one of"),
    ("assigned_string", assigned("d_model", "16"), ValueError, r"S4DConfig\.d_model"),
    ("config_json_string_int", saved_config_with(d_model="16"), ValueError, r"S4DConfig\.d_model.*got str"),
    ("config_json_dt_max_inf", saved_config_with(dt_max=INF), ValueError, r"S4DConfig\.dt_max"),
    ("config_json_list_for_int", saved_config_with(n_layers=[1]), ValueError, r"S4DConfig\.n_layers"),
]


@pytest.mark.parametrize("call, exception, pattern", rows(CONFIG_CASES), ids=ids(CONFIG_CASES))
def test_config_bad_inputs(call, exception, pattern, tmp_path):
    run_case(call, exception, pattern, tmp_path)


def test_config_field_errors_are_one_line_and_keep_the_strict_dataclass_type():
    from huggingface_hub.errors import StrictDataclassFieldValidationError

    with pytest.raises(StrictDataclassFieldValidationError) as caught:
        S4DConfig(d_model="16")
    assert isinstance(caught.value, ValueError) and isinstance(caught.value, TypeError)
    assert "\n" not in str(caught.value)


def test_largest_accepted_dt_max_still_gives_finite_outputs():
    for transform in ("exp", "softplus"):
        model = S4DModel(S4DConfig(input_dim=1, dt_min=79.0, dt_max=80.0, dt_transform=transform, **TINY)).eval()
        with torch.no_grad():
            assert torch.isfinite(model(input_values=torch.randn(2, 30)).last_hidden_state).all()


# -- models ----------------------------------------------------------------------------------------------------------


def classifier(num_labels=3, **extra):
    return S4DForSequenceClassification(S4DConfig(input_dim=2, num_labels=num_labels, **TINY, **extra)).eval()


def lm(**extra):
    return S4DForCausalLM(S4DConfig(vocab_size=20, pad_token_id=0, **TINY, **extra)).eval()


def forward(build, **inputs):
    """call(tmp_path): build the model, then call it with ``inputs`` (callables are evaluated first)."""
    return lambda tmp_path: build()(**{k: v() if callable(v) else v for k, v in inputs.items()})


X = lambda: torch.randn(3, 6, 2)  # noqa: E731  (batch 3, length 6, 2 channels)
IDS = lambda: torch.randint(2, 20, (2, 5))  # noqa: E731
ONES = lambda *shape: (lambda: torch.ones(*shape, dtype=torch.long))  # noqa: E731


def generate_with(**kwargs):
    return lambda tmp_path: lm().generate(**kwargs)


def decode_step_without_cache(tmp_path):
    """A mask longer than the inputs is for cached decoding; with no cache there is no past for it to describe."""
    return lm()(input_ids=torch.tensor([[5]]), attention_mask=torch.ones(1, 4, dtype=torch.long))


MODEL_CASES = [
    # attention_mask
    ("mask_shorter", forward(classifier, input_values=X, attention_mask=ONES(3, 5)), ValueError,
     r"attention_mask must have shape \(batch, length\) = \(3, 6\).*got \(3, 5\)"),
    ("mask_longer_without_cache", forward(classifier, input_values=X, attention_mask=ONES(3, 9)), ValueError,
     r"attention_mask must have shape .* = \(3, 6\).*got \(3, 9\)"),
    ("mask_longer_lm_without_cache", decode_step_without_cache, ValueError, r"attention_mask must have shape"),
    ("mask_wrong_batch", forward(classifier, input_values=X, attention_mask=ONES(2, 6)), ValueError,
     r"attention_mask must have shape"),
    ("mask_3d", forward(classifier, input_values=X, attention_mask=ONES(3, 6, 1)), ValueError,
     r"attention_mask must have shape"),
    ("mask_value_2", forward(classifier, input_values=X, attention_mask=lambda: torch.full((3, 6), 2)), ValueError,
     r"attention_mask must hold only 0 and 1.*got the value 2"),
    ("mask_value_negative", forward(lm, input_ids=IDS, attention_mask=lambda: -torch.ones(2, 5, dtype=torch.long)),
     ValueError, r"attention_mask must hold only 0 and 1"),
    ("mask_value_half", forward(lambda: S4DModel(S4DConfig(input_dim=2, **TINY)).eval(),
                                input_values=X, attention_mask=lambda: torch.full((3, 6), 0.5)), ValueError,
     r"attention_mask must hold only 0 and 1.*0\.5"),
    ("mask_row_all_padding", forward(classifier, input_values=X,
                                     attention_mask=lambda: torch.tensor([[1] * 6, [0] * 6, [1] * 6])), ValueError,
     r"attention_mask row 1 has no valid position"),
    ("mask_complex", forward(classifier, input_values=X, attention_mask=lambda: torch.ones(3, 6, dtype=torch.cfloat)),
     ValueError, r"attention_mask must hold 0/1"),
    ("mask_a_list", forward(classifier, input_values=X, attention_mask=[[1] * 6] * 3), TypeError,
     r"attention_mask must be a torch tensor"),
    # classification labels
    ("label_too_large", forward(classifier, input_values=X, labels=lambda: torch.tensor([0, 1, 3])), ValueError,
     r"labels must be class indices in \[0, 3\) \(num_labels=3\).*got 3"),
    ("label_negative", forward(classifier, input_values=X, labels=lambda: torch.tensor([0, -1, 2])), ValueError,
     r"labels must be class indices in \[0, 3\).*got -1"),
    ("label_float_single_label", forward(lambda: classifier(problem_type="single_label_classification"),
                                         input_values=X, labels=lambda: torch.tensor([0.0, 1.0, 2.0])), ValueError,
     r"labels for single_label_classification must be integer class indices.*float32"),
    ("label_float_vector_inferred_multilabel", forward(classifier, input_values=X,
                                                       labels=lambda: torch.tensor([0.0, 1.0, 2.0])), ValueError,
     r"labels for multi_label_classification must have shape \(batch, num_labels\) = \(3, 3\)"),
    ("label_wrong_batch", forward(classifier, input_values=X, labels=lambda: torch.tensor([0, 1])), ValueError,
     r"labels for single_label_classification must have shape \(batch,\) = \(3,\)"),
    ("label_multilabel_out_of_range", forward(lambda: classifier(problem_type="multi_label_classification"),
                                              input_values=X, labels=lambda: torch.full((3, 3), 2.0)), ValueError,
     r"labels for multi_label_classification must be targets in \[0, 1\]"),
    ("label_regression_nan", forward(lambda: classifier(num_labels=1), input_values=X,
                                     labels=lambda: torch.tensor([0.5, NAN, 1.0])), ValueError,
     r"labels for regression must be finite"),
    ("label_regression_wrong_shape", forward(lambda: classifier(num_labels=2, problem_type="regression"),
                                             input_values=X, labels=lambda: torch.zeros(3)), ValueError,
     r"labels for regression must have shape \(3, 2\)"),
    ("label_bool_regression", forward(lambda: classifier(num_labels=1), input_values=X,
                                      labels=lambda: torch.ones(3, dtype=torch.bool)), ValueError,
     r"labels for regression must be numbers"),
    ("label_a_list", forward(classifier, input_values=X, labels=[0, 1, 2]), TypeError,
     r"labels must be a torch tensor"),
    # causal-LM labels and inputs
    ("lm_label_outside_vocab", forward(lm, input_ids=IDS, labels=lambda: torch.full((2, 5), 20)), ValueError,
     r"labels must be token ids in \[0, 20\) \(vocab_size\) or -100.*got 20"),
    ("lm_label_negative", forward(lm, input_ids=IDS, labels=lambda: torch.full((2, 5), -1)), ValueError,
     r"labels must be token ids in \[0, 20\).*got -1"),
    ("lm_label_float", forward(lm, input_ids=IDS, labels=lambda: torch.zeros(2, 5)), ValueError,
     r"labels must hold integer token ids.*float32"),
    ("lm_label_shape", forward(lm, input_ids=IDS, labels=lambda: torch.zeros(2, 4, dtype=torch.long)), ValueError,
     r"labels must have the inputs' shape \(batch, length\) = \(2, 5\)"),
    ("lm_label_with_logits_to_keep", forward(lm, input_ids=IDS, labels=lambda: torch.zeros(2, 5, dtype=torch.long),
                                             logits_to_keep=1), ValueError, r"labels need logits at every position"),
    ("input_ids_outside_vocab", forward(lm, input_ids=lambda: torch.tensor([[3, 25]])), ValueError,
     r"input_ids must be token ids in \[0, 20\).*got 25"),
    ("input_ids_negative", forward(lm, input_ids=lambda: torch.tensor([[3, -4]])), ValueError,
     r"input_ids must be token ids"),
    ("input_ids_float", forward(lm, input_ids=lambda: torch.zeros(1, 3)), ValueError,
     r"input_ids must hold integer token ids.*float32"),
    ("rate_inf", forward(classifier, input_values=X, rate=INF), ValueError, r"rate must be a positive finite number"),
    ("rate_nan", forward(classifier, input_values=X, rate=NAN), ValueError, r"rate must be a positive finite number"),
    ("generate_input_ids_outside_vocab", generate_with(input_ids=torch.tensor([[3, 99]]), max_new_tokens=2,
                                                       do_sample=False), ValueError, r"input_ids must be token ids"),
]


@pytest.mark.parametrize("call, exception, pattern", rows(MODEL_CASES), ids=ids(MODEL_CASES))
def test_model_bad_inputs(call, exception, pattern, tmp_path):
    run_case(call, exception, pattern, tmp_path)


def test_a_longer_mask_still_serves_cached_decoding_and_generate():
    model = lm()
    ids_ = torch.randint(2, 20, (2, 6))
    with torch.no_grad():
        prefix = model(ids_[:, :5], use_cache=True)
        step = model(ids_[:, 5:], cache=prefix.cache, attention_mask=torch.ones(2, 6, dtype=torch.long)).logits
        whole = model(ids_).logits[:, -1:]
    torch.testing.assert_close(step, whole, rtol=0, atol=1e-5)
    mask = torch.tensor([[0, 1, 1, 1], [1, 1, 1, 1]])
    out = model.generate(torch.tensor([[0, 4, 5, 6], [7, 4, 5, 6]]), attention_mask=mask, max_new_tokens=3,
                         do_sample=False)
    assert out.shape == (2, 7)


def test_accepted_label_forms():
    """Integer labels for regression and -100 (ignored, as in transformers) for classification are fine."""
    x = torch.randn(3, 6, 2)
    assert torch.isfinite(classifier(num_labels=1)(input_values=x, labels=torch.tensor([1, 2, 3])).loss)
    loss = classifier()(input_values=x, labels=torch.tensor([0, -100, 2])).loss
    assert torch.isfinite(loss)
    assert torch.isfinite(classifier()(input_values=x, attention_mask=torch.ones(3, 6, dtype=torch.bool),
                                       labels=torch.tensor([0, 1, 2])).loss)


# -- processors ------------------------------------------------------------------------------------------------------


def images(*args, **kwargs):
    processor_kwargs = kwargs.pop("processor", {})
    return lambda tmp_path: S4DImageProcessor(size={"height": 4, "width": 4}, **processor_kwargs)(*args, **kwargs)


def audio(*args, **kwargs):
    return lambda tmp_path: S4DFeatureExtractor(sampling_rate=8000)(*args, **kwargs)


def series(*args, processor=None, **kwargs):
    options = dict(feature_size=2, **(processor or {}))
    return lambda tmp_path: S4DTimeSeriesProcessor(**options)(*args, **kwargs)


U8 = np.zeros((4, 4, 3), dtype=np.uint8)

PROCESSOR_CASES = [
    # images
    ("image_empty_list", images([]), ValueError, r"images is an empty list"),
    ("image_batch_0", images(np.zeros((0, 4, 4, 3), dtype=np.uint8)), ValueError,
     r"images has shape \(0, 4, 4, 3\): batch size 0"),
    ("image_batch_0_tensor", images(torch.zeros(0, 3, 4, 4)), ValueError, r"images has shape \(0, 3, 4, 4\)"),
    ("image_zero_size", images(np.zeros((0, 0, 3), dtype=np.uint8)), ValueError, r"images has zero size"),
    ("image_nan", images(np.full((4, 4, 3), NAN, dtype=np.float32)), ValueError, r"images contains NaN"),
    ("image_negative_int", images(np.full((4, 4, 3), -3, dtype=np.int16)), ValueError,
     r"images has negative pixel values"),
    ("image_float_out_of_range", images(np.full((4, 4, 3), 300.0, dtype=np.float32)), ValueError,
     r"images has float pixel values in \[300, 300\]"),
    ("image_float_negative", images(np.full((4, 4, 3), -0.5, dtype=np.float32)), ValueError,
     r"images has float pixel values"),
    ("image_bool", images(np.ones((4, 4, 3), dtype=bool)), TypeError, r"images must hold real pixel values"),
    ("image_complex", images(np.ones((4, 4, 3), dtype=np.complex64)), TypeError, r"images must hold real"),
    ("image_5d", images(np.zeros((1, 1, 4, 4, 3), dtype=np.uint8)), ValueError, r"images must have shape"),
    ("image_not_a_file", images("no/such/image.png"), ValueError, r"images is a string but not an image file"),
    ("image_a_number", images(3), TypeError, r"images must be a PIL image"),
    ("image_stats_per_channel", images(U8, processor=dict(image_mean=(0.5, 0.5))), ValueError,
     r"image_mean has 2 value"),
    # audio
    ("audio_empty", audio(np.zeros(0, dtype=np.float32), sampling_rate=8000), ValueError, r"raw_audio is empty"),
    ("audio_empty_list", audio([], sampling_rate=8000), ValueError, r"raw_audio is an empty list"),
    ("audio_empty_in_batch", audio([np.ones(5), np.zeros(0)], sampling_rate=8000), ValueError,
     r"raw_audio\[1\] is empty"),
    ("audio_nan", audio(np.array([0.0, NAN]), sampling_rate=8000), ValueError, r"raw_audio contains NaN"),
    ("audio_inf", audio(np.array([0.0, INF]), sampling_rate=8000), ValueError, r"raw_audio contains NaN or inf"),
    ("audio_complex", audio(np.ones(4, dtype=np.complex64), sampling_rate=8000), TypeError,
     r"raw_audio must hold float or integer PCM"),
    ("audio_3d", audio(np.ones((2, 3, 4)), sampling_rate=8000), ValueError, r"raw_audio must have shape"),
    ("audio_channels", audio(np.ones((10, 5)), sampling_rate=8000), ValueError, r"raw_audio of shape \(10, 5\)"),
    ("audio_sampling_rate_zero", audio(np.ones(4), sampling_rate=0), ValueError, r"sampling_rate must be a positive"),
    ("audio_sampling_rate_nan", audio(np.ones(4), sampling_rate=NAN), ValueError, r"sampling_rate must be a positive"),
    ("audio_sampling_rate_string", audio(np.ones(4), sampling_rate="8k"), TypeError, r"sampling_rate must be"),
    ("audio_a_path", audio("clip.wav", sampling_rate=8000), TypeError, r"raw_audio must be a numpy array"),
    ("audio_ragged", audio([np.ones(3), [[1.0, 2.0], [1.0]]], sampling_rate=8000), TypeError,
     r"raw_audio\[1\] must be"),
    # time series
    ("series_all_nan_impute", series(np.full((5, 2), NAN), processor=dict(nan_policy="impute")), ValueError,
     r"sequences \(shape \(5, 2\)\) holds only NaN"),
    ("series_all_nan_in_batch", series([np.ones((3, 2)), np.full((4, 2), NAN)], processor=dict(nan_policy="impute")),
     ValueError, r"sequences\[1\] .* holds only NaN"),
    ("series_nan_error_policy", series(np.array([[1.0, NAN]])), ValueError, r"sequences contains 1 NaN"),
    ("series_inf", series(np.array([[1.0, INF]])), ValueError, r"sequences contains inf"),
    ("series_batch_0", series(np.zeros((0, 5, 2))), ValueError, r"sequences has shape \(0, 5, 2\): batch size 0"),
    ("series_length_0", series(np.zeros((0, 2))), ValueError, r"sequences is empty \(shape \(0, 2\)\)"),
    ("series_length_0_in_batch", series(np.zeros((2, 0, 2))), ValueError, r"sequences\[0\] is empty"),
    ("series_empty_list", series([]), ValueError, r"sequences is an empty list"),
    ("series_wrong_channels", series(np.zeros((5, 3))), ValueError, r"sequences has 3 channel"),
    ("series_strings", series(np.array([["a", "b"]])), TypeError, r"sequences must hold real numbers"),
    ("series_a_dict", series({"a": 1}), TypeError, r"sequences must be"),
    ("series_bad_padding", series(np.zeros((5, 2)), padding="max_length"), ValueError, r"padding must be"),
    ("series_std_zero", lambda tmp_path: S4DTimeSeriesProcessor(feature_size=2, mean=[0, 0], std=[1, 0]), ValueError,
     r"std must be positive"),
    ("series_mean_nan", lambda tmp_path: S4DTimeSeriesProcessor(feature_size=2, mean=[0, NAN], std=[1, 1]),
     ValueError, r"mean must be 2 finite numbers"),
]


@pytest.mark.parametrize("call, exception, pattern", rows(PROCESSOR_CASES), ids=ids(PROCESSOR_CASES))
def test_processor_bad_inputs(call, exception, pattern, tmp_path):
    run_case(call, exception, pattern, tmp_path)


# -- images: pixel scale ---------------------------------------------------------------------------------------------


@pytest.mark.parametrize("do_resize", [True, False])
def test_16_bit_and_float_images_are_read_at_their_full_scale(do_resize):
    processor = S4DImageProcessor(do_grayscale=True, do_resize=do_resize, size={"height": 8, "width": 8})
    pixels = np.random.default_rng(0).integers(0, 256, (8, 8), dtype=np.uint8)
    reference = processor(pixels)["pixel_values"]
    sixteen = pixels.astype(np.uint16) * 257  # the same picture in 16 bits
    for image in (sixteen, sixteen.astype(np.int32), Image.fromarray(sixteen),
                  Image.fromarray(sixteen.astype(np.int32)),
                  pixels.astype(np.float32) / 255, Image.fromarray(pixels.astype(np.float32) / 255),
                  pixels.astype(np.float64), torch.from_numpy(sixteen.astype(np.int32))):
        np.testing.assert_allclose(processor(image)["pixel_values"], reference, atol=1e-6)


def test_a_16_bit_image_no_longer_saturates():
    ramp = (np.arange(64, dtype=np.uint16).reshape(8, 8) * 1000)  # 0 .. 63000
    values = S4DImageProcessor(do_grayscale=True, do_resize=False, do_normalize=False)(Image.fromarray(ramp))
    values = values["pixel_values"][0, :, 0]
    np.testing.assert_allclose(values, ramp.reshape(-1) / 65535, atol=1e-6)
    assert (values >= 1.0).mean() == 0.0  # clipped to 8 bits, 63 of 64 pixels were white


# -- audio files -----------------------------------------------------------------------------------------------------


@pytest.fixture
def wav_bytes():
    buffer = io.BytesIO()
    soundfile.write(buffer, (np.sin(np.arange(4000) / 7) * 0.5).astype(np.float32), 8000, format="WAV",
                    subtype="PCM_16")
    return buffer.getvalue()


def test_a_truncated_wav_raises_naming_the_file(tmp_path, wav_bytes):
    path = tmp_path / "cut.wav"
    path.write_bytes(wav_bytes[: len(wav_bytes) // 2])
    with pytest.raises(ValueError, match=r"inputs '.*cut\.wav' is truncated: its header promises 4000 frames"):
        read_audio(str(path))
    with pytest.raises(ValueError, match=r"inputs <bytes> is truncated"):
        read_audio(wav_bytes[: len(wav_bytes) // 2])


def test_whole_and_streamed_wavs_are_read(tmp_path, wav_bytes):
    audio_, rate = read_audio(wav_bytes)
    assert audio_.shape == (4000,) and rate == 8000
    streamed = bytearray(wav_bytes)  # sizes 0xFFFFFFFF: "until the end of the stream", as ffmpeg writes to a pipe
    streamed[4:8] = struct.pack("<I", 0xFFFFFFFF)
    data = streamed.find(b"data")
    streamed[data + 4 : data + 8] = struct.pack("<I", 0xFFFFFFFF)
    assert read_audio(bytes(streamed))[0].shape == (4000,)


# -- pipelines -------------------------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def folders(tmp_path_factory):
    from s4d_hf import byte_tokenizer

    root = tmp_path_factory.mktemp("pipelines")
    torch.manual_seed(0)
    two = S4DForSequenceClassification(S4DConfig(input_dim=2, num_labels=2, **TINY)).eval()
    two.save_pretrained(root / "ts")
    S4DTimeSeriesProcessor(feature_size=2, nan_policy="impute").save_pretrained(root / "ts")
    three = S4DForSequenceClassification(S4DConfig(input_dim=3, num_labels=2, **TINY)).eval()
    three.save_pretrained(root / "image")
    S4DImageProcessor(size={"height": 4, "width": 4}).save_pretrained(root / "image")
    mono = S4DForSequenceClassification(S4DConfig(input_dim=1, num_labels=2, **TINY)).eval()
    mono.save_pretrained(root / "audio")
    S4DFeatureExtractor(sampling_rate=8000).save_pretrained(root / "audio")
    buffer = io.BytesIO()
    soundfile.write(buffer, np.zeros(800, dtype=np.float32), 8000, format="WAV", subtype="PCM_16")
    (root / "cut.wav").write_bytes(buffer.getvalue()[:900])
    text = S4DForCausalLM(S4DConfig(vocab_size=259, pad_token_id=0, eos_token_id=1, **TINY)).eval()
    text.save_pretrained(root / "lm")
    byte_tokenizer().save_pretrained(root / "lm")
    return root


_PIPES = {}


def pipe(kind, root):
    from transformers import pipeline

    from s4d_hf import S4DAudioClassificationPipeline

    if (kind, root) not in _PIPES:
        task, extra = {"ts": ("time-series-classification", {}), "image": ("image-classification", {}),
                       "lm": ("text-generation", {}),
                       "audio": ("audio-classification", {"pipeline_class": S4DAudioClassificationPipeline})}[kind]
        _PIPES[kind, root] = pipeline(task, model=str(root / kind), **extra)
    return _PIPES[kind, root]


def through(kind, inputs, **kwargs):
    """call(root): the pipeline of ``kind`` (built once per folder) on ``inputs`` (a callable gets the root)."""
    return lambda root: pipe(kind, root)(inputs(root) if callable(inputs) else inputs, **kwargs)


PIPELINE_CASES = [
    ("ts_length_0", through("ts", np.zeros((0, 2))), ValueError, r"sequences is empty \(shape \(0, 2\)\)"),
    ("ts_batch_0", through("ts", np.zeros((0, 4, 2))), ValueError, r"sequences has shape \(0, 4, 2\)"),
    ("ts_all_nan", through("ts", np.full((6, 2), NAN)), ValueError, r"sequences \(shape \(6, 2\)\) holds only NaN"),
    ("ts_nan_at_every_step", through("ts", np.array([[NAN, 1.0], [1.0, NAN]])), ValueError,
     r"attention_mask row 0 has no valid position"),
    ("ts_wrong_channels", through("ts", np.zeros((5, 4))), ValueError, r"sequences has 4 channel"),
    ("image_zero_size", through("image", np.zeros((0, 0, 3), dtype=np.uint8)), ValueError, r"images has zero size"),
    ("image_batch_0", through("image", np.zeros((0, 4, 4, 3), dtype=np.uint8)), ValueError,
     r"images has shape \(0, 4, 4, 3\)"),
    ("image_negative", through("image", np.full((4, 4, 3), -1, dtype=np.int32)), ValueError,
     r"images has negative pixel values"),
    ("audio_empty", through("audio", np.zeros(0, dtype=np.float32)), ValueError, r"raw_audio is empty"),
    ("audio_nan", through("audio", np.full(10, NAN, dtype=np.float32)), ValueError, r"raw_audio contains NaN"),
    ("audio_dict_without_rate", through("audio", {"raw": np.zeros(10)}), ValueError, r"'sampling_rate'"),
    ("audio_truncated_wav", through("audio", lambda root: str(root / "cut.wav")), ValueError,
     r"cut\.wav' is truncated"),
    ("audio_junk_bytes", through("audio", b"RIFF not really"), ValueError, r"inputs <bytes> could not be decoded"),
    ("audio_a_number", through("audio", 5), TypeError, r"inputs must be a numpy array"),
]


@pytest.mark.parametrize("call, exception, pattern", rows(PIPELINE_CASES), ids=ids(PIPELINE_CASES))
def test_pipeline_bad_inputs(call, exception, pattern, folders):
    run_case(call, exception, pattern, folders)


# -- a call that raises changes nothing ------------------------------------------------------------------------------


def snapshot(model):
    return copy.deepcopy(model.config.to_dict()), {k: v.clone() for k, v in model.state_dict().items()}


def assert_unchanged(model, before):
    config, state = before
    assert model.config.to_dict() == config
    after = model.state_dict()
    assert after.keys() == state.keys()
    for key, value in state.items():
        assert torch.equal(after[key], value), key


FAILING_CALLS = [
    ("float_labels_with_no_problem_type", dict(labels=torch.tensor([0.0, 1.0, 2.0]))),
    ("label_out_of_range", dict(labels=torch.tensor([0, 1, 7]))),
    ("bad_mask_values_with_labels", dict(labels=torch.tensor([0, 1, 2]), attention_mask=torch.full((3, 6), 3))),
    ("bad_mask_shape", dict(attention_mask=torch.ones(3, 9, dtype=torch.long))),
    ("regression_labels_for_a_classifier", dict(labels=torch.randn(3, 3).mul(5))),
]


@pytest.mark.parametrize("training", [False, True], ids=["eval", "train"])
@pytest.mark.parametrize("inputs", [row[1] for row in FAILING_CALLS], ids=[row[0] for row in FAILING_CALLS])
def test_a_failing_call_leaves_config_and_weights_unchanged(inputs, training):
    """BatchNorm (norm="batch") in training mode would update its running statistics on any forward that ran."""
    model = classifier(norm="batch", dropout=0.1).train(training)
    before = snapshot(model)
    assert model.config.problem_type is None
    with pytest.raises(ValueError):
        model(input_values=torch.randn(3, 6, 2), **inputs)
    assert_unchanged(model, before)
    assert model.config.problem_type is None  # not made sticky by the failed call


def test_a_successful_call_records_the_inferred_problem_type_as_transformers_does():
    model = classifier()
    model(input_values=torch.randn(3, 6, 2), labels=torch.tensor([0, 1, 2]))
    assert model.config.problem_type == "single_label_classification"


def test_a_failing_lm_call_leaves_the_cache_and_weights_unchanged():
    model = lm()
    with torch.no_grad():
        cache = model(torch.randint(2, 20, (2, 5)), use_cache=True).cache
    states = tensors([layer.recurrent_states for layer in cache.layers])
    assert states
    before = snapshot(model)
    for bad in (dict(labels=torch.full((2, 1), 50)), dict(attention_mask=torch.full((2, 6), 2))):
        with pytest.raises(ValueError):
            model(torch.randint(2, 20, (2, 1)), cache=cache, **bad)
    assert_unchanged(model, before)
    after = tensors([layer.recurrent_states for layer in cache.layers])
    assert len(after) == len(states) and all(torch.equal(a, b) for a, b in zip(after, states))


def tensors(value) -> list[torch.Tensor]:
    """Copies of every tensor in a nest of dicts, lists and tuples, in order."""
    if isinstance(value, torch.Tensor):
        return [value.clone()]
    if isinstance(value, dict):
        value = [value[k] for k in sorted(value, key=str)]
    if isinstance(value, (list, tuple)):
        return [t for v in value for t in tensors(v)]
    return []


def test_failing_config_assignment_leaves_the_config_unchanged():
    config = S4DConfig(input_dim=1, **TINY)
    before = config.to_dict()
    with pytest.raises(ValueError):
        config.d_model = "16"
    assert config.to_dict() == before


# -- the command line ------------------------------------------------------------------------------------------------
#
# Each row ``(id, make, code, names)``: ``make(sandbox)`` edits a copy of a prepared sandbox (a tiny .npz data set and
# a folder shaped like one ``s4d-hf train`` wrote) and returns the ``s4d-hf`` arguments. The command must exit with
# ``code`` (2: a usage error), print exactly one line on stderr that contains every string in ``names`` (the flag or
# file), no traceback, and leave every file in the sandbox byte-identical, with nothing new left behind.


tree = file_tree  # conftest.py


@pytest.fixture(scope="module")
def cli_base(tmp_path_factory):
    """data.npz (20 series of 8 steps, 2 channels, 2 classes) and run/: a tiny classifier, its processor,
    training_args.json and all_results.json, as ``s4d-hf train`` leaves them."""
    root = tmp_path_factory.mktemp("cli")
    rng = np.random.default_rng(0)
    np.savez(root / "data.npz", X=rng.standard_normal((20, 8, 2)).astype(np.float32), y=np.arange(20) % 2)
    torch.manual_seed(0)
    S4DForSequenceClassification(S4DConfig(input_dim=2, num_labels=2, **TINY)).save_pretrained(root / "run")
    S4DTimeSeriesProcessor(feature_size=2).save_pretrained(root / "run")
    (root / "run" / "training_args.json").write_text(json.dumps(
        {"task": "time-series-classification", "dataset": "DATA", "command": "s4d-hf train ...", "seed": 0}))
    (root / "run" / "all_results.json").write_text(json.dumps({"train_runtime": 1.0, "global_step": 1}))
    return root


@pytest.fixture
def sandbox(cli_base, tmp_path):
    import shutil

    box = tmp_path / "box"
    shutil.copytree(cli_base, box)
    args = box / "run" / "training_args.json"
    args.write_text(args.read_text().replace("DATA", str(box / "data.npz")))
    return box


def s4d_hf(*args) -> int:
    """``s4d-hf ARGS`` in this process (a fresh accelerate state: it is a per-process singleton)."""
    from accelerate.state import AcceleratorState

    from s4d_hf_cli import main

    AcceleratorState._reset_state(reset_partial_state=True)
    try:
        return main([str(a) for a in args])
    except SystemExit as e:  # argparse refuses a flag value
        return e.code
    finally:
        AcceleratorState._reset_state(reset_partial_state=True)


def edit(path, text=None, cut=None, json_changes=None):
    """Overwrite a file with ``text``, cut it to its first ``cut`` bytes, or change keys of its JSON."""
    if text is not None:
        path.write_bytes(text if isinstance(text, bytes) else text.encode())
    elif cut is not None:
        path.write_bytes(path.read_bytes()[:cut])
    else:
        data = json.loads(path.read_text())
        for key, value in json_changes.items():
            if value is None:
                data.pop(key, None)
            else:
                data[key] = value
        path.write_text(json.dumps(data))
    return path


def train(*args, data="data.npz"):
    """``s4d-hf train`` of a tiny model on ``data``, with ``args`` appended (the case's bad part)."""
    def make(box):
        return ["train", "--task", "time-series-classification", "--dataset", box / data, "--output-dir",
                box / "out", "--max-steps", 1, "--no-progress", "--d-model", 8, "--n-layers", 1, "--d-state", 4,
                *[box / a[4:] if isinstance(a, str) and a.startswith("BOX/") else a for a in args]]
    return make


def with_files(make, **files):
    """``make`` after ``files`` (name -> a function of the file's path) edited the sandbox."""
    def run(box):
        for name, change in files.items():
            change(box / name.replace("__", "/").replace("_DOT_", "."))
        return make(box)
    return run


def command(*args):
    return lambda box: [box / a[4:] if isinstance(a, str) and a.startswith("BOX/") else a for a in args]


def truncated_safetensors(path):
    return edit(path, cut=path.stat().st_size - 64)


def second_run(change):
    """For :func:`with_files`: a copy of run/ at the given path, changed by ``change(folder)``."""
    def make(path):
        import shutil

        shutil.copytree(path.parent / "run", path)
        change(path)
    return make


F1 = "f1_state_dict.pt"  # a reference checkpoint in tests/fixtures


def convert(*args, src=None):
    def make(box):
        from conftest import FIXTURES

        source = FIXTURES / F1 if src is None else box / src
        return ["convert", source, box / "converted", *[box / a[4:] if str(a).startswith("BOX/") else a
                                                         for a in args]]
    return make


CLI_CASES = [
    # train: flag values (refused as they are parsed)
    ("train_batch_size_0", train("--batch-size", 0), 2, ["--batch-size", "integer >= 1"]),
    ("train_lr_negative", train("--lr", -1), 2, ["--lr", ">= 0"]),
    ("train_lr_nan", train("--lr", "nan"), 2, ["--lr", "finite"]),
    ("train_grad_accum_0", train("--grad-accum", 0), 2, ["--grad-accum"]),
    ("train_epochs_0", train("--epochs", 0), 2, ["--epochs", "> 0"]),
    ("train_max_steps_negative", train("--max-steps", -5), 2, ["--max-steps"]),
    ("train_eval_batch_size_0", train("--eval-batch-size", 0), 2, ["--eval-batch-size"]),
    ("train_d_model_0", train("--d-model", 0), 2, ["--d-model"]),
    ("train_dropout_above_1", train("--dropout", 1.5), 2, ["--dropout", "< 1"]),
    ("train_warmup_negative", train("--warmup", -0.1), 2, ["--warmup"]),
    ("train_seed_negative", train("--seed", -1), 2, ["--seed"]),
    ("train_image_size_0", train("--image-size", "0x28"), 2, ["--image-size", "HxW"]),
    ("train_mask_ratio_1", train("--spt-mask-ratio", 1), 2, ["--spt-mask-ratio"]),
    ("train_dataset_option_without_value", train("--dataset-option", "novalue"), 2, ["--dataset-option", "KEY=VALUE"]),
    # train: data files and model folders
    ("train_truncated_npz", with_files(train(), data_DOT_npz=lambda p: edit(p, cut=300)), 2, ["--dataset", "data.npz"]),
    ("train_npz_that_is_text", with_files(train(), data_DOT_npz=lambda p: edit(p, text="X,y\n1,2\n")), 2,
     ["--dataset", "data.npz", ".npz"]),
    ("train_missing_data_file", train(data="nothing.npz"), 2, ["--dataset", "nothing.npz", "no such file"]),
    ("train_csv_with_text_cells", with_files(train(data="bad.csv"), bad_DOT_csv=lambda p: edit(
        p, text="label,t0,t1\n0,1.0,abc\n1,2.0,3.0\n")), 2, ["--dataset", "bad.csv"]),
    ("train_csv_not_utf8", with_files(train(data="bad.csv"), bad_DOT_csv=lambda p: edit(p, text=b"\xff\xfe\x00\x81")),
     2, ["--dataset", "bad.csv", "UTF-8"]),
    ("train_model_folder_missing", train("--model", "BOX/nothing"), 2, ["--model", "nothing"]),
    ("train_model_config_string_for_int", with_files(train("--model", "BOX/run"), run__config_DOT_json=lambda p: edit(
        p, json_changes={"d_model": "8"})), 2, ["config.json", "d_model"]),
    ("train_model_truncated_weights", with_files(train("--model", "BOX/run"),
                                                 run__model_DOT_safetensors=truncated_safetensors), 2,
     ["model.safetensors"]),
    ("train_init_from_without_config", with_files(train("--init-from", "BOX/run"),
                                                  run__config_DOT_json=lambda p: p.unlink()), 2,
     ["config.json", "no such file"]),
    ("train_foreign_output_dir", with_files(train("--overwrite"), out__thesis_DOT_tex=lambda p: (
        p.parent.mkdir(), p.write_text("mine"))), 2, ["--output-dir", "out"]),
    # evaluate
    ("evaluate_max_samples_negative", command("evaluate", "BOX/run", "--max-samples", -1), 2, ["--max-samples"]),
    ("evaluate_max_samples_0", command("evaluate", "BOX/run", "--max-samples", 0), 2, ["--max-samples"]),
    ("evaluate_sampling_rate_0", command("evaluate", "BOX/run", "--sampling-rate", 0), 2, ["--sampling-rate"]),
    ("evaluate_missing_folder", command("evaluate", "BOX/nothing"), 2, ["nothing", "no such folder"]),
    ("evaluate_truncated_weights", with_files(command("evaluate", "BOX/run"),
                                              run__model_DOT_safetensors=truncated_safetensors), 2,
     ["model.safetensors", "not a complete safetensors file"]),
    ("evaluate_config_string_for_int", with_files(command("evaluate", "BOX/run"), run__config_DOT_json=lambda p: edit(
        p, json_changes={"n_layers": "1"})), 2, ["config.json", "n_layers"]),
    ("evaluate_config_not_json", with_files(command("evaluate", "BOX/run"), run__config_DOT_json=lambda p: edit(
        p, text="{broken")), 2, ["config.json", "not valid JSON"]),
    ("evaluate_training_args_not_json", with_files(command("evaluate", "BOX/run"),
                                                   run__training_args_DOT_json=lambda p: edit(p, text="[1, 2")), 2,
     ["training_args.json", "not valid JSON"]),
    ("evaluate_training_args_without_dataset", with_files(command("evaluate", "BOX/run"),
                                                          run__training_args_DOT_json=lambda p: edit(
                                                              p, json_changes={"dataset": None})), 2,
     ["training_args.json", "dataset"]),
    ("evaluate_training_args_a_list", with_files(command("evaluate", "BOX/run"),
                                                 run__training_args_DOT_json=lambda p: edit(p, text="[]")), 2,
     ["training_args.json", "JSON object"]),
    ("evaluate_no_training_args", with_files(command("evaluate", "BOX/run"),
                                             run__training_args_DOT_json=lambda p: p.unlink()), 2,
     ["training_args.json"]),
    ("evaluate_run_data_truncated", with_files(command("evaluate", "BOX/run"),
                                               data_DOT_npz=lambda p: edit(p, cut=200)), 2,
     ["training_args.json", "data.npz"]),
    ("evaluate_other_dataset_truncated", with_files(command("evaluate", "BOX/run", "--dataset", "BOX/other.npz"),
                                                    other_DOT_npz=lambda p: edit(p, text=b"PK\x03\x04 cut")), 2,
     ["--dataset", "other.npz"]),
    # release
    ("release_extra_rate_0", command("release", "BOX/run", "--extra", "rate:0"), 2, ["--extra", "rate:0"]),
    ("release_extra_unknown", command("release", "BOX/run", "--extra", "synthetic"), 2, ["--extra", "synthetic"]),
    ("release_extra_families_not_spoken_digits", command("release", "BOX/run", "--extra", "families"), 2,
     ["--extra families", "spoken-digits"]),
    ("release_methods_missing", command("release", "BOX/run", "--methods", "BOX/nothing.json"), 2,
     ["--methods", "nothing.json"]),
    ("release_methods_not_json", with_files(command("release", "BOX/run", "--methods", "BOX/m.json"),
                                            m_DOT_json=lambda p: edit(p, text="rows:")), 2, ["--methods", "m.json"]),
    ("release_methods_without_rows", with_files(command("release", "BOX/run", "--methods", "BOX/m.json"),
                                                m_DOT_json=lambda p: edit(p, text="{}")), 2, ["--methods", "rows"]),
    ("release_training_args_without_command", with_files(command("release", "BOX/run"),
                                                         run__training_args_DOT_json=lambda p: edit(
                                                             p, json_changes={"command": None})), 2,
     ["training_args.json", "command"]),
    ("release_no_all_results", with_files(command("release", "BOX/run"),
                                          run__all_results_DOT_json=lambda p: p.unlink()), 2, ["all_results.json"]),
    ("release_truncated_weights", with_files(command("release", "BOX/run", "--baseline-only"),
                                             run__model_DOT_safetensors=truncated_safetensors), 2,
     ["model.safetensors"]),
    # convert
    ("convert_missing_src", convert(src="nothing.pt"), 2, ["nothing.pt"]),
    ("convert_src_not_a_checkpoint", convert(src="data.npz"), 2, ["data.npz", "not a readable PyTorch checkpoint"]),
    ("convert_l_max_0", convert("--l-max", 0), 2, ["--l-max"]),
    ("convert_num_labels_0", convert("--num-labels", 0), 2, ["--num-labels"]),
    ("convert_tolerance_negative", convert("--tolerance", -1), 2, ["--tolerance"]),
    ("convert_tolerance_inf", convert("--tolerance", "inf"), 2, ["--tolerance"]),
    ("convert_missing_config", convert("--config", "BOX/nothing.yaml"), 2, ["--config", "nothing.yaml"]),
    ("convert_existing_out", with_files(convert(), converted__keep_DOT_txt=lambda p: (
        p.parent.mkdir(), p.write_text("mine"))), 2, ["converted", "--overwrite"]),
    # push (no token anywhere: see test_cli_bad_inputs)
    ("push_without_a_token", command("push", "BOX/run", "--repo-id", "me/s4d"), 2, ["token", "--token"]),
    ("push_bad_repo_id", command("push", "BOX/run", "--repo-id", "not a repo", "--token", "x"), 2,
     ["--repo-id", "not a repo"]),
    ("push_missing_folder", command("push", "BOX/nothing", "--repo-id", "me/s4d", "--token", "x"), 2,
     ["nothing", "no such folder"]),
    # a pickle file is left out with a notice (tests/test_publish_own_training.py), never the reason for a refusal
    ("push_pickle_in_folder", with_files(command("push", "BOX/run", "--repo-id", "me/s4d", "--token", "x"),
                                         run__pytorch_model_DOT_bin=lambda p: p.write_bytes(b"\x80\x04N.")), 2,
     ["README.md (the model card) missing"]),
    # remote-code (every folder is checked before any is changed)
    ("remote_code_missing_folder", command("remote-code", "BOX/nothing"), 2, ["nothing", "no such folder"]),
    ("remote_code_no_config", with_files(command("remote-code", "BOX/run"), run__config_DOT_json=lambda p: p.unlink()),
     2, ["run", "no config.json"]),
    ("remote_code_config_not_json", with_files(command("remote-code", "BOX/run"), run__config_DOT_json=lambda p: edit(
        p, text="{")), 2, ["config.json", "not valid JSON"]),
    ("remote_code_not_s4d", with_files(command("remote-code", "BOX/run"), run__config_DOT_json=lambda p: edit(
        p, json_changes={"model_type": "bert"})), 2, ["config.json", "bert"]),
    ("remote_code_bad_second_folder", with_files(command("remote-code", "BOX/run", "BOX/run2"), run2=second_run(
        lambda f: edit(f / "preprocessor_config.json", text="{oops"))), 2,
     ["run2", "preprocessor_config.json"]),
]


@pytest.mark.parametrize("make, code, names", rows(CLI_CASES), ids=ids(CLI_CASES))
def test_cli_bad_inputs(make, code, names, sandbox, capsys, monkeypatch):
    import huggingface_hub

    monkeypatch.delenv("HF_TOKEN", raising=False)
    monkeypatch.setattr(huggingface_hub, "get_token", lambda: None)  # no stored login either
    argv = make(sandbox)
    before = tree(sandbox)
    rc = s4d_hf(*argv)
    err = capsys.readouterr().err.strip()
    assert rc == code, err
    lines = err.splitlines()
    assert len(lines) == 1 and lines[0].startswith(f"s4d-hf {argv[0]}: error: ") and "Traceback" not in err, err
    for name in names:
        assert str(name) in lines[0], (name, lines[0])
    after = tree(sandbox)
    assert sorted(set(after) - set(before)) == [], "left behind"
    assert sorted(set(before) - set(after)) == [], "removed"
    assert [k for k in before if before[k] != after[k]] == [], "changed"


def test_cli_debug_flag_shows_the_traceback(sandbox):
    with pytest.raises(ValueError, match="no such folder"):
        s4d_hf("--debug", "evaluate", sandbox / "nothing")
