"""Waveform augmentations (s4d_hf/training/data/augment_audio.py), checked against what each one means physically:
frequencies of pure tones, lengths, energy ratios, signal-to-noise ratios."""

import math

import numpy as np
import pytest

from s4d_hf.training.data import augment_audio as A

RATE = 8000


def tone(hz: float, n: int = 4000, amplitude: float = 0.5) -> np.ndarray:
    return (amplitude * np.sin(2 * np.pi * hz * np.arange(n) / RATE)).astype(np.float32)


def peak_hz(x: np.ndarray) -> float:
    spectrum = np.abs(np.fft.rfft(x * np.hanning(len(x)), 1 << 16))
    return float(np.argmax(spectrum) * RATE / (1 << 16))


def rms(x) -> float:
    return float(np.sqrt(np.mean(np.asarray(x, np.float64) ** 2)))


@pytest.mark.parametrize("factor", [0.8, 1.25])
def test_speed_change_scales_length_and_frequency(factor):
    y = A.speed_change(tone(200), factor)
    assert y.dtype == np.float32 and len(y) == round(4000 / factor)
    assert abs(peak_hz(y) - 200 * factor) < 2


def test_speed_change_up_removes_what_would_alias():
    y = A.speed_change(tone(3500), 1.25)   # 4375 Hz is above the 4 kHz Nyquist frequency: nothing may fold back
    assert rms(y) < 1e-3


@pytest.mark.parametrize("factor", [0.8, 1.25])
def test_time_stretch_keeps_the_pitch(factor):
    y = A.time_stretch(tone(200), factor, RATE)
    assert y.dtype == np.float32 and len(y) == round(4000 / factor)
    assert abs(peak_hz(y) - 200) < 2
    assert abs(rms(y[400:-400]) - rms(tone(200))) < 0.05 * rms(tone(200))   # frames overlap-add to the same level


@pytest.mark.parametrize("semitones", [-4.0, 3.0])
def test_pitch_shift_keeps_the_length(semitones):
    y = A.pitch_shift(tone(200), semitones, RATE)
    assert len(y) == 4000 and y.dtype == np.float32
    assert abs(peak_hz(y) - 200 * 2 ** (semitones / 12)) < 2


def test_place_pads_and_crops():
    x = np.arange(1, 101, dtype=np.float32)
    out = A.place(x, 300, 1.0)
    assert out.shape == (300,) and np.count_nonzero(out[:200]) == 0 and np.array_equal(out[200:], x)
    assert np.array_equal(A.place(x, 300, 0.0)[:100], x)
    assert np.array_equal(A.place(x, 40, 0.5), x[30:70])   # longer than the window: cropped at 0.5 of the excess


def test_reverberation_adds_a_tail_at_the_asked_level():
    x = np.zeros(8000, np.float32)
    x[1000:1100] = tone(300, 100)
    y = A.reverberate(x, RATE, rt60=0.3, direct_to_reverb_db=6.0, rng=np.random.default_rng(0))
    wet = y - x
    assert abs(10 * np.log10((x ** 2).sum() / (wet ** 2).sum()) - 6.0) < 1e-3
    assert rms(wet[1200:1600]) > 0.01 and np.abs(wet[:1000]).max() < 1e-6   # a tail after the sound, none before
    assert rms(wet[1200:1400]) > rms(wet[2800:3000]) * 10                    # and it decays


@pytest.mark.parametrize("color", ["white", "brown"])
def test_add_noise_has_the_asked_snr(color):
    x = tone(440, 8000)
    y = A.add_noise(x, 12.0, color, np.random.default_rng(1))
    assert abs(10 * np.log10((x ** 2).mean() / ((y - x) ** 2).mean()) - 12.0) < 1e-3
    brown = A.colored_noise(8000, "brown", np.random.default_rng(2))
    spectrum = np.abs(np.fft.rfft(brown)) ** 2
    assert spectrum[1:400].sum() > 20 * spectrum[2000:].sum()   # brown noise: most power at low frequencies
    with pytest.raises(ValueError, match="'white' or 'brown'"):
        A.colored_noise(10, "pink", np.random.default_rng(0))


def test_band_limit_has_the_butterworth_magnitude_response():
    butterworth = lambda f, fc: 1 / math.sqrt(1 + (f / fc) ** 8)  # noqa: E731  (4th order)
    for hz in (100, 1000, 3800):   # whole periods in the 8000 samples: each tone is one FFT bin
        x = tone(hz, 8000)
        gain = lambda *args, **kwargs: rms(A.band_limit(x, RATE, *args, **kwargs)) / rms(x)  # noqa: E731
        assert math.isclose(gain("lowpass", high=1500), butterworth(hz, 1500), rel_tol=1e-4)
        assert math.isclose(gain("highpass", low=500), butterworth(500, hz), rel_tol=1e-4)
        assert math.isclose(gain("bandpass", low=300, high=3400),
                            butterworth(hz, 3400) * butterworth(300, hz), rel_tol=1e-4)
    assert rms(A.band_limit(tone(1000, 8000), RATE, "bandpass", low=300, high=3400)) > 0.99 * rms(tone(1000, 8000))
    with pytest.raises(ValueError, match="kind"):
        A.band_limit(tone(1000), RATE, "notch", 1, 2)


@pytest.mark.parametrize("length", [0, 1, 50, 3000, 9000])
def test_random_augment_gives_finite_float32_frames_in_range(length):
    rng = np.random.default_rng(length)
    utterance = np.random.default_rng(7).standard_normal(length).astype(np.float32) * 0.3
    outputs = [A.random_augment(utterance, 8000, RATE, rng) for _ in range(25)]
    for out in outputs:
        assert out.shape == (8000,) and out.dtype == np.float32
        assert np.all(np.isfinite(out)) and np.abs(out).max() <= 1.0
    if length:
        assert len({out.tobytes() for out in outputs}) == len(outputs)   # every draw is a different example


def test_random_augment_with_everything_off_only_places_and_scales():
    off = A.AugmentConfig(p_speed=0, p_pitch=0, p_reverb=0, p_noise=0, p_band=0, peak=(0.5, 0.5))
    x = tone(300, 2000)
    out = A.random_augment(x, 8000, RATE, np.random.default_rng(3), off)
    scaled = x / np.abs(x).max() * 0.5
    start = int(np.argmax(np.abs(np.correlate(out, scaled, "valid"))))   # where the utterance was put
    sign = np.sign(np.dot(out[start:start + 2000], scaled))               # the random polarity
    np.testing.assert_allclose(out[start:start + 2000], sign * scaled, atol=1e-6)
    assert not np.any(out[:start]) and not np.any(out[start + 2000:])
