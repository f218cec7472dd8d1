"""Same-split baselines for model cards: the usual strong classic method for each kind of data.

Each baseline takes the `DatasetSplits` a checkpoint was trained on (train + eval for fitting and model
selection, test for the number) and returns ``{"name": ..., metric: value}`` with the metric names the cards use:

* time-series classification: 1-nearest-neighbour, Euclidean distance on series resampled to a common length
  (the standard UCR reference classifier);
* image classification: multinomial logistic regression on the pixels;
* audio classification: multinomial logistic regression on log-power spectrogram band energies;
* time-series regression: ridge regression on the raw values and their first differences, the ridge penalty
  chosen on the eval split;
* causal LM: an interpolated byte trigram model (bits per byte on the test text).

All are plain numpy/torch so that they run wherever the package runs.
"""

import dataclasses
import math

import numpy as np
import torch

from ..processing.timeseries_processing_s4d import transform_series
from .data.core import is_lazy


def _stack(examples, length: int | None = None) -> np.ndarray:
    """(N, length·C) matrix of series linearly resampled to ``length`` (the longest series when None)."""
    seqs = [np.asarray(e["input_values"], dtype=np.float64) for e in examples]
    seqs = [s[:, None] if s.ndim == 1 else s for s in seqs]
    length = length or max(len(s) for s in seqs)
    out = np.empty((len(seqs), length * seqs[0].shape[1]))
    grid = np.linspace(0.0, 1.0, length)
    for i, s in enumerate(seqs):
        src = np.linspace(0.0, 1.0, len(s))
        out[i] = np.stack([np.interp(grid, src, s[:, c]) for c in range(s.shape[1])], 1).reshape(-1)
    return out


def _labels(examples) -> np.ndarray:
    return np.asarray([e["labels"] for e in examples])


def nearest_neighbour(splits) -> dict:
    """1-NN, Euclidean, on series resampled to the longest training length. Metric: accuracy.

    The series as the splits hold them, pooled by the splits' ``series_transform`` downsample when there is one
    (its per-series features are the model's inputs, not the classic method's)."""
    downsample = (getattr(splits, "series_transform", None) or {}).get("downsample", 1)
    if downsample > 1:
        splits = dataclasses.replace(splits, **{name: [
            {**e, "input_values": transform_series(e["input_values"], downsample)} for e in getattr(splits, name)]
            for name in ("train", "eval", "test")})
    length = max(len(e["input_values"]) for e in splits.train)
    train = _stack(splits.train + splits.eval, length)
    test = _stack(splits.test, length)
    y_train = _labels(splits.train + splits.eval)
    d = (test**2).sum(1)[:, None] - 2 * test @ train.T + (train**2).sum(1)[None]
    pred = y_train[d.argmin(1)]
    return {"name": "1-NN (Euclidean, resampled)", "accuracy": float((pred == _labels(splits.test)).mean())}


def _softmax_regression(x_train, y_train, x_eval, y_eval, x_test, n_classes, epochs=100, seed=0):
    """Full-batch L-BFGS multinomial logistic regression; the L2 penalty is picked on the eval split."""
    mean, std = x_train.mean(0), x_train.std(0) + 1e-6
    tx = [torch.as_tensor((x - mean) / std, dtype=torch.float32) for x in (x_train, x_eval, x_test)]
    ty = torch.as_tensor(y_train, dtype=torch.long)
    best = None
    for penalty in (1e-4, 1e-3, 1e-2):
        torch.manual_seed(seed)
        linear = torch.nn.Linear(tx[0].shape[1], n_classes)
        opt = torch.optim.LBFGS(linear.parameters(), max_iter=epochs, history_size=20, line_search_fn="strong_wolfe")

        def closure():
            opt.zero_grad()
            loss = torch.nn.functional.cross_entropy(linear(tx[0]), ty) + penalty * linear.weight.pow(2).sum()
            loss.backward()
            return loss

        opt.step(closure)
        with torch.no_grad():
            eval_acc = (linear(tx[1]).argmax(1).numpy() == y_eval).mean() if len(y_eval) else 0.0
            if best is None or eval_acc > best[0]:
                best = (eval_acc, linear(tx[2]).argmax(1).numpy())
    return best[1]


def logistic_regression(splits) -> dict:
    """Multinomial logistic regression on the raw (flattened) inputs. Metric: accuracy."""
    length = max(len(e["input_values"]) for e in splits.train)
    x = [_stack(s, length) for s in (splits.train, splits.eval, splits.test)]
    n_classes = len(splits.id2label) if splits.id2label else int(_labels(splits.train).max()) + 1
    pred = _softmax_regression(x[0], _labels(splits.train), x[1], _labels(splits.eval), x[2], n_classes)
    return {"name": "logistic regression on pixels", "accuracy": float((pred == _labels(splits.test)).mean())}


def _band_energies(examples, frame=256, hop=128, bands=32) -> np.ndarray:
    """Log energies of ``bands`` linear frequency bands per frame, averaged into 4 time segments."""
    feats = []
    for e in examples:
        wave = np.asarray(e["input_values"], dtype=np.float64).reshape(-1)
        wave = np.pad(wave, (0, max(0, frame + 3 * hop - len(wave))))  # at least 4 frames
        n = 1 + (len(wave) - frame) // hop
        frames = np.stack([wave[i * hop : i * hop + frame] for i in range(n)]) * np.hanning(frame)
        power = np.abs(np.fft.rfft(frames, axis=1)) ** 2
        banded = np.log(np.stack([b.sum(1) for b in np.array_split(power, bands, axis=1)], 1) + 1e-8)
        feats.append(np.concatenate([seg.mean(0) for seg in np.array_split(banded, 4, axis=0)]))
    return np.stack(feats)


def spectrogram_logistic_regression(splits) -> dict:
    """Logistic regression on log band energies of a short-time spectrogram. Metric: accuracy."""
    x = [_band_energies(s) if s else np.zeros((0, 128)) for s in (splits.train, splits.eval, splits.test)]
    n_classes = len(splits.id2label) if splits.id2label else int(_labels(splits.train).max()) + 1
    pred = _softmax_regression(x[0], _labels(splits.train), x[1], _labels(splits.eval), x[2], n_classes)
    return {"name": "logistic regression on log spectrogram bands",
            "accuracy": float((pred == _labels(splits.test)).mean())}


def ridge_regression(splits) -> dict:
    """Ridge on [x, Δx] (series resampled to the longest training length); penalty picked on eval. Metric: rmse."""
    length = max(len(e["input_values"]) for e in splits.train)

    def features(examples):
        x = _stack(examples, length)
        return np.concatenate([x, np.diff(x, axis=1)], 1)

    x_train, x_eval, x_test = features(splits.train), features(splits.eval), features(splits.test)
    y_train, y_eval, y_test = (_labels(s).astype(np.float64).reshape(len(s), -1)
                               for s in (splits.train, splits.eval, splits.test))
    mean, std, y_mean = x_train.mean(0), x_train.std(0) + 1e-8, y_train.mean(0)

    def fit(x, y, alpha):
        z = (x - mean) / std
        w = np.linalg.solve(z.T @ z + alpha * np.eye(z.shape[1]), z.T @ (y - y_mean))
        return lambda q: ((q - mean) / std) @ w + y_mean

    alphas = 10.0 ** np.arange(-4, 5)
    scores = [np.sqrt(((fit(x_train, y_train, a)(x_eval) - y_eval) ** 2).mean()) for a in alphas]
    best = alphas[int(np.argmin(scores))]
    predict = fit(np.concatenate([x_train, x_eval]), np.concatenate([y_train, y_eval]), best)
    rmse = float(np.sqrt(((predict(x_test) - y_test) ** 2).mean()))
    return {"name": f"ridge regression on values and differences (alpha={best:g})", "rmse": rmse}


def trigram(splits) -> dict:
    """Interpolated byte trigram (weights picked on eval). Metric: bits per byte on the test windows."""
    def ids(examples):
        return np.concatenate([np.asarray(e["input_ids"], dtype=np.int64) for e in examples]) if examples else np.zeros(0, np.int64)

    train, evals, test = ids(splits.train), ids(splits.eval), ids(splits.test)
    V = int(max(train.max(), evals.max() if len(evals) else 0, test.max())) + 1
    uni = np.bincount(train, minlength=V) + 1.0
    uni /= uni.sum()
    bi, tri = {}, {}
    for a, b, c in zip(train[:-2], train[1:-1], train[2:]):
        bi.setdefault(b, {}).setdefault(c, 0)
        bi[b][c] += 1
        tri.setdefault((a, b), {}).setdefault(c, 0)
        tri[(a, b)][c] += 1

    def prob(a, b, c, w):
        pb = bi.get(b, {})
        pt = tri.get((a, b), {})
        p2 = pb.get(c, 0) / max(1, sum(pb.values())) if pb else 0.0
        p3 = pt.get(c, 0) / max(1, sum(pt.values())) if pt else 0.0
        return w[0] * uni[c] + w[1] * p2 + w[2] * p3

    def bits(seq, w):
        return -np.mean([math.log2(prob(a, b, c, w)) for a, b, c in zip(seq[:-2], seq[1:-1], seq[2:])])

    candidates = [(0.1, 0.3, 0.6), (0.05, 0.35, 0.6), (0.1, 0.5, 0.4), (0.2, 0.4, 0.4), (0.02, 0.28, 0.7)]
    tune = evals[:20000] if len(evals) else train[-20000:]
    w = min(candidates, key=lambda c: bits(tune, c))
    return {"name": f"interpolated byte trigram (weights {w})", "bits_per_byte": float(bits(test, w))}


BASELINES = {
    "time-series-classification": nearest_neighbour,
    "image-classification": logistic_regression,
    "audio-classification": spectrogram_logistic_regression,
    "time-series-regression": ridge_regression,
    "causal-lm": trigram,
}


BASELINE_SEED = 0  # the draw of a lazily augmented split (spoken-digits' train split augments clips on access)


def run_baseline(task: str, splits) -> dict:
    """Fit and score the task's baseline, with torch's generator seeded by BASELINE_SEED and restored afterwards:
    lazy splits are read once under that seed, so an augmented training split gives the same baseline every time,
    and the caller's random state is left as it was."""
    if task not in BASELINES:
        raise ValueError(f"no baseline for task {task!r}; expected one of {', '.join(BASELINES)}")
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(BASELINE_SEED)
        if any(is_lazy(getattr(splits, name)) for name in ("train", "eval", "test")):  # the baselines stack splits
            splits = dataclasses.replace(splits, train=list(splits.train), eval=list(splits.eval),
                                         test=list(splits.test))
        return BASELINES[task](splits)
