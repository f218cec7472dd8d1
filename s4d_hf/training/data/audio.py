"""Reading audio files, for every package-side reader (user folders, the recorded digits of ``spoken-digits-real``).

:func:`read_audio` decodes a file with soundfile (WAV, FLAC, OGG); 16-bit PCM WAV files are also read without it,
by :func:`read_wav_bytes`, which the built-in speech synthesis uses on the synthesisers' output too.
(``s4d_hf/pipelines.py`` has its own reader: it travels alone as remote code.)
"""

from __future__ import annotations

import os
import struct
from pathlib import Path

import numpy as np


def read_wav_bytes(data: bytes, source: str = "<bytes>") -> tuple[int, np.ndarray]:
    """16-bit PCM mono WAV bytes -> (sampling rate, float32 samples in [-1, 1)).

    Reads the chunks by hand: espeak-ng --stdout cannot seek back on a pipe, so its RIFF and data sizes are
    placeholders (0x7ffff000); the data chunk is read to the end of the bytes instead.
    """
    if data[:4] != b"RIFF" or data[8:12] != b"WAVE":
        raise ValueError(f"{source}: not a WAV file")
    pos, rate, fmt = 12, None, None
    while pos + 8 <= len(data):
        chunk, size = data[pos:pos + 4], struct.unpack("<I", data[pos + 4:pos + 8])[0]
        if chunk == b"fmt ":
            fmt = struct.unpack("<HHIIHH", data[pos + 8:pos + 24])
            rate = fmt[2]
        elif chunk == b"data":
            if fmt is None or fmt[0] != 1 or fmt[1] != 1 or fmt[5] != 16:
                raise ValueError(f"{source}: expected 16-bit PCM mono, got format/channels/bits "
                                 f"{fmt and (fmt[0], fmt[1], fmt[5])}")
            samples = data[pos + 8:min(len(data), pos + 8 + size)]
            samples = samples[:len(samples) // 2 * 2]
            return rate, np.frombuffer(samples, "<i2").astype(np.float32) / 32768.0
        pos += 8 + size + (size & 1)
    raise ValueError(f"{source}: no data chunk")


def read_audio(path: str | os.PathLike) -> tuple[np.ndarray, int]:
    """An audio file -> ((L, C) float32 samples in [-1, 1], sampling rate).

    With soundfile installed every format it decodes (WAV, FLAC, OGG); without it, 16-bit PCM mono WAV files only
    (the same samples: int16 / 32768), anything else raises ImportError naming the extra to install.
    """
    try:
        import soundfile  # optional: pip install 's4d-hf[audio]'
    except ImportError:
        soundfile = None
    if soundfile is not None:
        data, rate = soundfile.read(str(path), dtype="float32", always_2d=True)
        return data, int(rate)
    data = Path(path).read_bytes()
    if data[:4] != b"RIFF":
        raise ImportError(f"reading {Path(path).name} needs soundfile: pip install 's4d-hf[audio]'")
    rate, samples = read_wav_bytes(data, str(path))
    return samples[:, None], int(rate)
