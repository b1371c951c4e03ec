"""The evaluation report an ML engineer reads: HTML with PNG plots of how well the model
separates writers (``sliplink eval --report DIR``), also shown on the model page."""

from __future__ import annotations

import html
import json
from collections import Counter
from pathlib import Path

import numpy as np
from numpy.typing import NDArray

MAX_PAIRS = 2_000_000  # beyond this the pair plots use a seeded sample of pairs


def _pairs(n: int, rng: np.random.Generator) -> tuple[NDArray[np.int64], NDArray[np.int64]]:
    if n * (n - 1) // 2 <= MAX_PAIRS:
        i, j = np.triu_indices(n, k=1)
        return i.astype(np.int64), j.astype(np.int64)
    i = rng.integers(0, n, MAX_PAIRS)
    j = rng.integers(0, n, MAX_PAIRS)
    keep = i != j
    return i[keep], j[keep]


def pair_scores(
    embeddings: NDArray[np.float32], writers: list[str], *, seed: int = 0
) -> tuple[NDArray[np.float64], NDArray[np.bool_], NDArray[np.int64], NDArray[np.int64]]:
    """Cosine scores of item pairs and whether each pair shares a writer."""
    x = np.asarray(embeddings, dtype=np.float32)
    i, j = _pairs(len(x), np.random.default_rng(seed))
    scores = np.einsum("ij,ij->i", x[i], x[j]).astype(np.float64)
    w = np.asarray(writers)
    return scores, w[i] == w[j], i, j


def _thumbnail(path: Path, out: Path, *, width: int = 360) -> str:
    from PIL import Image

    try:
        with Image.open(path) as opened:
            img = opened.convert("L")
            img.thumbnail((width, width * 2))
            img.save(out)
    except OSError:
        return ""
    return out.name


def write_report(
    out_dir: Path,
    *,
    embeddings: NDArray[np.float32],
    writers: list[str],
    images: list[Path],
    predicted: NDArray[np.int64],
    figures: dict[str, object],
    title: str = "sliplink evaluation",
    worst: int = 6,
) -> Path:
    """Write ``index.html`` and its PNGs into ``out_dir``; returns the HTML path."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    out_dir.mkdir(parents=True, exist_ok=True)
    scores, same, pi, pj = pair_scores(embeddings, writers)

    # precision-recall of "same writer" as the score threshold falls
    order = np.argsort(-scores, kind="stable")
    tp = np.cumsum(same[order])
    precision = tp / np.arange(1, len(order) + 1)
    recall = tp / max(int(same.sum()), 1)
    fig, ax = plt.subplots(figsize=(5, 4))
    ax.plot(recall, precision)
    ax.set(
        xlabel="recall", ylabel="precision", title="same-writer pairs", xlim=(0, 1), ylim=(0, 1.02)
    )
    ax.axhline(0.98, color="grey", lw=0.8, ls="--")
    fig.tight_layout()
    fig.savefig(out_dir / "pr_curve.png", dpi=110)
    plt.close(fig)

    fig, ax = plt.subplots(figsize=(5, 4))
    bins = np.linspace(float(scores.min(initial=-1)), float(scores.max(initial=1)), 60).tolist()
    ax.hist(scores[~same], bins=bins, alpha=0.6, density=True, label="different writers")
    ax.hist(scores[same], bins=bins, alpha=0.6, density=True, label="same writer")
    threshold = figures.get("threshold")
    if isinstance(threshold, float) and np.isfinite(threshold):
        ax.axvline(threshold, color="black", lw=1, label=f"threshold {threshold:.3f}")
    ax.set(xlabel="cosine score", ylabel="density", title="pair scores")
    ax.legend()
    fig.tight_layout()
    fig.savefig(out_dir / "score_hist.png", dpi=110)
    plt.close(fig)

    sizes = Counter(int(v) for v in predicted if v >= 0)
    singles = int(np.sum(predicted < 0))
    fig, ax = plt.subplots(figsize=(5, 4))
    size_counts = Counter(sizes.values())
    xs = sorted(size_counts)
    ax.bar([str(x) for x in xs], [size_counts[x] for x in xs])
    ax.set(xlabel="slips in cluster", ylabel="clusters", title=f"cluster sizes ({singles} alone)")
    fig.tight_layout()
    fig.savefig(out_dir / "cluster_sizes.png", dpi=110)
    plt.close(fig)

    # the worst confusions: different writers the model finds most alike
    different = np.flatnonzero(~same)
    top = different[np.argsort(-scores[different], kind="stable")[:worst]]
    rows = []
    for rank, k in enumerate(top, 1):
        a, b = int(pi[k]), int(pj[k])
        ta = _thumbnail(images[a], out_dir / f"confusion_{rank}_a.png")
        tb = _thumbnail(images[b], out_dir / f"confusion_{rank}_b.png")
        rows.append(
            f"<tr><td>{rank}</td><td>{scores[k]:.3f}</td>"
            f"<td>{html.escape(images[a].name)}<br>writer {html.escape(writers[a])}"
            f"<br><img src='{ta}'></td>"
            f"<td>{html.escape(images[b].name)}<br>writer {html.escape(writers[b])}"
            f"<br><img src='{tb}'></td></tr>"
        )
    table = "".join(
        f"<tr><th>{html.escape(str(k))}</th><td>{html.escape(_fmt(v))}</td></tr>"
        for k, v in figures.items()
    )
    (out_dir / "figures.json").write_text(json.dumps(figures, indent=2, default=str))
    page = f"""<!doctype html><html><head><meta charset="utf-8"><title>{html.escape(title)}</title>
<style>body{{font-family:sans-serif;margin:2em}}img{{max-width:360px;border:1px solid #ccc}}
td,th{{padding:4px 8px;text-align:left;vertical-align:top}} .plots img{{max-width:32%}}</style>
</head><body><h1>{html.escape(title)}</h1>
<p>{len(writers)} items, {len(set(writers))} writers, {int(same.sum())} same-writer pairs.</p>
<table>{table}</table>
<div class="plots"><img src="pr_curve.png" alt="precision-recall curve">
<img src="score_hist.png" alt="score histograms"><img src="cluster_sizes.png" alt="cluster sizes">
</div>
<h2>Worst confusions (different writers, highest scores)</h2>
<table><tr><th>#</th><th>score</th><th>slip</th><th>slip</th></tr>{"".join(rows)}</table>
</body></html>"""
    path = out_dir / "index.html"
    path.write_text(page)
    return path


def _fmt(value: object) -> str:
    if isinstance(value, float):
        return f"{value:.4f}"
    return str(value)
