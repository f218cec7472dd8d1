"""Waveform augmentations for training audio classifiers on raw samples (used by the ``spoken-digits`` train split).

Each function takes a 1-D float32 waveform (and a ``numpy.random.Generator`` where it draws) and returns a 1-D
float32 waveform; nothing here knows about datasets. :func:`random_augment` chains them with random parameters
(:class:`AugmentConfig`) into one training example, the ``(window,)`` frame the model reads:

1. speed change by resampling (duration, pitch and formants move together, as a faster or slower speaker);
2. pitch shift: resampling, then WSOLA time-scaling back to the duration (pitch and formants move, duration kept:
   a shorter or longer vocal tract);
3. gain and polarity, and a random position inside the window (random offset and padding; an utterance longer than
   the window is cropped at a random place);
4. reverberation: the clip convolved with an exponentially decaying noise impulse response (a room);
5. additive white or brown noise at a random signal-to-noise ratio over the utterance's samples;
6. band-limiting: a random low-pass, high-pass or band-pass such as the telephone band (a microphone, a phone line).

Every step is applied with its own probability. Outputs are finite, float32, in [-1, 1].
"""

from __future__ import annotations

import dataclasses
import math

import numpy as np


@dataclasses.dataclass(frozen=True)
class AugmentConfig:
    """Probabilities and ranges of :func:`random_augment` (ranges are (low, high), drawn uniformly unless noted)."""

    p_speed: float = 0.8
    speed: tuple[float, float] = (0.8, 1.25)          # log-uniform resampling factor (> 1: faster, shorter)
    p_pitch: float = 0.6
    pitch_semitones: tuple[float, float] = (-4.0, 4.0)
    peak: tuple[float, float] = (0.05, 0.95)          # log-uniform peak amplitude
    p_reverb: float = 0.3
    rt60_seconds: tuple[float, float] = (0.05, 0.6)   # time for the impulse response to decay by 60 dB
    direct_to_reverb_db: tuple[float, float] = (0.0, 15.0)
    p_noise: float = 0.8
    snr_db: tuple[float, float] = (0.0, 40.0)
    p_band: float = 0.5


def _smooth_numbers(limit: int = 1 << 20) -> np.ndarray:
    """Sorted numbers up to ``limit`` whose prime factors are all in 2, 3, 5, 7 (fast FFT lengths for pocketfft)."""
    numbers = np.array([1], np.int64)
    for p in (2, 3, 5, 7):
        powers = p ** np.arange(int(math.log(limit, p)) + 1, dtype=np.int64)
        numbers = np.unique((numbers[:, None] * powers[None, :]).ravel())
        numbers = numbers[numbers <= limit]
    return numbers


_SMOOTH = _smooth_numbers()


def _fft_lengths(length: int, factor: float) -> tuple[int, int]:
    """(n >= length, m), both fast FFT lengths, with n / m within 0.2% of ``factor`` (the closest pair among the
    first 64 candidates for n when none is that close)."""
    best = None
    for n in _SMOOTH[np.searchsorted(_SMOOTH, length):][:64].tolist():
        i = int(np.searchsorted(_SMOOTH, n / factor))
        for m in _SMOOTH[max(i - 1, 0):i + 1].tolist():
            error = abs(n / m / factor - 1.0)
            if best is None or error < best[0]:
                best = (error, n, m)
        if best[0] < 2e-3:
            break
    return best[1], best[2]


def speed_change(x: np.ndarray, factor: float) -> np.ndarray:
    """Play ``x`` ``factor`` times faster: about ``len(x) / factor`` samples, pitch and formants scaled by
    ``factor``.

    Resampled in the frequency domain (the spectrum is truncated or zero-padded), which also removes everything above
    the new Nyquist frequency, so a faster clip does not alias. The transforms are zero-padded to fast lengths
    (`_fft_lengths`), so the factor applied is within 0.3% of ``factor``."""
    if len(x) < 2 or abs(factor - 1.0) < 1e-6:
        return x.astype(np.float32, copy=True)
    n, n_out = _fft_lengths(len(x), factor)
    spectrum = np.fft.rfft(x, n)
    keep = min(len(spectrum), n_out // 2 + 1)
    resized = np.zeros(n_out // 2 + 1, complex)
    resized[:keep] = spectrum[:keep]
    y = np.fft.irfft(resized, n_out) * (n_out / n)
    return y[:max(1, int(round(len(x) * n_out / n)))].astype(np.float32)


def time_stretch(x: np.ndarray, factor: float, sampling_rate: int) -> np.ndarray:
    """WSOLA time-scale modification: ``len(x) / factor`` samples at the same pitch (factor > 1: faster).

    Hann frames of 40 ms overlap by half in the output; each next frame is taken from around its nominal input
    position (+- 1/4 frame) where it best continues the previous one (largest cross-correlation), so the waveform
    stays periodic across frame joins. A clip shorter than one frame is resampled instead."""
    frame = max(16, int(0.04 * sampling_rate) // 2 * 2)
    hop, tolerance = frame // 2, frame // 4
    n_out = int(round(len(x) / factor))
    if len(x) < frame or n_out < frame or abs(factor - 1.0) < 1e-3:
        return speed_change(x, len(x) / max(n_out, 1)) if len(x) else x.astype(np.float32, copy=True)
    window = np.hanning(frame).astype(np.float32)
    padded = np.concatenate([np.zeros(tolerance, np.float32), x.astype(np.float32),
                             np.zeros(frame + tolerance + hop, np.float32)])
    n_frames = (n_out - frame) // hop + 2
    out = np.zeros((n_frames - 1) * hop + frame, np.float32)
    weight = np.zeros_like(out)
    position = 0  # input position (in x) of the previous frame
    for k in range(n_frames):
        nominal = int(round(k * hop * factor))
        if k == 0:
            start = nominal
        else:
            natural = padded[tolerance + position + hop:tolerance + position + hop + frame]
            lo = min(max(nominal - tolerance, -tolerance), len(x))
            region = padded[tolerance + lo:tolerance + lo + 2 * tolerance + frame]
            start = lo + int(np.argmax(np.correlate(region, natural, "valid")))
        out[k * hop:k * hop + frame] += window * padded[tolerance + start:tolerance + start + frame]
        weight[k * hop:k * hop + frame] += window
        position = start
    return (out / np.maximum(weight, 1e-3))[:n_out]


def pitch_shift(x: np.ndarray, semitones: float, sampling_rate: int) -> np.ndarray:
    """Pitch and formants shifted by ``semitones`` at the same duration (resampling, then :func:`time_stretch`)."""
    if len(x) < 2:
        return x.astype(np.float32, copy=True)
    factor = 2.0 ** (semitones / 12.0)
    shifted = speed_change(x, factor)
    return time_stretch(shifted, len(shifted) / max(len(x), 1), sampling_rate)[:len(x)]


def place(x: np.ndarray, window: int, position: float) -> np.ndarray:
    """``x`` inside a zero ``window``-sample frame, starting at ``position`` (0..1) of the free room; a longer ``x``
    is cropped, its kept part starting at ``position`` of the excess."""
    out = np.zeros(window, np.float32)
    if len(x) > window:
        start = int(position * (len(x) - window))
        return x[start:start + window].astype(np.float32)
    start = int(position * (window - len(x)))
    out[start:start + len(x)] = x
    return out


def reverberate(x: np.ndarray, sampling_rate: int, rt60: float, direct_to_reverb_db: float,
                rng: np.random.Generator) -> np.ndarray:
    """``x`` plus its convolution with an exponentially decaying white-noise tail (amplitude -60 dB after ``rt60``
    seconds), scaled to ``direct_to_reverb_db`` below the dry signal's energy; the output keeps ``len(x)``."""
    n = max(2, int(rt60 * sampling_rate))
    tail = rng.standard_normal(n) * np.exp(-math.log(1000.0) * np.arange(n) / n)
    size = 1 << (len(x) + n - 2).bit_length()  # a power of two >= the full convolution's length
    wet = np.fft.irfft(np.fft.rfft(x, size) * np.fft.rfft(tail, size), size)[:len(x)]
    dry_energy, wet_energy = float((x ** 2).sum()), float((wet ** 2).sum())
    if wet_energy <= 0 or dry_energy <= 0:
        return x.astype(np.float32, copy=True)
    scale = math.sqrt(dry_energy / wet_energy / 10 ** (direct_to_reverb_db / 10))
    return (x + scale * wet).astype(np.float32)


def colored_noise(n: int, color: str, rng: np.random.Generator) -> np.ndarray:
    """Unit-RMS noise of ``n`` samples: "white", or "brown" (integrated white noise, its drift removed)."""
    noise = rng.standard_normal(n)
    if color == "brown":
        noise = np.cumsum(noise)
        noise -= np.linspace(noise[0], noise[-1], n)
    elif color != "white":
        raise ValueError(f"noise color must be 'white' or 'brown'; got {color!r}")
    return noise / max(float(np.sqrt((noise ** 2).mean())), 1e-12)


def add_noise(x: np.ndarray, snr_db: float, color: str, rng: np.random.Generator,
              signal_power: float | None = None) -> np.ndarray:
    """``x`` plus ``color`` noise at ``snr_db`` relative to ``signal_power`` (default: x's mean power)."""
    power = float((x ** 2).mean()) if signal_power is None else signal_power
    noise = colored_noise(len(x), color, rng) * math.sqrt(power / 10 ** (snr_db / 10))
    return (x + noise).astype(np.float32)


def band_limit(x: np.ndarray, sampling_rate: int, kind: str, low: float | None = None,
               high: float | None = None, order: int = 4) -> np.ndarray:
    """Zero-phase Butterworth magnitude response (applied in the frequency domain): "lowpass" below ``high`` Hz,
    "highpass" above ``low`` Hz, "bandpass" between them (e.g. the telephone band 300..3400 Hz)."""
    if kind not in ("lowpass", "highpass", "bandpass"):
        raise ValueError(f"band_limit kind must be 'lowpass', 'highpass' or 'bandpass'; got {kind!r}")
    hz = np.fft.rfftfreq(len(x), 1.0 / sampling_rate)
    gain = np.ones_like(hz)
    if kind in ("lowpass", "bandpass"):
        gain /= np.sqrt(1.0 + (hz / float(high)) ** (2 * order))
    if kind in ("highpass", "bandpass"):
        gain /= np.sqrt(1.0 + (float(low) / np.maximum(hz, 1e-6)) ** (2 * order))
    return np.fft.irfft(np.fft.rfft(x) * gain, len(x)).astype(np.float32)


def random_augment(utterance: np.ndarray, window: int, sampling_rate: int, rng: np.random.Generator,
                   config: AugmentConfig = AugmentConfig()) -> np.ndarray:
    """One random training example from a clean utterance (1-D float in [-1, 1]): the steps of the module docstring
    with parameters drawn from ``rng`` -> a (window,) float32 frame in [-1, 1]."""
    x = np.asarray(utterance, np.float32)
    if rng.random() < config.p_speed:
        x = speed_change(x, math.exp(rng.uniform(*np.log(config.speed))))
    if rng.random() < config.p_pitch:
        x = pitch_shift(x, rng.uniform(*config.pitch_semitones), sampling_rate)
    peak = math.exp(rng.uniform(*np.log(config.peak))) * (1.0 if rng.random() < 0.5 else -1.0)
    x = x * (peak / max(float(np.abs(x).max(initial=0.0)), 1e-6))
    signal_power = float((x ** 2).mean()) if len(x) else 0.0  # over the utterance, as the eval/test noise (spoken_digits.augment_clip)
    out = place(x, window, rng.random())
    if rng.random() < config.p_reverb:
        out = reverberate(out, sampling_rate, rng.uniform(*config.rt60_seconds), rng.uniform(*config.direct_to_reverb_db),
                          rng)
    if rng.random() < config.p_noise:
        out = add_noise(out, rng.uniform(*config.snr_db), ("white", "brown")[rng.integers(2)], rng, signal_power)
    if rng.random() < config.p_band:
        kind = ("lowpass", "highpass", "bandpass")[rng.integers(3)]
        out = band_limit(out, sampling_rate, kind, low=rng.uniform(50.0, 500.0),
                         high=rng.uniform(1500.0, sampling_rate / 2))
    return np.clip(np.nan_to_num(out), -1.0, 1.0).astype(np.float32)
