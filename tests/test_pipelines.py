"""Pipelines from saved folders: audio-classification (arrays, dicts at other rates, WAV/FLAC files),
image-classification (PIL images and files), time-series-classification (classification and regression, saved
pipeline, remote code) and text-generation (ByT5 bytes through the recurrent cache).

The truth each pipeline is held to is the direct model call on independently prepared inputs."""

import json
import os
import pathlib
import re
import subprocess
import sys
import textwrap

import numpy as np
import pandas as pd
import pytest
import soundfile
import torch
from PIL import Image
from scipy.signal import resample_poly
from transformers import AudioClassificationPipeline, Wav2Vec2FeatureExtractor, pipeline

from bare_env import BareEnvUnavailable, run_bare

from s4d_hf import (
    S4DAudioClassificationPipeline,
    S4DConfig,
    S4DFeatureExtractor,
    S4DForCausalLM,
    S4DForSequenceClassification,
    S4DImageProcessor,
    S4DTimeSeriesProcessor,
    byte_tokenizer,
)

LABELS = {0: "yes", 1: "no", 2: "up", 3: "down"}


def classifier(input_dim: int, num_labels: int = 4, **kwargs) -> S4DForSequenceClassification:
    """A tiny random classifier with logits far enough apart that the label order means something."""
    config = S4DConfig(input_dim=input_dim, d_model=16, n_layers=2, d_state=8, num_labels=num_labels,
                       id2label={i: LABELS.get(i, f"label_{i}") for i in range(num_labels)}, **kwargs)
    model = S4DForSequenceClassification(config).eval()
    with torch.no_grad():
        model.classifier.weight.mul_(20.0)
    return model


def normalized(x: np.ndarray) -> np.ndarray:
    return (x - x.mean(0)) / np.sqrt(x.var(0) + 1e-7)


def probabilities(model, **inputs) -> dict[str, float]:
    with torch.no_grad():
        p = model(**inputs).logits[0].softmax(-1)
    return {model.config.id2label[i]: v for i, v in enumerate(p.tolist())}


def as_dict(result: list[dict]) -> dict[str, float]:
    return {r["label"]: r["score"] for r in result}


@pytest.fixture(scope="module")
def audio_folder(tmp_path_factory):
    folder = tmp_path_factory.mktemp("audio")
    torch.manual_seed(0)
    classifier(1).save_pretrained(folder)
    S4DFeatureExtractor(sampling_rate=16000).save_pretrained(folder)
    return folder


def audio_pipeline(folder, **kwargs):
    """The S4D audio pipeline, named explicitly (a folder that carries it needs trust_remote_code=True otherwise)."""
    return pipeline("audio-classification", model=str(folder), pipeline_class=S4DAudioClassificationPipeline, **kwargs)


# -- audio ---------------------------------------------------------------------------------------------------------


def test_audio_scores_equal_the_model_on_the_extractor_output(audio_folder):
    pipe = audio_pipeline(audio_folder)
    model = pipe.model
    x = np.random.default_rng(0).normal(size=400).astype(np.float32)
    result = pipe(x, top_k=None)
    assert [r["label"] for r in result] == sorted(LABELS.values(), key=lambda k: -as_dict(result)[k])
    assert sum(r["score"] for r in result) == pytest.approx(1.0, abs=1e-6)
    expected = probabilities(model, input_values=torch.from_numpy(normalized(x))[None].float())
    for label, score in as_dict(result).items():
        assert score == pytest.approx(expected[label], abs=1e-6)
    assert len(pipe(x)) == 4 and len(pipe(x, top_k=2)) == 2  # default top_k 5, capped at num_labels


def test_audio_at_8khz_under_the_rate_policy_is_the_model_with_rate_2(audio_folder):
    pipe = audio_pipeline(audio_folder)
    x = np.random.default_rng(1).normal(size=300).astype(np.float32)
    at_8k = as_dict(pipe({"raw": x, "sampling_rate": 8000}, top_k=None))
    values = torch.from_numpy(normalized(x))[None].float()
    rate_2 = probabilities(pipe.model, input_values=values, rate=2.0)
    rate_1 = probabilities(pipe.model, input_values=values)
    for label in LABELS.values():
        assert at_8k[label] == pytest.approx(rate_2[label], abs=1e-6)
    assert max(abs(at_8k[k] - rate_1[k]) for k in rate_1) > 1e-4  # the rate really changes the answer
    assert as_dict(pipe({"array": torch.from_numpy(x), "sampling_rate": 8000}, top_k=None)) == at_8k


def test_audio_under_the_resample_policy_is_the_model_on_the_resampled_signal(audio_folder):
    pipe = audio_pipeline(audio_folder, feature_extractor=S4DFeatureExtractor(sampling_rate=16000,
                                                                               rate_policy="resample"))
    x = np.random.default_rng(2).normal(size=300).astype(np.float32)
    result = as_dict(pipe({"raw": x, "sampling_rate": 8000}, top_k=None))
    resampled = normalized(resample_poly(x.astype(np.float64), 2, 1))
    expected = probabilities(pipe.model, input_values=torch.from_numpy(resampled)[None].float())
    for label in LABELS.values():
        assert result[label] == pytest.approx(expected[label], abs=1e-5)


@pytest.mark.parametrize("suffix,subtype", [(".wav", "PCM_16"), (".flac", "PCM_16"), (".wav", "FLOAT")])
def test_audio_files_are_decoded_with_soundfile_at_their_own_rate(audio_folder, tmp_path, suffix, subtype):
    pipe = audio_pipeline(audio_folder)
    x = (np.random.default_rng(3).uniform(-0.5, 0.5, size=(240, 2))).astype(np.float32)  # stereo
    path = tmp_path / f"clip{suffix}"
    soundfile.write(path, x, 8000, subtype=subtype)
    decoded, rate = soundfile.read(path, dtype="float32")
    assert rate == 8000
    expected = as_dict(pipe({"raw": decoded, "sampling_rate": 8000}, top_k=None))
    mono = torch.from_numpy(normalized(decoded.mean(1)))[None].float()
    direct = probabilities(pipe.model, input_values=mono, rate=2.0)
    for source in (str(path), path.read_bytes()):
        result = as_dict(pipe(source, top_k=None))
        for label in LABELS.values():
            assert result[label] == pytest.approx(expected[label], abs=1e-7)
            assert result[label] == pytest.approx(direct[label], abs=1e-5)


@pytest.mark.parametrize("inputs,error,words", [
    ({"raw": np.ones(10)}, ValueError, ["'raw'", "'sampling_rate'"]),
    ({"sampling_rate": 16000}, ValueError, ["'raw'", "'sampling_rate'"]),
    ({"raw": np.ones(10), "sampling_rate": 0}, ValueError, ["sampling_rate"]),
    ({"raw": np.ones(10), "sampling_rate": None}, None, []),  # None = the model's rate, as for arrays
    (np.zeros(0, np.float32), ValueError, ["raw_audio", "empty"]),
    (np.array([0.0, np.nan], np.float32), ValueError, ["raw_audio", "NaN"]),
    (np.zeros((10, 3), np.float32), ValueError, ["raw_audio", "3 channels"]),
    (b"not audio at all", ValueError, ["inputs", "soundfile"]),
    ("missing-file.wav", ValueError, ["missing-file.wav", "soundfile"]),
    (12, TypeError, ["inputs", "int"]),
])
def test_audio_pipeline_bad_input_names_the_argument(audio_folder, inputs, error, words):
    pipe = audio_pipeline(audio_folder)
    if error is None:
        assert len(pipe(inputs)) == 4
        return
    with pytest.raises(error) as info:
        pipe(inputs)
    for word in words:
        assert word in str(info.value), (word, str(info.value))


def test_audio_pipeline_is_transformers_own_for_other_feature_extractors(audio_folder):
    extractor = Wav2Vec2FeatureExtractor(sampling_rate=16000, do_normalize=True, return_attention_mask=True)
    pipe = audio_pipeline(audio_folder, feature_extractor=extractor)
    x = np.random.default_rng(4).normal(size=200).astype(np.float32)
    reference = AudioClassificationPipeline(model=pipe.model, feature_extractor=extractor)
    assert pipe(x, top_k=None) == reference(x, top_k=None)
    with pytest.raises(ImportError, match="torchaudio"):  # the built-in behaviour, untouched
        pipe({"raw": x, "sampling_rate": 8000})


def test_a_folder_without_custom_pipelines_gets_transformers_own_audio_pipeline(audio_folder):
    pipe = pipeline("audio-classification", model=str(audio_folder))  # importing s4d_hf replaced nothing
    assert type(pipe) is AudioClassificationPipeline
    x = np.random.default_rng(8).normal(size=300).astype(np.float32)  # at the extractor's rate: same scores
    assert as_dict(pipe(x, top_k=None)) == pytest.approx(as_dict(audio_pipeline(audio_folder)(x, top_k=None)), abs=1e-7)


# -- images --------------------------------------------------------------------------------------------------------


def test_image_pipeline_on_pil_images_and_files_equals_the_model(tmp_path):
    torch.manual_seed(1)
    model = classifier(3, num_labels=3)
    model.save_pretrained(tmp_path / "model")
    S4DImageProcessor(size={"height": 8, "width": 8}).save_pretrained(tmp_path / "model")
    pipe = pipeline("image-classification", model=str(tmp_path / "model"))
    pixels = np.random.default_rng(5).integers(0, 256, size=(8, 8, 3), dtype=np.uint8)
    image = Image.fromarray(pixels)
    image.save(tmp_path / "image.png")

    sequence = torch.from_numpy((pixels.reshape(64, 3) / 255.0 - 0.5) / 0.5).float()[None]  # raster order
    expected = probabilities(pipe.model, pixel_values=sequence)
    for source in (image, str(tmp_path / "image.png")):
        result = pipe(source, top_k=None)
        assert {r["label"] for r in result} == {"yes", "no", "up"}
        assert sum(r["score"] for r in result) == pytest.approx(1.0, abs=1e-6)
        for label, score in as_dict(result).items():
            assert score == pytest.approx(expected[label], abs=1e-6)
    channels_first = probabilities(pipe.model, pixel_values=sequence.transpose(1, 2).reshape(1, 3, 8, 8))
    assert channels_first == pytest.approx(expected, abs=1e-6)  # the model's own (B, C, H, W) flattening agrees


# -- time series ---------------------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def ts_folder(tmp_path_factory):
    folder = tmp_path_factory.mktemp("ts")
    torch.manual_seed(2)
    classifier(3, num_labels=2).save_pretrained(folder)
    train = [np.random.default_rng(i).normal(size=(40, 3)) * [1, 3, 5] for i in range(3)]
    S4DTimeSeriesProcessor(feature_size=3).fit(train).save_pretrained(folder)
    return folder


def test_timeseries_pipeline_equals_the_model_on_the_processor_output(ts_folder):
    pipe = pipeline("time-series-classification", model=str(ts_folder))
    x = np.random.default_rng(6).normal(size=(50, 3))
    processor = S4DTimeSeriesProcessor.from_pretrained(ts_folder)
    expected = probabilities(pipe.model, **processor(x, return_tensors="pt"))
    frame = pd.DataFrame(x, columns=["a", "b", "c"])
    for form in (x, frame, torch.from_numpy(x)):
        result = pipe(form)
        assert [r["label"] for r in result] == sorted(expected, key=lambda k: -expected[k])
        for label, score in as_dict(result).items():
            assert score == pytest.approx(expected[label], abs=1e-6)
    assert len(pipe(x, top_k=1)) == 1
    several = pipe([x, x[:20]])  # a list of series: one result each
    assert len(several) == 2 and as_dict(several[0]) == pytest.approx(expected, abs=1e-6)


def test_timeseries_pipeline_serves_regression_models(tmp_path):
    torch.manual_seed(3)
    model = S4DForSequenceClassification(S4DConfig(input_dim=1, d_model=16, n_layers=1, d_state=8, num_labels=2,
                                                   problem_type="regression",
                                                   id2label={0: "low", 1: "high"})).eval()
    model.save_pretrained(tmp_path)
    S4DTimeSeriesProcessor(feature_size=1, mean=[2.0], std=[4.0]).save_pretrained(tmp_path)
    pipe = pipeline("time-series-classification", model=str(tmp_path))
    series = [0.5, 1.5, 3.0, 2.0, -1.0]  # a list of numbers is one univariate series
    with torch.no_grad():
        logits = model(input_values=(torch.tensor(series) - 2.0)[None, :, None] / 4.0).logits[0]
    result = pipe(series)
    assert [r["label"] for r in result] == ["low", "high"]  # label order, not sorted
    assert [r["value"] for r in result] == pytest.approx(logits.tolist(), abs=1e-6)

    one = S4DForSequenceClassification(S4DConfig(input_dim=1, d_model=16, n_layers=1, d_state=8, num_labels=1))
    one.eval().save_pretrained(tmp_path / "one")  # num_labels 1 without problem_type: regression, as the loss
    S4DTimeSeriesProcessor().save_pretrained(tmp_path / "one")
    value = pipeline("time-series-classification", model=str(tmp_path / "one"))(series)
    with torch.no_grad():
        assert value[0]["value"] == pytest.approx(one(input_values=torch.tensor([series])).logits.item(), abs=1e-6)


def test_timeseries_pipeline_bad_input(ts_folder):
    pipe = pipeline("time-series-classification", model=str(ts_folder))
    with pytest.raises(ValueError, match="sequences has 2 channel"):
        pipe(np.ones((10, 2)))
    with pytest.raises(ValueError, match="NaN"):
        pipe(np.full((10, 3), np.nan))
    with pytest.raises(ValueError, match="function_to_apply"):
        pipe(np.ones((10, 3)), function_to_apply="relu")


REMOTE_SCRIPT = textwrap.dedent("""
    import json, sys
    import numpy as np
    from PIL import Image
    from transformers import AutoFeatureExtractor, AutoImageProcessor, pipeline
    root = sys.argv[1]
    pipe = pipeline(model=root + "/ts_pipe", trust_remote_code=True)   # task from config.custom_pipelines
    x = np.load(root + "/x.npy")
    out = {"ts": pipe(x, top_k=None),
           "classes": [type(pipe).__module__, type(pipe.feature_extractor).__module__, type(pipe.model).__module__]}
    audio = AutoFeatureExtractor.from_pretrained(root + "/audio", trust_remote_code=True)
    image = AutoImageProcessor.from_pretrained(root + "/image", trust_remote_code=True)
    out["classes"] += [type(audio).__module__, type(image).__module__]
    out["audio"] = audio(x[:, 0], sampling_rate=8000)["rate"]
    out["image"] = image(Image.new("RGB", (3, 3)))["pixel_values"].shape
    out["s4d_hf_imported"] = "s4d_hf" in sys.modules
    json.dump(out, open(root + "/out.json", "w"))
""")


def test_saved_timeseries_pipeline_and_processors_load_as_remote_code(ts_folder, tmp_path):
    pipe = pipeline("time-series-classification", model=str(ts_folder))
    pipe.save_pretrained(tmp_path / "ts_pipe")
    config = json.loads((tmp_path / "ts_pipe" / "config.json").read_text())
    assert config["custom_pipelines"]["time-series-classification"]["impl"] == "pipelines.TimeSeriesClassificationPipeline"
    assert {"pipelines.py", "timeseries_processing_s4d.py", "modeling_s4d.py"} <= set(os.listdir(tmp_path / "ts_pipe"))
    S4DFeatureExtractor().save_pretrained(tmp_path / "audio")
    S4DImageProcessor(size={"height": 4, "width": 4}).save_pretrained(tmp_path / "image")
    x = np.random.default_rng(7).normal(size=(30, 3))
    np.save(tmp_path / "x.npy", x)

    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
    env.update(HF_HUB_OFFLINE="1", HF_MODULES_CACHE=str(tmp_path / "modules"))
    (tmp_path / "load.py").write_text(REMOTE_SCRIPT)
    result = subprocess.run([sys.executable, str(tmp_path / "load.py"), str(tmp_path)], cwd=tmp_path, env=env,
                            capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr[-3000:]
    out = json.loads((tmp_path / "out.json").read_text())
    assert all(module.startswith("transformers_modules") for module in out["classes"]), out["classes"]
    assert not out["s4d_hf_imported"]
    assert out["audio"] == 2.0 and out["image"] == [1, 16, 3]
    assert as_dict(out["ts"]) == pytest.approx(as_dict(pipe(x, top_k=None)), abs=1e-6)


# -- text ----------------------------------------------------------------------------------------------------------


def test_text_generation_from_a_saved_byte_level_lm_equals_generate(tmp_path):
    torch.manual_seed(4)
    model = S4DForCausalLM(S4DConfig(vocab_size=259, d_model=16, n_layers=2, d_state=8, pad_token_id=0,
                                     eos_token_id=1)).eval()
    model.save_pretrained(tmp_path)
    byte_tokenizer().save_pretrained(tmp_path)
    pipe = pipeline("text-generation", model=str(tmp_path))
    prompt = "To be, or not"
    ids = torch.tensor([[b + 3 for b in prompt.encode()]])
    with torch.no_grad():
        reference = model.generate(ids, attention_mask=torch.ones_like(ids), max_new_tokens=8, do_sample=False)
    out = pipe(prompt, max_new_tokens=8, do_sample=False, return_tensors=True)
    assert out[0]["generated_token_ids"] == reference[0].tolist()  # the prompt gets no </s> appended
    text = pipe(prompt, max_new_tokens=8, do_sample=False)[0]["generated_text"]
    assert text.startswith(prompt)
    assert text == pipe.tokenizer.decode(reference[0], skip_special_tokens=True)


def test_readme_pipelines_with_s4d_hf_and_without_it_give_the_same_outputs(tmp_path, monkeypatch, capsys):
    """The README's two pipeline blocks: the first here (s4d-hf installed), the second in a bare virtualenv without
    s4d-hf on the folders the first one wrote; the inputs both print for give the same outputs."""
    readme = (pathlib.Path(__file__).resolve().parent.parent / "README.md").read_text()
    section = re.search(r"## Inference with pipelines\n(.*?)\n## ", readme, re.S).group(1)
    installed, hub = re.findall(r"```python\n(.*?)```", section, re.S)[:2]
    monkeypatch.chdir(tmp_path)
    namespace: dict = {}
    exec(compile(installed, "README pipelines (installed)", "exec"), namespace)
    first = capsys.readouterr().out.splitlines()
    assert {r["label"] for r in namespace["audio"]("clip.wav")} == {"yes", "no"}
    assert type(namespace["image"]).__module__.startswith("transformers.pipelines")  # the stock pipelines
    assert type(namespace["text"]).__module__.startswith("transformers.pipelines")

    try:
        result = run_bare(hub, cwd=tmp_path)
    except BareEnvUnavailable as reason:
        pytest.skip(f"no bare virtualenv: {reason}")
    assert result.returncode == 0, result.stderr[-3000:]
    second = result.stdout.splitlines()
    assert second[0] == first[0]  # audio("clip.wav")
    assert second[2] == first[1]  # the image
    assert second[4] == first[3]  # the text
    assert "'score'" in second[1] and "'score'" in second[3]
