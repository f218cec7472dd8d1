"""Time-series processor for S4D: (L, C) arrays, lists of them and pandas DataFrames -> ``input_values`` (B, L, C).

What it does, in order, per example:
1. read the example as float64 (L, C) (rows = time steps, columns = channels; a DataFrame is reordered to the
   channel names seen at :meth:`fit` time);
2. optionally, a per-series transform of a one-channel series (``downsample``, ``series_features``; see
   :func:`transform_series`), the one the model was trained on, so that a user passes the series as recorded;
3. apply the NaN policy (``nan_policy``): "error" (default) raises a ValueError naming the example, time steps and
   channels; "impute" fills missing values and masks their time steps (see below), and refuses an
   example that holds only NaN (nothing observed; a NaN at every step with some channel observed stays allowed: it is
   how a stream's chunk looks while one sensor is down, see ``s4d_hf.streaming``). inf is always an error;
4. normalise each channel with the statistics stored by :meth:`fit` (``mean``/``std``, saved in
   ``preprocessor_config.json``): (x - mean) / std. Fixed statistics, never per-example ones, so that a chunk of a
   stream is normalised exactly as the whole series (``s4d_hf.streaming``) and inference matches training;
5. pad to the longest example (right side) with ``attention_mask`` 1 = observed step, 0 = padding or imputed step.

Masked imputation: a missing value is set to 0 *after* normalisation (the training mean) and its time step gets
``attention_mask`` 0, so the model zeroes that step at every SSM input and leaves it out of the pooled prediction.
A time step with any missing channel is masked as a whole.

Saved with ``save_pretrained`` as ``preprocessor_config.json`` and loaded with ``AutoFeatureExtractor`` (resolved by
its ``feature_extractor_type``). This module imports nothing from s4d_hf (remote code works), and pandas only when
given a DataFrame.
"""

import numpy as np
import torch
from transformers import BatchFeature, SequenceFeatureExtractor


NAN_POLICIES = ("error", "impute")
SERIES_FEATURES = ("raw", "log", "standardized", "log_rms")


def transform_series(x: np.ndarray, downsample: int = 1, series_features=None, log_floor: float = 1e-5) -> np.ndarray:
    """A per-series transform, the same in training (``s4d_hf.training``) and in :class:`S4DTimeSeriesProcessor`.

    x: (L, C) float. ``downsample``: average non-overlapping windows of this many steps, (L, C) -> (ceil(L / k), C)
    (the last window may be shorter). ``series_features`` (None: x unchanged): channels computed from a one-channel
    series (C = 1) after downsampling, (L, 1) -> (L, len(series_features)), one per name, in the order given:

    - "raw": the series as given;
    - "log": signed log, sign(x) * log1p(|x| / log_floor): compresses several decades of amplitude into one range
      while keeping the waveform's shape (``log_floor``: the value below which it is about linear);
    - "standardized": the series minus its own mean, over its own standard deviation (its shape without its scale);
    - "log_rms": log(rms(x) + log_floor) of the whole series, repeated at every step (its scale without its shape).

    "standardized" and "log_rms" use the whole series: a model trained on them cannot stream chunk by chunk.
    """
    x = np.asarray(x, dtype=np.float64)
    if downsample > 1:
        starts = np.arange(0, len(x), downsample)
        x = np.add.reduceat(x, starts, axis=0) / np.diff(np.append(starts, len(x)))[:, None]
    if not series_features:
        return x
    x = x[:, 0]
    channels = []
    for name in series_features:
        if name == "raw":
            channels.append(x)
        elif name == "log":
            channels.append(np.sign(x) * np.log1p(np.abs(x) / log_floor))
        elif name == "standardized":
            channels.append((x - x.mean()) / max(float(x.std()), 1e-8))
        elif name == "log_rms":
            channels.append(np.full_like(x, np.log(np.sqrt(np.mean(x ** 2)) + log_floor)))
        else:
            raise ValueError(f"series_features: unknown name {name!r}; expected names among {SERIES_FEATURES}")
    return np.stack(channels, axis=1)


class S4DTimeSeriesProcessor(SequenceFeatureExtractor):
    r"""
    Args:
        feature_size (`int`, defaults to 1): channels C (the model's ``config.input_dim``).
        mean (`list[float]`, *optional*): per-channel training mean (set by :meth:`fit`). None: no normalisation.
        std (`list[float]`, *optional*): per-channel training standard deviation (set by :meth:`fit`).
        nan_policy (`str`, defaults to "error"): "error" or "impute" (masked imputation, see the module docstring).
        channel_names (`list[str]`, *optional*): DataFrame column names, in model channel order (set by :meth:`fit`
            when fitted on DataFrames); DataFrames given later are reordered by name.
        padding_value (`float`, defaults to 0.0).
        downsample (`int`, defaults to 1): average non-overlapping windows of this many steps first
            (:func:`transform_series`).
        series_features (`list[str]`, *optional*): names among ``SERIES_FEATURES``; the input is then a one-channel
            series and the model's ``feature_size`` channels are computed from it (:func:`transform_series`).
        log_floor (`float`, defaults to 1e-5): the scale of the "log" and "log_rms" features.
    """

    model_input_names = ["input_values", "attention_mask"]

    def __init__(
        self,
        feature_size: int = 1,
        mean: list[float] | None = None,
        std: list[float] | None = None,
        nan_policy: str = "error",
        channel_names: list[str] | None = None,
        padding_value: float = 0.0,
        downsample: int = 1,
        series_features: list[str] | None = None,
        log_floor: float = 1e-5,
        **kwargs,
    ):
        if isinstance(feature_size, bool) or not isinstance(feature_size, int) or feature_size < 1:
            raise ValueError(f"feature_size must be a positive integer (the model's input_dim); got {feature_size!r}")
        if nan_policy not in NAN_POLICIES:
            raise ValueError(f"nan_policy must be one of {NAN_POLICIES}; got {nan_policy!r}")
        kwargs.pop("sampling_rate", None)  # time series have no fixed rate; the base class still stores the field
        super().__init__(feature_size=feature_size, sampling_rate=None, padding_value=padding_value, **kwargs)
        self.nan_policy = nan_policy
        self.mean, self.std = self._check_statistics(mean, std)
        if channel_names is not None:
            channel_names = [str(c) for c in channel_names]
            if len(channel_names) != feature_size:
                raise ValueError(f"channel_names must name feature_size={feature_size} channels; got {channel_names}")
        self.channel_names = channel_names
        self._check_series_transform(downsample, series_features, log_floor)

    def _check_series_transform(self, downsample, series_features, log_floor):
        if isinstance(downsample, bool) or not isinstance(downsample, int) or downsample < 1:
            raise ValueError(f"downsample must be a positive integer; got {downsample!r}")
        if isinstance(log_floor, bool) or not isinstance(log_floor, (int, float)) or not 0 < log_floor < np.inf:
            raise ValueError(f"log_floor must be a positive number; got {log_floor!r}")
        if series_features is not None:
            series_features = [str(name) for name in series_features]
            unknown = [name for name in series_features if name not in SERIES_FEATURES]
            if not series_features or unknown or len(set(series_features)) != len(series_features):
                raise ValueError(f"series_features must be distinct names among {SERIES_FEATURES}; got "
                                 f"{series_features}")
            if len(series_features) != self.feature_size:
                raise ValueError(f"series_features makes {len(series_features)} channel(s) but feature_size is "
                                 f"{self.feature_size} (the model's input_dim)")
            if self.nan_policy != "error":
                raise ValueError("series_features are computed from the whole series, which cannot hold missing "
                                 "values: use nan_policy='error'")
            if self.channel_names is not None:
                raise ValueError("channel_names names the model's channels; with series_features the input is one "
                                 "channel, so leave channel_names unset")
        self.downsample, self.series_features, self.log_floor = downsample, series_features, float(log_floor)

    @property
    def input_channels(self) -> int:
        """Channels of the series a user passes: 1 with ``series_features``, else ``feature_size``."""
        return 1 if self.series_features else self.feature_size

    def transform(self, x: np.ndarray) -> np.ndarray:
        """(L, input_channels) float64 -> (L', feature_size): the per-series transform (:func:`transform_series`),
        before normalisation."""
        if self.downsample == 1 and not self.series_features:
            return x
        return transform_series(x, self.downsample, self.series_features, self.log_floor)

    def _check_statistics(self, mean, std):
        if (mean is None) != (std is None):
            raise ValueError(f"mean and std must be given together (or neither); got mean={mean}, std={std}")
        if mean is None:
            return None, None
        stats = {}
        for name, value in (("mean", mean), ("std", std)):
            array = np.asarray(value, dtype=np.float64).reshape(-1)
            if array.shape != (self.feature_size,) or not np.isfinite(array).all():
                raise ValueError(f"{name} must be {self.feature_size} finite numbers (one per channel); got {value}")
            stats[name] = [float(v) for v in array]  # plain floats: JSON-serialisable
        if min(stats["std"]) <= 0:
            raise ValueError(f"std must be positive for every channel; got {stats['std']}")
        return stats["mean"], stats["std"]

    # ------------------------------------------------------------------------------------------------------------
    # Statistics
    # ------------------------------------------------------------------------------------------------------------

    def fit(self, sequences) -> "S4DTimeSeriesProcessor":
        """Store the per-channel mean and standard deviation of ``sequences`` (every time step of every example,
        missing values excluded under nan_policy="impute"). A constant channel gets std 1 (it is only centred).

        ``sequences`` takes the same forms as ``__call__``. Fitting on DataFrames also stores their column names.
        Returns self.
        """
        examples = self._read_examples(sequences, storing_names=True)
        values = np.concatenate([self.transform(x) for x, _ in examples], axis=0)  # (sum L, C), NaN where missing
        if np.isnan(values).all(axis=0).any():
            channel = int(np.flatnonzero(np.isnan(values).all(axis=0))[0])
            raise ValueError(f"sequences: channel {channel} has no observed value; cannot fit its mean and std")
        mean = np.nanmean(values, axis=0)
        std = np.nanstd(values, axis=0)
        std = np.where(std > 0, std, 1.0)
        self.mean, self.std = [float(v) for v in mean], [float(v) for v in std]
        return self

    # ------------------------------------------------------------------------------------------------------------
    # Processing
    # ------------------------------------------------------------------------------------------------------------

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
        sequences,
        return_tensors: str | None = None,
        padding: bool | str = True,
        return_attention_mask: bool | None = True,
    ) -> BatchFeature:
        """
        Args:
            sequences: one example or a list of examples. An example is an array / tensor of shape (L,) (one
                channel) or (L, C), a pandas DataFrame (rows = time, columns = channels) or a list of numbers (L,).
                A 3-D array (B, L, C) is a batch of equal-length examples.
            return_tensors: None (numpy arrays), "np" or "pt".
            padding: True / "longest" pads to the longest example; False requires equal lengths.
            return_attention_mask (`bool`, defaults to True): needed whenever lengths differ or values are imputed.

        Returns:
            BatchFeature with ``input_values`` (B, L, C) float32 and ``attention_mask`` (B, L) int32.
        """
        if padding not in (True, False, "longest", "do_not_pad"):
            raise ValueError(f"padding must be True/'longest' or False/'do_not_pad' (no maximum length); got {padding!r}")
        examples = [(self.transform(x), name) for x, name in self._read_examples(sequences)]
        for x, name in examples:  # (fit still accepts such examples: they add nothing to the statistics)
            if np.isnan(x).all():  # impute would mask every step: not one observed value for the model
                raise ValueError(f"{name} (shape {x.shape}) holds only NaN: nan_policy='impute' needs at least one "
                                 "observed value")
        lengths = [len(x) for x, _ in examples]
        if padding in (False, "do_not_pad") and len(set(lengths)) > 1:
            raise ValueError(f"sequences have different lengths {lengths}; use padding=True")
        batch, length = len(examples), max(lengths)
        values = np.full((batch, length, self.feature_size), self.padding_value, dtype=np.float32)
        mask = np.zeros((batch, length), dtype=np.int32)
        for i, (x, name) in enumerate(examples):
            missing = np.isnan(x)
            if self.mean is not None:
                x = (x - np.asarray(self.mean)) / np.asarray(self.std)
            values[i, : len(x)] = np.where(missing, 0.0, x)
            mask[i, : len(x)] = ~missing.any(axis=1)
        if not return_attention_mask and (mask.sum(1) != np.asarray(lengths)).any():
            reason = "values were imputed" if any(np.isnan(x).any() for x, _ in examples) else "lengths differ"
            raise ValueError(f"return_attention_mask=False but {reason}: the mask is what hides those time steps "
                             "from the model")
        data = {"input_values": values}
        if return_attention_mask:
            data["attention_mask"] = mask
        return BatchFeature(data, tensor_type=return_tensors)

    def _read_examples(self, sequences, storing_names: bool = False) -> list[tuple[np.ndarray, str]]:
        """sequences -> [(float64 (L, C) with NaN where missing, name for errors)], NaN/inf policy applied."""
        if _is_dataframe(sequences) or isinstance(sequences, (np.ndarray, torch.Tensor)):
            array_3d = not _is_dataframe(sequences) and sequences.ndim == 3
            if array_3d and sequences.shape[0] == 0:
                raise ValueError(f"sequences has shape {tuple(sequences.shape)}: batch size 0; pass at least one "
                                 "series")
            items = [(f"sequences[{i}]", x) for i, x in enumerate(sequences)] if array_3d else [("sequences", sequences)]
        elif isinstance(sequences, (list, tuple)):
            if len(sequences) == 0:
                raise ValueError("sequences is an empty list; pass an (L, C) array, a DataFrame or a list of them")
            if all(isinstance(v, (int, float, np.number)) or v is None for v in sequences):
                items = [("sequences", sequences)]  # a list of numbers is one univariate series
            else:
                items = [(f"sequences[{i}]", x) for i, x in enumerate(sequences)]
        else:
            raise TypeError("sequences must be an (L, C) or (L,) array/tensor, a pandas DataFrame, or a list of "
                            f"them; got {type(sequences).__name__}")

        if storing_names:
            frames = [x for _, x in items if _is_dataframe(x)]
            if frames and len(frames[0].columns) == self.feature_size and not self.series_features:
                self.channel_names = [str(c) for c in frames[0].columns]
        return [(self._read_example(x, name), name) for name, x in items]

    def _read_example(self, example, name: str) -> np.ndarray:
        if _is_dataframe(example):
            example = self._dataframe_values(example, name)
        elif isinstance(example, torch.Tensor):
            example = example.detach().cpu().numpy()
        elif isinstance(example, (list, tuple)):
            try:
                example = np.asarray([np.nan if v is None else v for v in example] if all(
                    v is None or isinstance(v, (int, float, np.number)) for v in example) else example)
            except ValueError as error:
                raise TypeError(f"{name} must be an array of shape (length, channels); got a ragged list ({error})") \
                    from None
        if not isinstance(example, np.ndarray):
            raise TypeError(f"{name} must be an array, tensor, DataFrame or list of numbers; got "
                            f"{type(example).__name__}")
        if example.dtype.kind not in "fiu":
            raise TypeError(f"{name} must hold real numbers (float or int); got dtype {example.dtype}")
        x = example.astype(np.float64)
        if x.ndim == 1:
            x = x[:, None]
        if x.ndim != 2:
            raise ValueError(f"{name} must have shape (length,) or (length, channels) (a batch: a list of those or "
                             f"an array (batch, length, channels)); got {x.shape}")
        if x.shape[0] == 0:
            raise ValueError(f"{name} is empty (shape {x.shape}); every example needs at least one time step")
        if x.shape[1] != self.input_channels:
            expected = (f"one channel (the series as recorded: series_features computes the model's {self.feature_size}"
                        " channels from it)" if self.series_features else f"feature_size={self.feature_size}")
            raise ValueError(f"{name} has {x.shape[1]} channel(s) (last axis, shape {x.shape}); this processor expects "
                             f"{expected}. Rows are time steps, columns are channels.")
        if np.isinf(x).any():
            t, c = np.argwhere(np.isinf(x))[0]
            raise ValueError(f"{name} contains inf at time step {t}, channel {c}; values must be finite")
        if np.isnan(x).any() and self.nan_policy == "error":
            steps, channels = np.nonzero(np.isnan(x))
            raise ValueError(
                f"{name} contains {len(steps)} NaN value(s) (time steps {sorted(set(steps.tolist()))[:10]}, channels "
                f"{sorted(set(channels.tolist()))}). Clean them, or use nan_policy='impute' to fill and mask them."
            )
        return x

    def _dataframe_values(self, frame, name: str) -> np.ndarray:
        """Columns in the order of ``channel_names`` when known; non-numeric columns raise TypeError."""
        if self.channel_names is not None:
            columns = [str(c) for c in frame.columns]
            missing = [c for c in self.channel_names if c not in columns]
            if missing:
                raise ValueError(f"{name} lacks the column(s) {missing}; the processor was fitted on columns "
                                 f"{self.channel_names}")
            frame = frame.iloc[:, [columns.index(c) for c in self.channel_names]]
        for column, dtype in frame.dtypes.items():
            if dtype.kind not in "fiu":
                raise TypeError(f"{name} column {column!r} has dtype {dtype}; every column must hold real numbers")
        return frame.to_numpy(dtype=np.float64, na_value=np.nan)


def _is_dataframe(value) -> bool:
    return type(value).__module__.startswith("pandas") and type(value).__name__ == "DataFrame"


__all__ = ["S4DTimeSeriesProcessor", "transform_series"]
