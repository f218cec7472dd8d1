"""Spoken digits: ``spoken-digits`` synthesised offline with espeak-ng and flite (split by speaker, augmented, cached),
and ``spoken-digits-real``, one real speaker's recorded digits from Debian's ``asterisk-core-sounds-en-wav``, for
sim-to-real testing."""

from __future__ import annotations

import hashlib
import json
import math
import os
import shutil
import subprocess
from concurrent.futures import ThreadPoolExecutor

import numpy as np

from s4d_hf.processing.feature_extraction_s4d import resample
from s4d_hf.staging import staged_file

from ..audio import read_audio, read_wav_bytes
from ..core import SPLIT_NAMES, DatasetSplits
from .common import DatasetNotInstalledError, as_bool, as_dir, as_float, as_int, cache_dir

SPOKEN_DIGITS_DESCRIPTION = (
    "Spoken digits zero..nine synthesised offline with espeak-ng (GPL-3+) and flite (CMU BSD-style), "
    "1 s windows at 8 kHz by default, gain/shift/noise augmentation, train/eval/test split by "
    "speaker (no speaker in two splits); synthetic speech, generated and cached locally.")
SPOKEN_DIGITS_REAL_DESCRIPTION = (
    "Test-only sim-to-real set: digits 0..9 recorded by one real speaker (Allison Smith, "
    "8 kHz telephone prompts) from Debian's asterisk-core-sounds-en-wav, CC-BY-SA-3.0.")

DIGIT_WORDS = ("zero", "one", "two", "three", "four", "five", "six", "seven", "eight", "nine")


# espeak-ng 1.51 English accents (the mbrola voices are not in Debian main and do not work).
ESPEAK_ACCENTS = ("en-us", "en-gb", "en-gb-scotland", "en-gb-x-gbclan", "en-gb-x-rp", "en-gb-x-gbcwmd", "en-029",
                  "en-us-nyc")


# espeak-ng 1.51 voice variants (`espeak-ng --voices=variant`, file names). A variant sets pitch, formants and
# voicing, i.e. who speaks; the accent sets the pronunciation rules, which real speakers share too. So a *speaker*
# is a variant ("" = the default voice), and accents are drawn per clip.
ESPEAK_VARIANTS = (
    "", "adam", "Alex", "Alicia", "Andrea", "Andy", "Annie", "antonio", "aunty", "belinda", "benjamin", "boris",
    "caleb", "david", "Demonic", "Denis", "Diogo", "ed", "edward", "edward2", "Gene", "Gene2", "gustave",
    "announcer", "Henrique", "Hugo", "iven", "iven2", "iven3", "iven4", "Jacky", "john", "kaukovalta", "Lee",
    "linda", "marcelo", "Marco", "Mario", "max", "Michael", "michel", "miguel", "Mike", "Mr", "Nguyen", "pablo",
    "paul", "pedro", "quincy", "RicishayMax", "RicishayMax2", "RicishayMax3", "rob", "robert", "robosoft",
    "robosoft2", "robosoft3", "robosoft4", "robosoft5", "robosoft6", "robosoft7", "robosoft8", "steph", "steph2",
    "steph3", "Storm", "Tweaky", "UniRobot", "zac", "anika", "anikaRobot", "AnxiousAndy", "fast", "f2", "f3", "f4",
    "f5", "whisperf", "grandpa", "klatt", "klatt2", "klatt3", "klatt4", "klatt5", "klatt6", "m2", "m3", "m4", "m5",
    "m6", "m7", "norbert", "sandro", "shelby", "travis", "victor", "whisper", "m8", "f1", "croak", "m1", "grandma",
)


# flite 2.2 voices grouped by speaker (kal and kal16 are the same diphone voice at 8 and 16 kHz), with the range of
# the mean F0 target (Hz) drawn per clip.
FLITE_SPEAKERS = {"kal": (("kal", "kal16"), (85, 140)), "awb": (("awb",), (85, 140)),
                  "rms": (("rms",), (80, 130)), "slt": (("slt",), (150, 230))}


SPEAKERS = tuple(f"espeak-ng:{v or 'default'}" for v in ESPEAK_VARIANTS) + tuple(f"flite:{s}" for s in FLITE_SPEAKERS)


ALLISON_DIGITS_DIR = "/usr/share/asterisk/sounds/en/digits"


SPOKEN_DIGITS_VERSION = 1  # bump when synthesis or trimming changes, so old caches are not reused


def split_speakers(speakers, seed: int, eval_fraction: float = 0.1, test_fraction: float = 0.1) -> dict[str, list]:
    """Assign every speaker to exactly one split, per engine (the text before ':'), seeded.

    Each engine with >= 3 speakers gives max(1, round(fraction * n)) speakers to eval and to test and the rest to
    train, so both synthesisers appear in every split (flite's 4 speakers: 2 / 1 / 1).
    """
    by_engine: dict[str, list] = {}
    for speaker in speakers:
        by_engine.setdefault(speaker.split(":")[0], []).append(speaker)
    result = {split: [] for split in SPLIT_NAMES}
    rng = np.random.default_rng([seed, 7])
    for engine in sorted(by_engine):
        group = [by_engine[engine][i] for i in rng.permutation(len(by_engine[engine]))]
        n_eval = max(1, round(eval_fraction * len(group))) if len(group) >= 3 else 0
        n_test = max(1, round(test_fraction * len(group))) if len(group) >= 3 else 0
        result["eval"] += group[:n_eval]
        result["test"] += group[n_eval:n_eval + n_test]
        result["train"] += group[n_eval + n_test:]
    return {split: sorted(members) for split, members in result.items()}


def spoken_digit_specs(seed: int, counts: dict[str, int], flite_fraction: float = 0.25) -> dict[str, list[dict]]:
    """Synthesis and augmentation parameters of every clip, per split: {split: [spec, ...]}.

    counts: clips per digit per split. Each clip's parameters come from its own generator seeded with
    (seed, split, digit, index), so a clip does not change when other counts change. A spec holds the word, label,
    speaker, the synthesiser command's parameters ("synth") and the augmentation parameters ("augment").
    Speakers are drawn only from the split's own speakers (see `split_speakers`).
    """
    speakers = split_speakers(SPEAKERS, seed)
    specs = {}
    for split_code, split in enumerate(SPLIT_NAMES):
        espeak = [s for s in speakers[split] if s.startswith("espeak-ng:")]
        flite = [s for s in speakers[split] if s.startswith("flite:")]
        specs[split] = []
        for label, word in enumerate(DIGIT_WORDS):
            for index in range(counts[split]):
                rng = np.random.default_rng([seed, split_code, label, index])
                if flite and (not espeak or rng.random() < flite_fraction):
                    speaker = flite[rng.integers(len(flite))]
                    voices, (f0_low, f0_high) = FLITE_SPEAKERS[speaker.split(":")[1]]
                    synth = {"engine": "flite", "voice": voices[rng.integers(len(voices))],
                             "duration_stretch": round(float(rng.uniform(0.8, 1.3)), 3),
                             "f0": int(rng.integers(f0_low, f0_high + 1))}
                else:
                    speaker = espeak[rng.integers(len(espeak))]
                    variant = speaker.split(":")[1]
                    accent = ESPEAK_ACCENTS[rng.integers(len(ESPEAK_ACCENTS))]
                    synth = {"engine": "espeak-ng", "voice": accent + ("" if variant == "default" else "+" + variant),
                             "speed": int(rng.integers(110, 231)), "pitch": int(rng.integers(15, 91))}
                augment = {"peak": float(10 ** rng.uniform(-1.0, math.log10(0.9))),   # log-uniform 0.1..0.9
                           "position": float(rng.random()),                          # where in the window
                           "noise": ("white", "brown")[rng.integers(2)],
                           "snr_db": float(rng.uniform(5.0, 40.0)),
                           "noise_seed": int(rng.integers(2**31))}
                specs[split].append({"word": word, "labels": label, "speaker": speaker, "synth": synth,
                                     "augment": augment})
    return specs


def _resample(x: np.ndarray, rate: int, target: int) -> np.ndarray:
    """The processor's polyphase resampling (it also low-passes to the new Nyquist band); a no-op at equal rates."""
    return x if rate == target else resample(x, rate, target)


def trim_silence(x: np.ndarray, sampling_rate: int, threshold_db: float = -40.0) -> np.ndarray:
    """Drop leading/trailing 10 ms frames whose energy is below threshold_db relative to the loudest frame."""
    frame = max(1, sampling_rate // 100)
    n = len(x) // frame * frame
    if n == 0:
        return x[:0]
    energy = (x[:n].reshape(-1, frame) ** 2).mean(1)
    loud = np.flatnonzero(energy > energy.max() * 10 ** (threshold_db / 10))
    if energy.max() == 0 or len(loud) == 0:
        return x[:0]
    return x[loud[0] * frame:(loud[-1] + 1) * frame]


def _synthesis_command(synth: dict, word: str, tempo: float) -> list[str]:
    if synth["engine"] == "espeak-ng":
        return ["espeak-ng", "-v", synth["voice"], "-s", str(round(synth["speed"] * tempo)), "-p",
                str(synth["pitch"]), "--stdout", word]
    return ["flite", "-voice", synth["voice"], "--setf", f"duration_stretch={synth['duration_stretch'] / tempo:.3f}",
            "--setf", f"int_f0_target_mean={synth['f0']}", "-t", word, "-o", "/dev/stdout"]


def synthesize(spec: dict, sampling_rate: int, window: int) -> np.ndarray:
    """One clean utterance: synthesise, resample to sampling_rate, trim silence -> (n,) int16 with n <= window.

    An utterance longer than the window is synthesised again 25% faster (up to 3 times), then centre-cropped.
    """
    for attempt in range(4):
        command = _synthesis_command(spec["synth"], spec["word"], 1.25 ** attempt)
        try:
            wav = subprocess.run(command, capture_output=True, check=True, timeout=60).stdout
            rate, x = read_wav_bytes(wav, " ".join(command))
        except (subprocess.CalledProcessError, subprocess.TimeoutExpired, ValueError) as error:
            raise RuntimeError(f"synthesis failed: {' '.join(command)}: {error}") from None
        x = trim_silence(_resample(x, rate, sampling_rate), sampling_rate)
        if len(x) == 0:
            raise RuntimeError(f"synthesis produced silence: {' '.join(command)}")
        if len(x) <= window:
            break
    start = max(0, (len(x) - window) // 2)
    return np.round(np.clip(x[start:start + window], -1, 32767 / 32768) * 32768).astype(np.int16)


def augment_clip(utterance: np.ndarray, augment: dict | None, window: int) -> np.ndarray:
    """Place an int16 utterance in a `window`-sample float32 frame; with `augment`, apply gain, shift and noise.

    augment: {"peak": peak amplitude, "position": 0..1 offset inside the free room of the window, "noise": "white"
    or "brown", "snr_db": signal-to-noise ratio over the utterance's samples, "noise_seed"}. None centres the
    utterance unchanged (used for the real recordings).
    """
    x = utterance.astype(np.float32) / 32768.0
    out = np.zeros(window, np.float32)
    if augment is None:
        start = (window - len(x)) // 2
        out[start:start + len(x)] = x
        return out
    x = x * (augment["peak"] / max(float(np.abs(x).max()), 1e-6))
    start = int(augment["position"] * (window - len(x)))
    out[start:start + len(x)] = x
    rng = np.random.default_rng(augment["noise_seed"])
    noise = rng.standard_normal(window)
    if augment["noise"] == "brown":
        noise = np.cumsum(noise)
        noise -= np.linspace(noise[0], noise[-1], window)  # remove the random-walk drift
    noise /= max(float(np.sqrt((noise ** 2).mean())), 1e-12)
    signal_power = float((x ** 2).mean())
    out += (noise * math.sqrt(signal_power / 10 ** (augment["snr_db"] / 10))).astype(np.float32)
    return np.clip(out, -1.0, 1.0)


def _tool_versions() -> str:
    versions = []
    for command in (["espeak-ng", "--version"], ["flite", "--version"]):
        if shutil.which(command[0]) is None:
            raise DatasetNotInstalledError(
                f"spoken-digits needs the {command[0]} program. Install it with: apt-get install espeak-ng flite "
                "(Debian/Ubuntu main)")
        versions.append(subprocess.run(command, capture_output=True, text=True).stdout.strip())
    return "\n".join(versions)


def _synthesize_split(specs: list[dict], sampling_rate: int, window: int, num_workers: int,
                      split: str) -> list[np.ndarray]:
    """Clean utterances of one split, from the cache when its key matches, else synthesised and cached."""
    key = hashlib.sha256(json.dumps(
        {"version": SPOKEN_DIGITS_VERSION, "tools": _tool_versions(), "sampling_rate": sampling_rate,
         "window": window, "clips": [(s["word"], s["synth"]) for s in specs]}, sort_keys=True).encode()).hexdigest()
    path = cache_dir() / "spoken_digits" / f"{split}-{sampling_rate}hz-{len(specs)}-{key[:16]}.npz"
    if path.is_file():
        with np.load(path, allow_pickle=False) as cached:
            audio, offsets = cached["audio"], cached["offsets"]
        return [audio[offsets[i]:offsets[i + 1]] for i in range(len(offsets) - 1)]
    # Each clip is its own synthesiser process, so threads give the parallelism without forking a training process
    # that may already run torch's thread pool.
    with ThreadPoolExecutor(max_workers=num_workers) as pool:
        clips = list(pool.map(lambda spec: synthesize(spec, sampling_rate, window), specs))
    path.parent.mkdir(parents=True, exist_ok=True)
    offsets = np.cumsum([0] + [len(c) for c in clips]).astype(np.int64)
    # Write to a temporary file and rename, so an interrupted run (or a second rank racing this one) never leaves a
    # half-written cache behind.
    with staged_file(path) as tmp, open(tmp, "wb") as f:
        np.savez(f, audio=np.concatenate(clips) if clips else np.zeros(0, np.int16), offsets=offsets)
    return clips


def load_spoken_digits(seed: int = 0, *, sampling_rate=8000, n_per_class=300, n_eval_per_class=None,
                       n_test_per_class=None, window_seconds=1.0, augment=True, flite_fraction=0.25,
                       num_workers=None) -> DatasetSplits:
    """Synthetic spoken digits "zero".."nine": (sampling_rate * window_seconds, 1) float32 waveforms, 10 classes.

    Speakers (espeak-ng voice variants and flite voices, see `SPEAKERS`) are split by `split_speakers`, so no
    speaker appears in two splits; accent, speed and pitch are drawn per clip. Augmentation: peak level, position in
    the window, white or brown noise at 5..40 dB SNR. n_per_class train clips per digit; eval and test get
    n_eval_per_class / n_test_per_class (default n_per_class // 5). Clean utterances are cached as .npz under
    `cache_dir()`; augmentation is re-applied on load (cheap and seeded per clip).
    """
    sampling_rate = as_int("sampling_rate", sampling_rate, 1000)
    n_train = as_int("n_per_class", n_per_class, 1)
    n_eval = as_int("n_eval_per_class", n_train // 5 if n_eval_per_class is None else n_eval_per_class, 0)
    n_test = as_int("n_test_per_class", n_train // 5 if n_test_per_class is None else n_test_per_class, 0)
    window = round(sampling_rate * as_float("window_seconds", window_seconds, 0.5, 10.0))
    augment = as_bool("augment", augment)
    flite_fraction = as_float("flite_fraction", flite_fraction, 0.0, 1.0)
    num_workers = as_int("num_workers", min(2, os.cpu_count() or 1) if num_workers is None else num_workers, 1)
    specs = spoken_digit_specs(seed, {"train": n_train, "eval": n_eval, "test": n_test}, flite_fraction)
    splits = {}
    for split in SPLIT_NAMES:
        clips = _synthesize_split(specs[split], sampling_rate, window, num_workers, split)
        splits[split] = [{"input_values": augment_clip(clip, spec["augment"] if augment else None, window)[:, None],
                          "labels": spec["labels"]} for clip, spec in zip(clips, specs[split])]
    speakers = split_speakers(SPEAKERS, seed)
    return DatasetSplits(
        **splits, id2label=dict(enumerate(DIGIT_WORDS)), input_dim=1, sampling_rate=sampling_rate,
        description=SPOKEN_DIGITS_DESCRIPTION + " Speakers per split (train/eval/test): "
        + "/".join(str(len(speakers[s])) for s in SPLIT_NAMES) + f"; seed {seed}.",
        license="generated with espeak-ng (GPL-3.0-or-later) and flite (BSD-style CMU licence); the generated clips "
                "carry no third-party content",
        citation="eSpeak NG, https://github.com/espeak-ng/espeak-ng; Black, A. W. and Lenzo, K. A. Flite: a small "
                 "fast run-time synthesis engine. ISCA Speech Synthesis Workshop, 2001.")


def load_spoken_digits_real(seed: int = 0, *, data_dir=ALLISON_DIGITS_DIR, sampling_rate=8000,
                            window_seconds=1.0) -> DatasetSplits:
    """Allison Smith's recorded digits 0..9 (Asterisk IVR prompts, 8 kHz, one real speaker): a test-only set.

    For sim-to-real evaluation of a model trained on `spoken-digits`: same labels, same (window, 1) frame, silence
    trimmed and centred, no augmentation. train and eval are empty. `seed` is unused (nothing is random).
    """
    data_dir = as_dir("data_dir", data_dir)
    sampling_rate = as_int("sampling_rate", sampling_rate, 1000)
    window = round(sampling_rate * as_float("window_seconds", window_seconds, 0.5, 10.0))
    test = []
    for label in range(10):
        path = data_dir / f"{label}.wav"
        if not path.is_file():
            raise DatasetNotInstalledError(
                f"{path} not found. Install Allison's recorded prompts with: apt-get install "
                "asterisk-core-sounds-en-wav (Debian/Ubuntu main), or pass data_dir= a folder with 0.wav..9.wav")
        x, rate = read_audio(path)
        x = trim_silence(_resample(x[:, 0], rate, sampling_rate), sampling_rate)
        start = max(0, (len(x) - window) // 2)
        clip = np.round(np.clip(x[start:start + window], -1, 32767 / 32768) * 32768).astype(np.int16)
        test.append({"input_values": augment_clip(clip, None, window)[:, None], "labels": label})
    return DatasetSplits(
        train=[], eval=[], test=test, id2label=dict(enumerate(DIGIT_WORDS)), input_dim=1,
        sampling_rate=sampling_rate, description=SPOKEN_DIGITS_REAL_DESCRIPTION,
        license="CC-BY-SA-3.0 (recordings by Allison Smith, Asterisk core sounds)",
        citation="Asterisk core sounds 1.6.1, recorded by Allison Smith (http://www.theivrvoice.com), "
                 "Digium, Inc.")
