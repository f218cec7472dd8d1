"""Spoken digits: ``spoken-digits`` synthesised offline with espeak-ng and flite (split by voice family, augmented on
the fly, clean utterances cached), ``spoken-digits-unseen``, a second test set in voice families no split uses, and
``spoken-digits-real``, one real speaker's recorded digits from Debian's ``asterisk-core-sounds-en-wav``, for
sim-to-real testing."""

from __future__ import annotations

import hashlib
import json
import math
import os
import pathlib
import shutil
import subprocess
from concurrent.futures import ThreadPoolExecutor

import numpy as np

from s4d_hf.processing.feature_extraction_s4d import resample
from s4d_hf.staging import staged_file

from ..audio import read_audio, read_wav_bytes
from ..augment_audio import AugmentConfig, add_noise, place, random_augment
from ..core import SPLIT_NAMES, DatasetSplits
from ..hf_datasets import _as_lazy_split
from .common import DatasetNotInstalledError, as_bool, as_dir, as_float, as_int, cache_dir

SPOKEN_DIGITS_DESCRIPTION = (
    "Spoken digits zero..nine synthesised offline with espeak-ng (GPL-3+) and flite (CMU BSD-style), 1 s windows at "
    "8 kHz by default; voice settings (speed, pitch) drawn per clip; train/eval/test split by voice family (eval and "
    "test families are never seen in training); training clips augmented on the fly (speed, pitch, gain, position, "
    "reverberation, noise, band-limiting), eval/test clips with a fixed gain/position/noise per clip; synthetic "
    "speech, generated and cached locally.")
SPOKEN_DIGITS_UNSEEN_DESCRIPTION = (
    "Test-only second unseen-voice set for models trained on spoken-digits: the same digits synthesised with "
    "espeak-ng voice families (an accent and voice variants) used by no spoken-digits split, with the same per-clip "
    "gain/position/noise as its test split.")
SPOKEN_DIGITS_REAL_DESCRIPTION = (
    "Test-only sim-to-real set: digits 0..9 recorded by one real speaker (Allison Smith, "
    "8 kHz telephone prompts) from Debian's asterisk-core-sounds-en-wav, CC-BY-SA-3.0.")

DIGIT_WORDS = ("zero", "one", "two", "three", "four", "five", "six", "seven", "eight", "nine")
SYNTH_SPLITS = ("train", "eval", "test", "unseen")  # "unseen": the spoken-digits-unseen test set


# espeak-ng 1.51 English accents (the mbrola voices are not in Debian main and do not work). The accent sets the
# pronunciation rules; each synthetic split has its own (eval, test and unseen clips are spoken in accents that no
# training clip has).
ESPEAK_ACCENTS = {"train": ("en-us", "en-gb", "en-gb-x-rp", "en-gb-x-gbclan", "en-us-nyc"),
                  "eval": ("en-gb-x-gbcwmd",), "test": ("en-gb-scotland",), "unseen": ("en-029",)}


# espeak-ng 1.51 voice variants (`espeak-ng --voices=variant`, file names). A variant sets pitch, formants and
# voicing, i.e. who speaks ("" = the default voice). Variants that are versions of one voice (klatt..klatt6, m1..m8,
# iven..iven4, whisper and whisperf, ...) form one voice *family*; see `voice_family`.
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
_FAMILY_ALIASES = {"whisperf": "whisper", "anikaRobot": "anika"}


# flite 2.2 voices, one family each (kal and kal16 are the same diphone voice at 8 and 16 kHz), with the range of
# the mean F0 target (Hz) drawn per clip, and the split each family belongs to (flite has only four).
FLITE_FAMILIES = {"kal": (("kal", "kal16"), (70, 170)), "awb": (("awb",), (70, 170)),
                  "rms": (("rms",), (70, 160)), "slt": (("slt",), (140, 280))}
FLITE_SPLIT = {"kal": "train", "rms": "train", "awb": "eval", "slt": "test"}

# The fixed permutation that deals espeak-ng variant families to eval / test / unseen (N_HELD_OUT each) and train.
FAMILY_SPLIT_SEED = 15
N_HELD_OUT = 7


def voice_family(variant: str) -> str:
    """An espeak-ng variant's family: its name without a trailing number ("klatt3" -> "klatt", "" -> "default"),
    with whisperf -> whisper and anikaRobot -> anika."""
    name = _FAMILY_ALIASES.get(variant, variant).rstrip("0123456789")
    return name or "default"


def split_families() -> dict[str, dict[str, tuple]]:
    """The fixed voice-family split: {split: {"espeak-ng": variant names, "flite": flite families,
    "accents": espeak-ng accents}} for the splits in `SYNTH_SPLITS`.

    Every espeak-ng variant family (`voice_family`) and every flite voice lies in exactly one split; so does every
    accent. The split does not depend on the run's seed: eval, test and unseen voices stay the same for every run.
    """
    families = sorted({voice_family(v) for v in ESPEAK_VARIANTS})
    order = [families[i] for i in np.random.default_rng(FAMILY_SPLIT_SEED).permutation(len(families))]
    held = {split: set(order[k * N_HELD_OUT:(k + 1) * N_HELD_OUT]) for k, split in enumerate(SYNTH_SPLITS[1:])}
    held["train"] = set(order[len(SYNTH_SPLITS[1:]) * N_HELD_OUT:])
    return {split: {"espeak-ng": tuple(v for v in ESPEAK_VARIANTS if voice_family(v) in held[split]),
                    "flite": tuple(f for f in FLITE_FAMILIES if FLITE_SPLIT[f] == split),
                    "accents": ESPEAK_ACCENTS[split]} for split in SYNTH_SPLITS}


ALLISON_DIGITS_DIR = "/usr/share/asterisk/sounds/en/digits"


# Default clips per digit: spoken-digits' train split, spoken-digits-unseen.
TRAIN_PER_CLASS, UNSEEN_PER_CLASS = 300, 100
SPOKEN_DIGITS_VERSION = 2  # bump when synthesis or trimming changes, so old caches are not reused


def spoken_digit_specs(seed: int, counts: dict[str, int], flite_fraction: float = 0.4) -> dict[str, list[dict]]:
    """Synthesis parameters and eval/test augmentation of every clip, per split: {split: [spec, ...]}.

    counts: clips per digit for some of the splits in `SYNTH_SPLITS`. Each clip's parameters come from its own
    generator seeded with (seed, split, digit, index), so a clip does not change when other counts change. A spec
    holds the word, label, voice family ("speaker": "espeak-ng:FAMILY" or "flite:FAMILY"), the synthesiser's
    parameters ("synth") and the fixed augmentation of an eval/test clip ("augment", see `augment_clip`). Voices and
    accents come only from the split's own families (`split_families`); a clip is a flite one with probability
    flite_fraction when its split has flite voices.
    """
    families = split_families()
    specs = {}
    for split, count in counts.items():
        split_code = SYNTH_SPLITS.index(split)
        espeak, flite, accents = (families[split][k] for k in ("espeak-ng", "flite", "accents"))
        specs[split] = []
        for label, word in enumerate(DIGIT_WORDS):
            for index in range(count):
                rng = np.random.default_rng([seed, split_code, label, index])
                if flite and (not espeak or rng.random() < flite_fraction):
                    family = flite[rng.integers(len(flite))]
                    voices, (f0_low, f0_high) = FLITE_FAMILIES[family]
                    speaker = f"flite:{family}"
                    synth = {"engine": "flite", "voice": voices[rng.integers(len(voices))],
                             "duration_stretch": round(float(rng.uniform(0.75, 1.4)), 3),
                             "f0": int(rng.integers(f0_low, f0_high + 1)),
                             "f0_stddev": int(rng.integers(5, 41))}
                else:
                    variant = espeak[rng.integers(len(espeak))]
                    accent = accents[rng.integers(len(accents))]
                    speaker = f"espeak-ng:{voice_family(variant)}"
                    synth = {"engine": "espeak-ng", "voice": accent + ("+" + variant if variant else ""),
                             "speed": int(rng.integers(100, 261)), "pitch": int(rng.integers(0, 100))}
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
            "--setf", f"int_f0_target_mean={synth['f0']}", "--setf", f"int_f0_target_stddev={synth['f0_stddev']}",
            "-t", word, "-o", "/dev/stdout"]


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
    out = add_noise(place(x, window, augment["position"]), augment["snr_db"], augment["noise"],
                    np.random.default_rng(augment["noise_seed"]), signal_power=float((x ** 2).mean()))
    return np.clip(out, -1.0, 1.0)


def _tool_versions() -> str:
    versions = []
    for command in (["espeak-ng", "--version"], ["flite", "--version"]):
        if shutil.which(command[0]) is None:
            raise DatasetNotInstalledError(
                f"spoken-digits needs the {command[0]} program to synthesise clips that are not in its cache. Install "
                "it with: apt-get install espeak-ng flite (Debian/Ubuntu main), or point cache_dir= at a copy of a "
                "cache that holds them")
        versions.append(subprocess.run(command, capture_output=True, text=True).stdout.strip())
    return "\n".join(versions)


def default_cache_dir() -> pathlib.Path:
    """Where clean utterances are cached unless ``cache_dir=`` says otherwise: ``$S4D_HF_CACHE/spoken_digits``."""
    return cache_dir() / "spoken_digits"


def clip_keys(specs: list[dict], sampling_rate: int, window: int) -> np.ndarray:
    """(n,) 16-hex-digit keys, one per clip: a hash of everything its clean utterance depends on (the cache version,
    rate, window, the word and the synthesiser's parameters)."""
    return np.array([hashlib.sha256(json.dumps(
        {"version": SPOKEN_DIGITS_VERSION, "sampling_rate": sampling_rate, "window": window, "word": s["word"],
         "synth": s["synth"]}, sort_keys=True).encode()).hexdigest()[:16] for s in specs], dtype="U16")


def cache_path(folder, keys: np.ndarray, sampling_rate: int, split: str) -> pathlib.Path:
    """The .npz file of one split's clean utterances, named by the split, rate, clip count and a hash of the clips'
    `clip_keys`: any change of what is synthesised gives a new file."""
    digest = hashlib.sha256("".join(keys).encode()).hexdigest()[:16]
    return pathlib.Path(folder) / f"{split}-{sampling_rate}hz-{len(keys)}-{digest}.npz"


def _read_cache(path: pathlib.Path, keys: np.ndarray) -> list[np.ndarray] | None:
    """The clips with these keys from one cache file (in the order of ``keys``), or None when it lacks one."""
    with np.load(path, allow_pickle=False) as cached:
        if "keys" not in cached.files:
            return None
        index = {key: i for i, key in enumerate(cached["keys"].tolist())}
        if not all(key in index for key in keys.tolist()):
            return None
        audio, offsets = cached["audio"], cached["offsets"]
    return [audio[offsets[index[k]]:offsets[index[k] + 1]] for k in keys.tolist()]


def _write_cache(path: pathlib.Path, clips: list[np.ndarray], keys: np.ndarray, tools: str) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    offsets = np.cumsum([0] + [len(c) for c in clips]).astype(np.int64)
    # Write to a temporary file and rename, so an interrupted run (or a second rank racing this one) never leaves a
    # half-written cache behind.
    with staged_file(path) as tmp, open(tmp, "wb") as f:
        np.savez(f, audio=np.concatenate(clips) if clips else np.zeros(0, np.int16), offsets=offsets, keys=keys,
                 tools=np.array(tools))


def _synthesize_split(specs: list[dict], sampling_rate: int, window: int, num_workers: int, split: str,
                      folder) -> list[np.ndarray]:
    """Clean utterances of one split, from the cache when it has them, else synthesised (this needs espeak-ng and
    flite) and cached in `cache_path`. The cache is that file, else any other file of the same split and rate that
    holds every clip (a run with more clips per digit), which is then saved as the exact file too, so a copy of
    the exact files is enough for a later run. Each file records the synthesisers' versions ("tools")."""
    keys = clip_keys(specs, sampling_rate, window)
    path = cache_path(folder, keys, sampling_rate, split)
    if path.is_file():
        clips = _read_cache(path, keys)
        if clips is not None:
            return clips
    for other in sorted(pathlib.Path(folder).glob(f"{split}-{sampling_rate}hz-*.npz")):
        clips = _read_cache(other, keys)
        if clips is not None:
            with np.load(other, allow_pickle=False) as cached:
                tools = str(cached["tools"]) if "tools" in cached.files else ""
            _write_cache(path, clips, keys, tools)
            return clips
    tools = _tool_versions()
    # Each clip is its own synthesiser process, so threads give the parallelism without forking a training process
    # that may already run torch's thread pool.
    with ThreadPoolExecutor(max_workers=num_workers) as pool:
        clips = list(pool.map(lambda spec: synthesize(spec, sampling_rate, window), specs))
    _write_cache(path, clips, keys, tools)
    return clips


class AugmentedClips:
    """The decoding transform of the lazy train split: clip indices -> freshly augmented examples.

    Each call draws one seed from torch's global generator (which the Trainer seeds, saves in its checkpoints and
    restores on ``--resume``, and which DataLoader workers get seeded copies of), so every epoch sees new versions
    of every clip while a run stays reproducible. The clean utterances stay int16, concatenated (``audio`` sliced
    by ``offsets``); see :func:`s4d_hf.training.data.augment_audio.random_augment` for what is done to them.
    """

    def __init__(self, audio: np.ndarray, offsets: np.ndarray, labels: np.ndarray, window: int, sampling_rate: int,
                 config: AugmentConfig = AugmentConfig()):
        self.audio, self.offsets, self.labels = audio, offsets, labels
        self.window, self.sampling_rate, self.config = window, sampling_rate, config

    def __call__(self, batch: dict) -> dict:
        import torch

        rng = np.random.default_rng(int(torch.randint(0, 2**62, ())))
        inputs = []
        for i in batch["clip"]:
            utterance = self.audio[self.offsets[i]:self.offsets[i + 1]].astype(np.float32) / 32768.0
            inputs.append(random_augment(utterance, self.window, self.sampling_rate, rng, self.config)[:, None])
        return {"input_values": inputs, "labels": [int(self.labels[i]) for i in batch["clip"]]}


def _lazy_train_split(clips: list[np.ndarray], labels: list[int], window: int, sampling_rate: int):
    """The train split as a lazy ``datasets.Dataset`` of clip indices whose transform is :class:`AugmentedClips`."""
    import datasets

    offsets = np.cumsum([0] + [len(c) for c in clips]).astype(np.int64)
    audio = np.concatenate(clips) if clips else np.zeros(0, np.int16)
    transform = AugmentedClips(audio, offsets, np.asarray(labels, np.int64), window, sampling_rate)
    rows = datasets.Dataset.from_dict({"clip": list(range(len(clips)))})
    return _as_lazy_split(rows.with_transform(transform))


def _options(sampling_rate, window_seconds, num_workers, cache_dir_option):
    sampling_rate = as_int("sampling_rate", sampling_rate, 1000)
    window = round(sampling_rate * as_float("window_seconds", window_seconds, 0.5, 10.0))
    num_workers = as_int("num_workers", min(2, os.cpu_count() or 1) if num_workers is None else num_workers, 1)
    folder = default_cache_dir() if cache_dir_option is None else as_dir("cache_dir", cache_dir_option)
    return sampling_rate, window, num_workers, folder


def _family_summary(split: str) -> str:
    families = split_families()[split]
    return (f"{len({voice_family(v) for v in families['espeak-ng']})} espeak-ng families in "
            f"{'/'.join(families['accents'])}" + (f" + flite {'/'.join(families['flite'])}" if families["flite"] else ""))


def _split_counts(n_per_class, n_eval_per_class, n_test_per_class) -> dict[str, int]:
    """Clips per digit of each split, from `load_spoken_digits`' options (eval and test default to a fifth of train)."""
    n_train = as_int("n_per_class", n_per_class, 1)
    n_eval = as_int("n_eval_per_class", n_train // 5 if n_eval_per_class is None else n_eval_per_class, 0)
    n_test = as_int("n_test_per_class", n_train // 5 if n_test_per_class is None else n_test_per_class, 0)
    return {"train": n_train, "eval": n_eval, "test": n_test}


def speakers_of_test_clips(dataset: str, seed: int = 0, *, n_per_class=None, n_eval_per_class=None,
                       n_test_per_class=None, flite_fraction=0.4, **_loading_options) -> list[str]:
    """The voice family ("espeak-ng:FAMILY" / "flite:FAMILY") of every test clip of ``spoken-digits`` or
    ``spoken-digits-unseen`` loaded with this seed and these options, in the order of the test split's examples (for
    accuracy by voice family). Options that do not choose clips (rate, window, cache, ...) are accepted and ignored."""
    if dataset == "spoken-digits-unseen":
        count = as_int("n_per_class", UNSEEN_PER_CLASS if n_per_class is None else n_per_class, 1)
        return [spec["speaker"] for spec in spoken_digit_specs(seed, {"unseen": count})["unseen"]]
    if dataset != "spoken-digits":
        raise ValueError(f"voice families exist for spoken-digits and spoken-digits-unseen only; got {dataset!r}")
    counts = _split_counts(TRAIN_PER_CLASS if n_per_class is None else n_per_class, n_eval_per_class,
                           n_test_per_class)
    specs = spoken_digit_specs(seed, {"test": counts["test"]}, as_float("flite_fraction", flite_fraction, 0.0, 1.0))
    return [spec["speaker"] for spec in specs["test"]]


def load_spoken_digits(seed: int = 0, *, sampling_rate=8000, n_per_class=TRAIN_PER_CLASS, n_eval_per_class=None,
                       n_test_per_class=None, window_seconds=1.0, augment=True, flite_fraction=0.4,
                       num_workers=None, cache_dir=None) -> DatasetSplits:
    """Synthetic spoken digits "zero".."nine": (sampling_rate * window_seconds, 1) float32 waveforms, 10 classes.

    Voices: espeak-ng variants in several accents and flite voices, speed and pitch drawn per clip; the split is by
    voice family (`split_families`: eval and test families and accents are never in training). With ``augment``
    (default) the train split is lazy and augmented afresh on every access (`AugmentedClips`), and eval/test clips
    get a fixed per-clip peak level, position and white/brown noise at 5..40 dB SNR (`augment_clip`); without it,
    every clip is the clean utterance centred in the window. n_per_class train clips per digit; eval and test get
    n_eval_per_class / n_test_per_class (default n_per_class // 5). Clean utterances are cached as .npz files in
    ``cache_dir`` (default ``$S4D_HF_CACHE/spoken_digits``); with every file there, neither synthesiser is needed.
    """
    sampling_rate, window, num_workers, folder = _options(sampling_rate, window_seconds, num_workers, cache_dir)
    augment = as_bool("augment", augment)
    flite_fraction = as_float("flite_fraction", flite_fraction, 0.0, 1.0)
    specs = spoken_digit_specs(seed, _split_counts(n_per_class, n_eval_per_class, n_test_per_class), flite_fraction)
    splits = {}
    for split in SPLIT_NAMES:
        clips = _synthesize_split(specs[split], sampling_rate, window, num_workers, split, folder)
        if split == "train" and augment:
            splits[split] = _lazy_train_split(clips, [s["labels"] for s in specs[split]], window, sampling_rate)
            continue
        splits[split] = [{"input_values": augment_clip(clip, spec["augment"] if augment else None, window)[:, None],
                          "labels": spec["labels"]} for clip, spec in zip(clips, specs[split])]
    return DatasetSplits(
        **splits, id2label=dict(enumerate(DIGIT_WORDS)), input_dim=1, sampling_rate=sampling_rate,
        description=SPOKEN_DIGITS_DESCRIPTION + " Voice families per split: "
        + "; ".join(f"{split} {_family_summary(split)}" for split in SPLIT_NAMES) + f"; seed {seed}.",
        license=_LICENSE, citation=_CITATION)


def load_spoken_digits_unseen(seed: int = 0, *, sampling_rate=8000, n_per_class=UNSEEN_PER_CLASS,
                              window_seconds=1.0, augment=True, num_workers=None, cache_dir=None) -> DatasetSplits:
    """A test-only set of `n_per_class` clips per digit in the "unseen" voice families of `split_families` (an
    espeak-ng accent and variant families that no spoken-digits split uses), with the eval/test augmentation of
    `load_spoken_digits`. train and eval are empty; cached like spoken-digits."""
    sampling_rate, window, num_workers, folder = _options(sampling_rate, window_seconds, num_workers, cache_dir)
    n_test = as_int("n_per_class", n_per_class, 1)
    augment = as_bool("augment", augment)
    specs = spoken_digit_specs(seed, {"unseen": n_test})["unseen"]
    clips = _synthesize_split(specs, sampling_rate, window, num_workers, "unseen", folder)
    test = [{"input_values": augment_clip(clip, spec["augment"] if augment else None, window)[:, None],
             "labels": spec["labels"]} for clip, spec in zip(clips, specs)]
    return DatasetSplits(
        train=[], eval=[], test=test, id2label=dict(enumerate(DIGIT_WORDS)), input_dim=1, sampling_rate=sampling_rate,
        description=SPOKEN_DIGITS_UNSEEN_DESCRIPTION + f" Voices: {_family_summary('unseen')}; seed {seed}.",
        license=_LICENSE, citation=_CITATION)


_LICENSE = ("generated with espeak-ng (GPL-3.0-or-later) and flite (BSD-style CMU licence); the generated clips "
            "carry no third-party content")
_CITATION = ("eSpeak NG, https://github.com/espeak-ng/espeak-ng; Black, A. W. and Lenzo, K. A. Flite: a small "
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
