"""Separate handwriting from printed content on a binarised slip.

Stage 1 removes ruled, dashed and box lines (gap closing then long horizontal/vertical
morphological openings, as in table-form line removal) and bridges handwriting strokes that
crossed them.  Stage 2 classifies the remaining connected components as print or
handwriting from shape, stroke-width and alignment features: printed glyphs share exact
baselines, cap heights and stroke widths, handwriting does not.  The classifier is a small
multi-layer perceptron fitted on generated slips (``python -m cv.separate --train``) and
stored as plain arrays in ``cv/models/separator.npz``; without it a conservative rule set
is used.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import sys
import tempfile
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path

import cv2
import numpy as np
from numpy.typing import NDArray

__all__ = [
    "FEATURE_NAMES",
    "Separator",
    "component_features",
    "default_separator",
    "remove_lines",
    "separate",
]

MODEL_PATH = Path(__file__).resolve().parent / "models" / "separator.npz"
FORMAT_VERSION = 1

FEATURE_NAMES = (
    "log_area",
    "log_width",
    "log_height",
    "fill",
    "log_aspect",
    "stroke_mean",
    "stroke_cv",
    "log_rel_height",
    "log_rel_stroke",
    "same_bottom",
    "same_top",
    "same_bottom_height",
    "darkness",
    "darkness_std",
    "rel_darkness",
    "neighbours",
    "log_stroke_per_height",
    "boundary_ratio",
)


# --------------------------------------------------------------------------- lines


def remove_lines(
    ink: NDArray[np.bool_],
    *,
    min_length: int = 0,
    max_gap: int = 0,
    max_thickness: int = 0,
) -> tuple[NDArray[np.bool_], NDArray[np.bool_]]:
    """Remove long horizontal and vertical lines (solid or dashed), keep strokes crossing them.

    Parameters
    ----------
    ink : (rows, cols) bool
    min_length : int
        Shortest line (px) removed; 0 = automatic: max(40, shorter side / 12, 20 stroke
        widths), so long handwritten strokes (t-bars, underlines) of a plain crop survive.
    max_gap : int
        Dash gaps up to this (px) are closed before the opening; 0 = automatic
        (shorter side / 100, at least 3).
    max_thickness : int
        Line candidates thicker than this (px) are handwriting runs joined by the gap
        closing, not lines; 0 = automatic (shorter side / 90, at least 4).

    Returns
    -------
    (kept, lines) : two (rows, cols) bool arrays: the ink without lines (strokes bridged
    across removed lines) and the removed line pixels.
    """
    rows, cols = ink.shape
    short = min(rows, cols)
    u8 = ink.astype(np.uint8)
    if min_length <= 0:
        # Stroke width ~ 2 * area / boundary length (cheap; print and hand mixed).
        n_ink = int(u8.sum())
        edge = int((u8 & (1 - cv2.erode(u8, np.ones((3, 3), np.uint8)))).sum())
        sw = 2.0 * n_ink / max(edge, 1)
        min_length = int(max(40, short // 12, 20 * sw))
    if max_gap <= 0:
        max_gap = max(3, short // 100)
    if max_thickness <= 0:
        max_thickness = max(4, short // 90)
    found = []
    for horizontal in (True, False):
        gk = (max_gap + 1, 1) if horizontal else (1, max_gap + 1)
        lk = (min_length, 1) if horizontal else (1, min_length)
        closed = cv2.morphologyEx(
            u8, cv2.MORPH_CLOSE, cv2.getStructuringElement(cv2.MORPH_RECT, gk)
        )
        runs = cv2.morphologyEx(
            closed, cv2.MORPH_OPEN, cv2.getStructuringElement(cv2.MORPH_RECT, lk)
        )
        if not runs.any():
            found.append(np.zeros_like(u8))
            continue
        # A line is thin across its direction; stacked runs (a word whose gaps the closing
        # joined) are not: whatever survives an opening across the line direction longer
        # than max_thickness is such a stack and is dropped with its surroundings.
        ak = (1, max_thickness + 1) if horizontal else (max_thickness + 1, 1)
        thick = cv2.morphologyEx(
            runs, cv2.MORPH_OPEN, cv2.getStructuringElement(cv2.MORPH_RECT, ak)
        )
        if thick.any():
            grow = (
                (min_length, 2 * max_thickness + 1)
                if horizontal
                else (2 * max_thickness + 1, min_length)
            )
            runs &= 1 - cv2.dilate(thick, cv2.getStructuringElement(cv2.MORPH_RECT, grow))
        found.append(runs & u8)
    h, v = found
    lines = h | v
    if not lines.any():
        return ink.copy(), np.zeros(ink.shape, bool)
    # Lines are often a pixel thicker at their edges than the opening catches.
    lines_d = cv2.dilate(lines, np.ones((3, 3), np.uint8)) & u8
    kept = u8 & (1 - lines_d)
    # Repair: where a stroke continues on both sides of a removed horizontal line bridge it
    # with a vertical closing restricted to the removed pixels, likewise for vertical lines.
    k = 3 + 2 * max_thickness
    bridge_v = cv2.morphologyEx(
        kept, cv2.MORPH_CLOSE, cv2.getStructuringElement(cv2.MORPH_RECT, (1, k))
    )
    bridge_h = cv2.morphologyEx(
        kept, cv2.MORPH_CLOSE, cv2.getStructuringElement(cv2.MORPH_RECT, (k, 1))
    )
    repaired = kept | (
        (bridge_v & cv2.dilate(h, np.ones((3, 3), np.uint8)))
        | (bridge_h & cv2.dilate(v, np.ones((3, 3), np.uint8)))
    )
    repaired &= u8
    return repaired.astype(bool), lines_d.astype(bool)


# --------------------------------------------------------------------------- features


def _near_counts(keys: NDArray[np.int64], offsets: list[int]) -> NDArray[np.float64]:
    """For each key, how many keys (itself excluded) equal key + o for some o in offsets."""
    order = np.sort(keys)
    out = np.zeros(keys.shape[0], dtype=np.float64)
    for o in offsets:
        q = keys + o
        out += np.searchsorted(order, q, side="right") - np.searchsorted(order, q, side="left")
    return out - 1.0


def component_features(
    flat: NDArray[np.uint8],
    labels: NDArray[np.int32],
    stats: NDArray[np.int32],
) -> NDArray[np.float32]:
    """Per-component features for the print/handwriting classifier.

    Parameters
    ----------
    flat : (rows, cols) uint8
        Flattened greyscale (paper ~255).
    labels : (rows, cols) int32
        Connected-component labels, 0 = background (from ``cv2.connectedComponentsWithStats``).
    stats : (n, 5) int32
        The matching statistics; row 0 is the background.

    Returns
    -------
    (n - 1, len(FEATURE_NAMES)) float32, one row per component 1..n-1.
    """
    n = stats.shape[0]
    m = n - 1
    if m <= 0:
        return np.zeros((0, len(FEATURE_NAMES)), np.float32)
    st = stats[1:].astype(np.float64)
    x, y, w, h, area = st[:, 0], st[:, 1], st[:, 2], st[:, 3], st[:, 4]
    fg = (labels > 0).astype(np.uint8)
    dist = cv2.distanceTransform(fg, cv2.DIST_L2, 3)
    # Ridge pixels (local maxima of the distance) give the local half stroke width.
    ridge = (dist >= cv2.dilate(dist, np.ones((3, 3), np.uint8))) & (fg > 0)
    lab_r = labels[ridge]
    d_r = dist[ridge].astype(np.float64)
    cnt = np.bincount(lab_r, minlength=n)[1:].astype(np.float64)
    s1 = np.bincount(lab_r, weights=d_r, minlength=n)[1:]
    s2 = np.bincount(lab_r, weights=d_r * d_r, minlength=n)[1:]
    cnt_safe = np.maximum(cnt, 1.0)
    sw_mean = np.where(cnt > 0, s1 / cnt_safe, 0.5)
    sw_var = np.maximum(s2 / cnt_safe - sw_mean**2, 0.0)
    sw_cv = np.sqrt(sw_var) / np.maximum(sw_mean, 0.5)
    # Grey level of the ink: print toner is uniform, pen pressure varies.
    lab_f = labels[fg > 0]
    dark = 255.0 - flat[fg > 0].astype(np.float64)
    g1 = np.bincount(lab_f, weights=dark, minlength=n)[1:]
    g2 = np.bincount(lab_f, weights=dark * dark, minlength=n)[1:]
    a_safe = np.maximum(area, 1.0)
    g_mean = g1 / a_safe
    g_std = np.sqrt(np.maximum(g2 / a_safe - g_mean**2, 0.0))
    # Boundary pixels per area: ragged vs clean outlines.
    inner = cv2.erode(fg, np.ones((3, 3), np.uint8))
    edge = (fg > 0) & (inner == 0)
    e_cnt = np.bincount(labels[edge], minlength=n)[1:].astype(np.float64)

    big = area >= 10
    med_h = float(np.median(h[big])) if big.any() else float(np.median(h))
    med_sw = float(np.median(sw_mean[big])) if big.any() else float(np.median(sw_mean))
    med_dark = float(np.median(g_mean[big])) if big.any() else float(np.median(g_mean))
    bottom = (y + h).astype(np.int64)
    top = y.astype(np.int64)
    hh = h.astype(np.int64)
    valid = h >= 4
    # Alignment counts (printed glyphs sit on a shared baseline with shared heights); keys
    # of components too small to be glyphs are moved out of the way.
    big_off = np.int64(1 << 20)
    kb = np.where(valid, bottom, -big_off - np.arange(m))
    kt = np.where(valid, top, -big_off - np.arange(m))
    same_bottom = _near_counts(kb, [-1, 0, 1])
    same_top = _near_counts(kt, [-1, 0, 1])
    kbh = np.where(valid, bottom * 8192 + hh, -big_off * 8192 - np.arange(m))
    same_bh = _near_counts(kbh, [db * 8192 + dh for db in (-1, 0, 1) for dh in (-1, 0, 1)])
    # Local density: components whose centres share a coarse cell (small print is dense).
    cell = max(8.0, 2.0 * med_h)
    cx = ((x + w / 2) // cell).astype(np.int64)
    cy = ((y + h / 2) // cell).astype(np.int64)
    neighbours = _near_counts(cy * 100000 + cx, [0])

    f = np.empty((m, len(FEATURE_NAMES)), dtype=np.float64)
    f[:, 0] = np.log(a_safe)
    f[:, 1] = np.log(w)
    f[:, 2] = np.log(h)
    f[:, 3] = area / np.maximum(w * h, 1.0)
    f[:, 4] = np.log(w / h)
    f[:, 5] = sw_mean
    f[:, 6] = sw_cv
    f[:, 7] = np.log(h / max(med_h, 1.0))
    f[:, 8] = np.log(np.maximum(sw_mean, 0.5) / max(med_sw, 0.5))
    f[:, 9] = np.log1p(same_bottom)
    f[:, 10] = np.log1p(same_top)
    f[:, 11] = np.log1p(same_bh)
    f[:, 12] = g_mean / 255.0
    f[:, 13] = g_std / 255.0
    f[:, 14] = (g_mean - med_dark) / 255.0
    f[:, 15] = np.log1p(neighbours)
    f[:, 16] = np.log(np.maximum(sw_mean, 0.5) / h)
    f[:, 17] = e_cnt / a_safe
    return f.astype(np.float32)


# --------------------------------------------------------------------------- model


@dataclass(frozen=True)
class Separator:
    """A fitted print/handwriting component classifier (standardise, MLP, sigmoid).

    ``weights``/``biases`` are the layers; hidden layers use ReLU.  ``threshold`` is the
    probability above which a component is handwriting.
    """

    mean: NDArray[np.float32]
    scale: NDArray[np.float32]
    weights: tuple[NDArray[np.float32], ...]
    biases: tuple[NDArray[np.float32], ...]
    threshold: float = 0.5

    def predict_proba(self, features: NDArray[np.float32]) -> NDArray[np.float32]:
        """Probability of handwriting, shape (n,), for features of shape (n, k)."""
        if features.ndim != 2 or features.shape[1] != self.mean.shape[0]:
            raise ValueError(
                f"features must be (n, {self.mean.shape[0]}), got shape {features.shape}"
            )
        a = (features.astype(np.float32) - self.mean) / self.scale
        for i, (wt, b) in enumerate(zip(self.weights, self.biases, strict=True)):
            a = a @ wt + b
            if i < len(self.weights) - 1:
                np.maximum(a, 0, out=a)
        z = np.clip(a[:, 0], -30, 30)
        return (1.0 / (1.0 + np.exp(-z))).astype(np.float32)

    def save(self, path: str | os.PathLike[str], *, meta: dict | None = None) -> None:
        """Write the model atomically as a plain-array npz (no pickle)."""
        arrays: dict[str, np.ndarray] = {
            "mean": self.mean,
            "scale": self.scale,
            "threshold": np.array(self.threshold, np.float32),
            "n_layers": np.array(len(self.weights)),
            "feature_names": np.array(FEATURE_NAMES),
        }
        for i, (wt, b) in enumerate(zip(self.weights, self.biases, strict=True)):
            arrays[f"w{i}"] = wt
            arrays[f"b{i}"] = b
        h = hashlib.sha256()
        for k in sorted(arrays):
            h.update(k.encode())
            h.update(np.ascontiguousarray(arrays[k]).tobytes())
        info = {
            "format_version": FORMAT_VERSION,
            "numpy": np.__version__,
            "opencv": cv2.__version__,
            "sha256": h.hexdigest(),
            **(meta or {}),
        }
        arrays["meta"] = np.array(json.dumps(info, sort_keys=True))
        path = Path(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(dir=path.parent, suffix=".npz")
        os.close(fd)
        try:
            np.savez_compressed(tmp, **arrays)
            os.replace(tmp, path)
        finally:
            if os.path.exists(tmp):
                os.unlink(tmp)

    @classmethod
    def load(cls, path: str | os.PathLike[str]) -> Separator:
        """Read a model written by :meth:`save`; ValueError on a wrong format."""
        with np.load(path, allow_pickle=False) as z:
            meta = json.loads(str(z["meta"]))
            if meta.get("format_version") != FORMAT_VERSION:
                raise ValueError(f"separator model {path} has format {meta.get('format_version')}")
            names = tuple(str(s) for s in z["feature_names"])
            if names != FEATURE_NAMES:
                raise ValueError(f"separator model {path} was fitted on other features")
            n = int(z["n_layers"])
            return cls(
                mean=z["mean"].astype(np.float32),
                scale=z["scale"].astype(np.float32),
                weights=tuple(z[f"w{i}"].astype(np.float32) for i in range(n)),
                biases=tuple(z[f"b{i}"].astype(np.float32) for i in range(n)),
                threshold=float(z["threshold"]),
            )


@lru_cache(maxsize=1)
def default_separator() -> Separator | None:
    """The shipped model, or None when it has not been trained."""
    if not MODEL_PATH.exists():
        return None
    return Separator.load(MODEL_PATH)


def _rule_based(f: NDArray[np.float32]) -> NDArray[np.bool_]:
    # Without a model: drop specks and big sparse frames, keep everything else.
    area = np.exp(f[:, 0])
    w, h = np.exp(f[:, 1]), np.exp(f[:, 2])
    keep = area >= 4
    keep &= ~((f[:, 3] < 0.05) & (np.maximum(w, h) > 100))
    return keep


def components(
    flat: NDArray[np.uint8], ink: NDArray[np.bool_]
) -> tuple[NDArray[np.bool_], NDArray[np.int32], NDArray[np.int32], NDArray[np.float32]]:
    """Line removal, then connected components and their features.

    Returns
    -------
    (kept, labels, stats, features): ink without lines (rows, cols) bool; labels (rows,
    cols) int32; stats (n, 5); features (n - 1, k) float32.
    """
    kept, _ = remove_lines(ink)
    n, labels, stats, _ = cv2.connectedComponentsWithStats(
        kept.astype(np.uint8), connectivity=8, ltype=cv2.CV_32S
    )
    feats = component_features(flat, labels, stats)
    return kept, labels, stats, feats


def separate(
    flat: NDArray[np.uint8],
    ink: NDArray[np.bool_],
    *,
    model: Separator | None | bool = True,
) -> NDArray[np.bool_]:
    """Handwriting ink of a flattened slip.

    Parameters
    ----------
    flat : (rows, cols) uint8
        Background-flattened greyscale (paper ~255).
    ink : (rows, cols) bool
        Binarised ink of ``flat``.
    model : Separator, True or None/False
        The classifier; True = the shipped model (rules if none is shipped); None/False =
        rules only.

    Returns
    -------
    (rows, cols) bool, True = handwriting.
    """
    if ink.shape != flat.shape:
        raise ValueError(f"ink shape {ink.shape} must match flat shape {flat.shape}")
    if not ink.any():
        return np.zeros(ink.shape, dtype=bool)
    _, labels, stats, feats = components(flat, ink)
    if feats.shape[0] == 0:
        return np.zeros(ink.shape, dtype=bool)
    if model is True:
        model = default_separator()
    if isinstance(model, Separator):
        keep = model.predict_proba(feats) >= model.threshold
        keep &= np.exp(feats[:, 0]) >= 3  # single-pixel specks are noise either way
    else:
        keep = _rule_based(feats)
    lut = np.concatenate([[False], keep])
    return lut[labels]


# --------------------------------------------------------------------------- training


def pixel_scores(
    pred: NDArray[np.bool_],
    hand: NDArray[np.bool_],
    printed: NDArray[np.bool_],
    *,
    tolerance: int = 1,
) -> dict[str, float]:
    """Pixel precision/recall of a handwriting mask against ground truth.

    Ground-truth masks are drawn from the stroke centre-lines' coverage while the scan is
    blurred, so predicted stroke rims one pixel outside the mask are not errors: precision
    counts a predicted pixel as correct within ``tolerance`` px of handwriting, recall counts
    a handwriting pixel as found within ``tolerance`` px of a prediction (as in document
    binarisation benchmarks).

    Parameters
    ----------
    pred, hand, printed : (rows, cols) bool
        Predicted handwriting, true handwriting, true printed ink.

    Returns
    -------
    dict with ``precision``, ``recall``, ``print_kept`` (fraction of print-only pixels
    predicted as handwriting), and the counts ``tp``, ``pred``, ``hand``, ``print``.
    """
    k = np.ones((2 * tolerance + 1, 2 * tolerance + 1), np.uint8)
    hand_d = cv2.dilate(hand.astype(np.uint8), k) > 0
    pred_d = cv2.dilate(pred.astype(np.uint8), k) > 0
    print_only = printed & ~hand_d
    n_pred = int(pred.sum())
    n_hand = int(hand.sum())
    tp_p = int((pred & hand_d).sum())
    tp_r = int((hand & pred_d).sum())
    n_print = int(print_only.sum())
    return {
        "precision": tp_p / n_pred if n_pred else float("nan"),
        "recall": tp_r / n_hand if n_hand else float("nan"),
        "print_kept": int((pred & print_only).sum()) / n_print if n_print else float("nan"),
        "tp": float(tp_p),
        "pred": float(n_pred),
        "hand": float(n_hand),
        "print": float(n_print),
    }


def labelled_components(
    image: NDArray[np.uint8],
    hand_mask: NDArray[np.uint8],
    print_mask: NDArray[np.uint8],
    *,
    templates: list | None = None,
    work_pixels: int = 0,
) -> tuple[NDArray[np.float32], NDArray[np.int8], NDArray[np.float32]]:
    """Features, labels and pixel weights of a slip's components, computed exactly as at
    inference time; a component is handwriting when most of its ink lies on the
    handwriting mask rather than the print mask.

    Parameters
    ----------
    image : (rows, cols) uint8
    hand_mask, print_mask : (rows, cols) uint8, 255 = ink
    templates : optional blank designs (see :func:`cv.preprocess.handwriting_mask`)

    Returns
    -------
    (features (n, k) float32, labels (n,) int8 with 1 = handwriting, area (n,) float32)
    """
    from cv.preprocess import work_frame

    wf = work_frame(image, templates=templates, work_pixels=work_pixels)
    if not wf.candidates.any():
        return (
            np.zeros((0, len(FEATURE_NAMES)), np.float32),
            np.zeros(0, np.int8),
            np.zeros(0, np.float32),
        )
    _, labels, stats, feats = components(wf.flat, wf.candidates)
    n = stats.shape[0]
    hm = wf.map_input(hand_mask).astype(np.float64)
    pm = wf.map_input(print_mask).astype(np.float64)
    fg = labels > 0
    lab = labels[fg]
    hs = np.bincount(lab, weights=hm[fg], minlength=n)[1:]
    ps = np.bincount(lab, weights=pm[fg], minlength=n)[1:]
    y = (hs > ps).astype(np.int8)
    area = stats[1:, cv2.CC_STAT_AREA].astype(np.float32)
    return feats, y, area


def fit(
    features: NDArray[np.float32],
    labels: NDArray[np.int8],
    weights: NDArray[np.float32],
    *,
    hidden: tuple[int, ...] = (32, 16),
    random_state: int = 0,
) -> Separator:
    """Fit the MLP separator (scikit-learn, then exported to plain arrays).

    Components are weighted by sqrt(area): pixel accuracy is what matters, but a few huge
    print components must not swamp the many small glyphs.  scikit-learn's MLP has no
    sample weights, so components are resampled in proportion to their weight.
    """
    from sklearn.neural_network import MLPClassifier

    rng = np.random.default_rng(random_state)
    w = np.sqrt(np.maximum(weights.astype(np.float64), 1.0))
    n = features.shape[0]
    idx = rng.choice(n, size=min(4 * n, 400_000), replace=True, p=w / w.sum())
    x = features[idx].astype(np.float64)
    y = labels[idx]
    mean = x.mean(axis=0)
    scale = x.std(axis=0) + 1e-6
    clf = MLPClassifier(
        hidden_layer_sizes=hidden,
        alpha=1e-4,
        max_iter=60,
        early_stopping=True,
        random_state=random_state,
    )
    clf.fit((x - mean) / scale, y)
    return Separator(
        mean=mean.astype(np.float32),
        scale=scale.astype(np.float32),
        weights=tuple(c.astype(np.float32) for c in clf.coefs_),
        biases=tuple(b.astype(np.float32) for b in clf.intercepts_),
        threshold=0.5,
    )


def _read_set(folder: Path) -> list[tuple[Path, Path, Path]]:
    import csv

    with (folder / "labels.csv").open() as fh:
        rows = list(csv.DictReader(fh))
    out = []
    for r in rows:
        stem = Path(r["image"]).stem
        out.append(
            (
                folder / r["image"],
                folder / "masks" / f"{stem}.png",
                folder / "masks" / f"{stem}_print.png",
            )
        )
    return out


def collect(folder: Path, *, work_pixels: int = 0, templates: list | None = None):
    """Labelled components of every slip of a generated set (see :func:`labelled_components`)."""
    fs, ys, ws = [], [], []
    for img_p, hm_p, pm_p in _read_set(Path(folder)):
        img = cv2.imread(str(img_p), cv2.IMREAD_GRAYSCALE)
        hm = cv2.imread(str(hm_p), cv2.IMREAD_GRAYSCALE)
        pm = cv2.imread(str(pm_p), cv2.IMREAD_GRAYSCALE)
        f, y, w = labelled_components(img, hm, pm, templates=templates, work_pixels=work_pixels)
        fs.append(f)
        ys.append(y)
        ws.append(w)
    return np.concatenate(fs), np.concatenate(ys), np.concatenate(ws)


def train(
    *,
    out: Path = MODEL_PATH,
    writers: int = 40,
    slips_per_writer: int = 3,
    seed: int = 0,
    data_dir: Path | None = None,
) -> dict:
    """Generate a fit split (or read ``data_dir``), fit the separator, save it to ``out``.

    Only ``split="fit"`` slips (fit fonts, fit designs) are used.
    """
    from sample_slips.generate import generate

    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(data_dir) if data_dir else Path(tmp) / "fit"
        if data_dir is None:
            generate(
                folder,
                writers=writers,
                slips_per_writer=slips_per_writer,
                seed=seed,
                split="fit",
                masks=True,
            )
        x, y, w = collect(folder)
    model = fit(x, y, w, random_state=seed)
    pred = model.predict_proba(x) >= model.threshold
    acc = float(np.average(pred == (y == 1), weights=w))
    meta = {
        "writers": writers,
        "slips_per_writer": slips_per_writer,
        "seed": seed,
        "components": int(x.shape[0]),
        "handwriting_fraction": float(np.average(y, weights=w)),
        "fit_pixel_accuracy": acc,
    }
    model.save(out, meta=meta)
    default_separator.cache_clear()
    return {"out": str(out), **meta}


def _main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m cv.separate", description=__doc__)
    p.add_argument("--train", action="store_true", help="fit the separator on generated slips")
    p.add_argument("--writers", type=int, default=40)
    p.add_argument("--slips-per-writer", type=int, default=3)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--out", type=Path, default=MODEL_PATH)
    p.add_argument("--data-dir", type=Path, default=None, help="an existing generated fit set")
    args = p.parse_args(argv)
    if not args.train:
        p.print_help()
        return 2
    report = train(
        out=args.out,
        writers=args.writers,
        slips_per_writer=args.slips_per_writer,
        seed=args.seed,
        data_dir=args.data_dir,
    )
    print(json.dumps(report, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(_main())
