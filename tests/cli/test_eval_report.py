from __future__ import annotations

import json

import numpy as np
from PIL import Image

from cli.eval_report import pair_scores, write_report


def test_pair_scores_exact_on_a_tiny_set():
    x = np.array([[1, 0], [1, 0], [0, 1]], dtype=np.float32)
    scores, same, i, j = pair_scores(x, ["a", "a", "b"])
    assert list(zip(i.tolist(), j.tolist(), strict=True)) == [(0, 1), (0, 2), (1, 2)]
    assert scores.tolist() == [1.0, 0.0, 0.0]
    assert same.tolist() == [True, False, False]


def test_report_files_are_written(tmp_path):
    rng = np.random.default_rng(0)
    centres = rng.normal(size=(4, 16))
    x = np.repeat(centres, 3, axis=0) + 0.3 * rng.normal(size=(12, 16))
    x = (x / np.linalg.norm(x, axis=1, keepdims=True)).astype(np.float32)
    writers = [f"w{k}" for k in range(4) for _ in range(3)]
    images = []
    for k in range(12):
        path = tmp_path / f"s{k}.png"
        Image.fromarray(np.full((40, 60), 200 + k, np.uint8)).save(path)
        images.append(path)
    out = tmp_path / "report"
    page = write_report(
        out,
        embeddings=x,
        writers=writers,
        images=images,
        predicted=np.repeat(np.arange(4), 3),
        figures={"map": 0.9, "threshold": 0.5},
    )
    text = page.read_text()
    for name in ("pr_curve.png", "score_hist.png", "cluster_sizes.png"):
        assert (out / name).stat().st_size > 5000, name  # a real plot, not an empty canvas
        assert name in text
    with Image.open(out / "confusion_1_a.png") as thumb:
        assert thumb.size == (60, 40)
    assert "confusion_1_a.png" in text
    assert "Worst confusions" in text and "12 items, 4 writers, 12 same-writer pairs" in text
    assert json.loads((out / "figures.json").read_text())["map"] == 0.9
