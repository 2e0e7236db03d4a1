"""Dataset statistics as LeRobot keeps them (meta/stats.json and the per-episode
stats/<feature>/<stat> columns): min, max, mean, std, count and quantiles q01..q99; image
features per channel, scaled to [0, 1], shaped (3, 1, 1). Values are plain lists (JSON-ready)."""

from __future__ import annotations

import numpy as np

QUANTILES = (0.01, 0.10, 0.50, 0.90, 0.99)


def _quantile_key(q: float) -> str:
    return f"q{int(round(q * 100)):02d}"


def vector_stats(x: np.ndarray) -> dict[str, list]:
    """min/max/mean/std/count and quantiles over axis 0 of (N, D) (or (N,)) values."""
    x = np.asarray(x, dtype=np.float64)
    if x.ndim == 1:
        x = x[:, None]
    out = {"min": x.min(0), "max": x.max(0), "mean": x.mean(0), "std": x.std(0)}
    out.update({_quantile_key(q): np.quantile(x, q, axis=0) for q in QUANTILES})
    res: dict[str, list] = {k: v.tolist() for k, v in out.items()}
    res["count"] = [int(len(x))]
    return res


def image_stats(frames: np.ndarray, max_frames: int = 100, max_side: int = 150) -> dict[str, list]:
    """Per-channel stats of (T, H, W, 3) uint8 frames scaled to [0, 1], each shaped (3, 1, 1)
    as LeRobot keeps them; computed on up to max_frames frames, strided down to ~max_side px."""
    idx = np.unique(np.round(np.linspace(0, len(frames) - 1, min(len(frames), max_frames)))
                    .astype(int))
    stride = max(1, max(frames.shape[1:3]) // max_side)
    px = frames[idx, ::stride, ::stride].reshape(-1, 3).astype(np.float64) / 255.0
    stats = {"min": px.min(0), "max": px.max(0), "mean": px.mean(0), "std": px.std(0)}
    stats.update({_quantile_key(q): np.quantile(px, q, axis=0) for q in QUANTILES})
    res: dict[str, list] = {k: v.reshape(3, 1, 1).tolist() for k, v in stats.items()}
    res["count"] = [int(len(idx))]
    return res


def aggregate_stats(parts: list[dict[str, list]]) -> dict[str, list]:
    """Pool per-episode stats: exact min/max/mean/std, count-weighted mean of the quantiles."""
    counts = np.array([p["count"][0] for p in parts], dtype=np.float64)
    total = counts.sum()
    w = counts.reshape((-1,) + (1,) * np.asarray(parts[0]["mean"]).ndim) / total
    means = np.stack([np.asarray(p["mean"]) for p in parts])
    mean = (w * means).sum(0)
    var = (w * (np.stack([np.asarray(p["std"]) for p in parts]) ** 2
                + (means - mean) ** 2)).sum(0)
    out = {"min": np.min([p["min"] for p in parts], axis=0).tolist(),
           "max": np.max([p["max"] for p in parts], axis=0).tolist(),
           "mean": mean.tolist(), "std": np.sqrt(var).tolist(), "count": [int(total)]}
    for q in QUANTILES:
        key = _quantile_key(q)
        out[key] = (w * np.stack([np.asarray(p[key]) for p in parts])).sum(0).tolist()
    return out
