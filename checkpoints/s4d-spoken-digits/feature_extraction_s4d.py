"""Audio feature extractor for S4D: raw waveforms in, ``input_values`` + ``attention_mask`` out.

S4D reads the waveform itself, sample by sample (the paper's Speech Commands SC10 setting: 16 000 samples of raw
16 kHz audio), so "feature extraction" is only: channels to the model's ``input_dim``, integer PCM to float, optional
per-example normalisation, right-padding with an ``attention_mask``. There is no maximum length: the model is a
convolution / recurrence over any L.

Sampling rates. S4D is a discretised continuous-time system x'(t) = A x(t) + B u(t): the step size dt is a parameter,
so a model trained on 16 kHz audio runs on 8 kHz audio by doubling dt (paper §3.3 / Table 5 "zero-shot resolution
change"; the model's ``forward(..., rate=model_rate / input_rate)``). Two policies, saved as ``rate_policy``:

* ``"rate"`` (default, the S4D way): leave the samples alone and return ``rate = sampling_rate / input_rate`` next to
  ``input_values``; the model then scales dt. No resampling filter, no extra cost.
* ``"resample"``: resample to the training rate with a polyphase filter (``scipy.signal.resample_poly``), and no
  ``rate`` (the model sees training-rate samples).

The default is ``"rate"``: it is the paper's method and needs no scipy; on the shipped ``s4d-spoken-digits``
checkpoint (8 kHz model, 200 test clips given at 16 kHz) it scored 0.700 accuracy against 0.705 for ``"resample"``,
one clip apart (``s4d-hf evaluate checkpoints/s4d-spoken-digits --sampling-rate 16000 --rate-policy rate|resample``).

This module imports nothing from s4d_hf, so a saved extractor loads as remote code (``trust_remote_code=True``).
"""

from math import gcd

import numpy as np
import torch
from transformers import BatchFeature, SequenceFeatureExtractor
from transformers.utils import logging


logger = logging.get_logger(__name__)

RATE_POLICIES = ("rate", "resample")


def check_sampling_rate(value, name: str = "sampling_rate") -> int:
    """A sampling rate must be a positive whole number of Hz (16000, 22050.0); return it as an int."""
    if isinstance(value, bool) or not isinstance(value, (int, float, np.integer, np.floating)):
        raise TypeError(f"{name} must be a positive whole number of Hz (e.g. 16000); got {value!r} "
                        f"of type {type(value).__name__}")
    if not np.isfinite(value) or value <= 0 or value != int(value):
        raise ValueError(f"{name} must be a positive whole number of Hz (e.g. 16000); got {value!r}")
    return int(value)


def pcm_to_float(audio: np.ndarray, name: str = "raw_audio") -> np.ndarray:
    """Any supported sample type -> float32 in [-1, 1] for PCM: intN / 2^(N-1); uint8 (8-bit WAV) is offset by 128.

    Floats pass through (cast to float32). bool, complex, other unsigned types and non-numbers raise TypeError.
    """
    kind = audio.dtype.kind
    if kind == "f":
        return audio.astype(np.float32, copy=False)
    if kind == "i":
        return (audio.astype(np.float64) / float(2 ** (8 * audio.dtype.itemsize - 1))).astype(np.float32)
    if audio.dtype == np.uint8:
        return ((audio.astype(np.float64) - 128.0) / 128.0).astype(np.float32)
    raise TypeError(f"{name} must hold float or integer PCM samples (float16/32/64, int8/16/32/64, uint8); "
                    f"got dtype {audio.dtype}")


def resample(audio: np.ndarray, input_rate: int, output_rate: int) -> np.ndarray:
    """(L, C) at ``input_rate`` -> (ceil(L·output/input), C) at ``output_rate`` with scipy's polyphase filter."""
    from scipy.signal import resample_poly  # only the "resample" policy needs scipy

    g = gcd(input_rate, output_rate)
    return resample_poly(audio, output_rate // g, input_rate // g, axis=0).astype(np.float32)


class S4DFeatureExtractor(SequenceFeatureExtractor):
    r"""
    Raw-waveform feature extractor for S4D audio models.

    Args:
        feature_size (`int`, defaults to 1): channels the model reads (its ``config.input_dim``): 1 mono, 2 stereo.
        sampling_rate (`int`, defaults to 16000): the rate the model was trained at, in Hz.
        padding_value (`float`, defaults to 0.0): value of padded samples (masked out by ``attention_mask``).
        do_normalize (`bool`, defaults to True): per example and channel, (x - mean) / sqrt(var + 1e-7) over time.
        rate_policy (`str`, defaults to "rate"): what to do with audio at another rate: "rate" (return
            ``rate = sampling_rate / input_rate`` for the model, which scales its step size dt) or "resample"
            (resample with ``scipy.signal.resample_poly``). See the module docstring.

    ``__call__`` returns ``input_values`` of shape (B, L) for mono or (B, L, C) otherwise (float32), ``attention_mask``
    (B, L) (1 = sample, 0 = padding), and ``rate`` (a Python float) when the policy is "rate" and the input rate
    differs from ``sampling_rate``. Pass everything to the model: ``model(**extractor(audio, sampling_rate=8000))``.
    """

    model_input_names = ["input_values", "attention_mask"]

    def __init__(
        self,
        feature_size: int = 1,
        sampling_rate: int = 16000,
        padding_value: float = 0.0,
        do_normalize: bool = True,
        rate_policy: str = "rate",
        **kwargs,
    ):
        if isinstance(feature_size, bool) or not isinstance(feature_size, int) or feature_size < 1:
            raise ValueError(f"feature_size must be a positive integer (the model's input_dim); got {feature_size!r}")
        if rate_policy not in RATE_POLICIES:
            raise ValueError(f"rate_policy must be one of {RATE_POLICIES}; got {rate_policy!r}")
        sampling_rate = check_sampling_rate(sampling_rate)
        super().__init__(feature_size=feature_size, sampling_rate=sampling_rate, padding_value=padding_value, **kwargs)
        self.do_normalize = do_normalize
        self.rate_policy = rate_policy

    def to_dict(self) -> dict:
        """As transformers', with the remote-code entry also under ``AutoProcessor`` in the saved
        ``preprocessor_config.json``: ``AutoProcessor.from_pretrained(folder, trust_remote_code=True)`` then returns
        this class (without it, transformers tries an image processor first)."""
        output = super().to_dict()
        if "AutoFeatureExtractor" in (output.get("auto_map") or {}):
            output["auto_map"] = {**output["auto_map"], "AutoProcessor": output["auto_map"]["AutoFeatureExtractor"]}
        return output

    def __call__(
        self,
        raw_audio,
        sampling_rate: int | None = None,
        padding: bool | str = True,
        return_tensors: str | None = None,
        return_attention_mask: bool | None = True,
        pad_to_multiple_of: int | None = None,
    ) -> BatchFeature:
        """
        Args:
            raw_audio: one example or a list of examples. An example is a numpy array / torch tensor / list of numbers
                of shape (L,) (mono) or (L, C) (time first, as ``soundfile.read`` returns), float or integer PCM.
                Mono is duplicated to stereo models and stereo averaged to mono models; other channel mismatches raise.
            sampling_rate (`int`, *optional*): the rate of ``raw_audio`` in Hz. Without it the audio is assumed to be
                at ``self.sampling_rate`` (with a warning, as transformers' extractors do).
            padding: True / "longest" (pad to the longest example), False / "do_not_pad".
            return_tensors: None (lists of numpy arrays), "np" or "pt".
            return_attention_mask (`bool`, defaults to True).
            pad_to_multiple_of (`int`, *optional*): round the padded length up to a multiple of this.
        """
        if sampling_rate is None:
            logger.warning_once(
                f"S4DFeatureExtractor was called without sampling_rate; assuming the audio is at the model's "
                f"{self.sampling_rate} Hz. Pass sampling_rate=... to be sure."
            )
            input_rate = self.sampling_rate
        else:
            input_rate = check_sampling_rate(sampling_rate)

        examples = [self._prepare_example(audio, name) for name, audio in _split_batch(raw_audio)]
        if input_rate != self.sampling_rate and self.rate_policy == "resample":
            examples = [resample(x, input_rate, self.sampling_rate) for x in examples]
        if self.do_normalize:
            examples = [(x - x.mean(0)) / np.sqrt(x.var(0) + 1e-7) for x in examples]
        if self.feature_size == 1:
            examples = [x[:, 0] for x in examples]

        batch = self.pad(
            BatchFeature({"input_values": [x.astype(np.float32) for x in examples]}),
            padding=padding,
            pad_to_multiple_of=pad_to_multiple_of,
            return_attention_mask=return_attention_mask,
            return_tensors=return_tensors,
        )
        if input_rate != self.sampling_rate and self.rate_policy == "rate":
            # set after tensor conversion so it stays a Python float (the model's forward(rate=...) multiplies dt)
            batch["rate"] = self.sampling_rate / input_rate
        return batch

    def _prepare_example(self, audio, name: str) -> np.ndarray:
        """One example -> finite float32 (L, feature_size), with errors naming ``name`` (e.g. "raw_audio[2]")."""
        if isinstance(audio, torch.Tensor):
            audio = audio.detach().cpu().numpy()
        if isinstance(audio, (list, tuple)):
            try:
                audio = np.asarray(audio)
            except ValueError as error:  # ragged nested lists
                raise TypeError(f"{name} must be an array of shape (length,) or (length, channels); got a ragged "
                                f"list ({error})") from None
        if not isinstance(audio, np.ndarray):
            hint = " (decode audio files first, e.g. soundfile.read, or use pipeline('audio-classification'))" \
                if isinstance(audio, (str, bytes)) else ""
            raise TypeError(f"{name} must be a numpy array, torch tensor or list of samples; got "
                            f"{type(audio).__name__}{hint}")
        audio = pcm_to_float(audio, name)
        if audio.ndim == 1:
            audio = audio[:, None]
        if audio.ndim != 2:
            raise ValueError(f"{name} must have shape (length,) or (length, channels); got {audio.shape}. For a "
                             "batch, pass a list of examples.")
        if audio.shape[0] == 0:
            raise ValueError(f"{name} is empty (shape {audio.shape}); every example needs at least one sample")
        if not np.isfinite(audio).all():
            t, c = np.argwhere(~np.isfinite(audio))[0]
            raise ValueError(f"{name} contains NaN or inf (first at sample {t}, channel {c}); audio must be finite")
        return self._match_channels(audio, name)

    def _match_channels(self, audio: np.ndarray, name: str) -> np.ndarray:
        """(L, C) -> (L, feature_size): identity, stereo -> mono (mean) or mono -> stereo (copy); anything else raises."""
        channels, wanted = audio.shape[1], self.feature_size
        if channels == wanted:
            return audio
        if wanted == 1 and channels == 2:
            return audio.mean(1, keepdims=True)
        if wanted == 2 and channels == 1:
            return np.repeat(audio, 2, axis=1)
        hint = ""
        if audio.shape[0] in (1, 2, wanted) and audio.shape[0] < channels:
            hint = " It looks channels-first (channels, length): pass its transpose."
        if wanted == 1 and audio.shape[0] < channels:
            hint += " For a batch, pass a list of 1-D arrays."
        raise ValueError(f"{name} of shape {audio.shape} is read as (length, channels) with {channels} channels, but "
                         f"this extractor produces feature_size={wanted} channel(s) (only mono <-> stereo are "
                         f"converted).{hint}")


def _split_batch(raw_audio) -> list[tuple[str, object]]:
    """A batch is a non-empty list/tuple of examples; a list of numbers (or anything else) is one example."""
    if isinstance(raw_audio, (list, tuple)):
        if len(raw_audio) == 0:
            raise ValueError("raw_audio is an empty list; pass an array of samples or a list of arrays")
        if not all(isinstance(v, (int, float, np.number)) for v in raw_audio):
            return [(f"raw_audio[{i}]", audio) for i, audio in enumerate(raw_audio)]
    return [("raw_audio", raw_audio)]


__all__ = ["S4DFeatureExtractor"]
