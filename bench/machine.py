"""How fast this machine's cores are, so benchmark figures from different machines compare.

Sessions run on machines of the same kind whose cores differ by 2x or more (2026-12-05: the
same embedding took 35-43 ms of CPU per slip on one machine, 81 ms on another).  Every
benchmark that reports a speed also reports :func:`reference`: the CPU time of two fixed
workloads on one core, a pure-Python loop (what the API, Celery and the rules spend their
time in) and a fixed OpenCV/numpy image pipeline (what the embedding spends it in).  Divide
a figure by the reference's ratio to a previous run before calling it faster or slower.

    PYTHONPATH=. .venv/bin/python bench/machine.py
"""

from __future__ import annotations

import json
import time

import cv2
import numpy as np


def _python_loop() -> int:
    total = 0
    for i in range(2_000_000):
        total += i * i % 7
    return total


def _image_pipeline(image: np.ndarray) -> float:
    blur = cv2.GaussianBlur(image, (0, 0), 1.5)
    _, ink = cv2.threshold(blur, 0, 255, cv2.THRESH_BINARY_INV | cv2.THRESH_OTSU)
    opened = cv2.morphologyEx(ink, cv2.MORPH_OPEN, np.ones((1, 25), np.uint8))
    dist = cv2.distanceTransform(ink, cv2.DIST_L2, 3)
    n, _, stats, _ = cv2.connectedComponentsWithStats(ink, 8)
    gx = cv2.Sobel(blur, cv2.CV_32F, 1, 0)
    hist = np.bincount((np.abs(gx).ravel() // 8).astype(np.int64), minlength=256)
    return float(dist.sum() + opened.sum() + n + stats[:, 4].sum() + hist[:32].sum())


def _cpu_ms(fn, *args, repeat: int) -> float:
    best = float("inf")
    for _ in range(repeat):
        t0 = time.process_time()
        fn(*args)
        best = min(best, (time.process_time() - t0) * 1000.0)
    return round(best, 1)


def reference() -> dict[str, float]:
    """CPU ms (best of a few runs, one thread) of the two fixed workloads."""
    threads = cv2.getNumThreads()
    cv2.setNumThreads(1)
    try:
        rng = np.random.default_rng(0)
        image = (rng.random((1200, 1000)) * 40 + 200).astype(np.uint8)
        cv2.putText(
            image, "sliplink 12.15 Ludlow", (40, 600), cv2.FONT_HERSHEY_SCRIPT_SIMPLEX, 3, 30, 5
        )
        return {
            "python_loop_ms": _cpu_ms(_python_loop, repeat=3),
            "image_pipeline_ms": _cpu_ms(_image_pipeline, image, repeat=5),
        }
    finally:
        cv2.setNumThreads(threads)


if __name__ == "__main__":
    print(json.dumps(reference(), indent=2))
