"""Till-receipt stamps and scanner artefacts.

The till prints a stamp (shop, date and time, bet id, stake, barcode) over the slip; the
scan adds a small rotation and scale, fold lines, uneven illumination, paper or
carbon-copy texture, blur, sensor noise and JPEG compression.
"""

from __future__ import annotations

import math
from functools import lru_cache
from pathlib import Path

import cv2
import numpy as np
from PIL import Image, ImageDraw, ImageFont

PRINT_DIR = Path(__file__).resolve().parent / "fonts" / "print"


@lru_cache(maxsize=8)
def _mono(size: int) -> ImageFont.FreeTypeFont:
    return ImageFont.truetype(str(PRINT_DIR / "DejaVuSansMono.ttf"), size)


def stamp(lines: list[str], barcode_key: str, rng: np.random.Generator) -> np.ndarray:
    """A thermal till stamp: monospaced lines and a barcode (uint8 coverage, 255 = ink)."""
    size = int(rng.integers(19, 25))
    font = _mono(size)
    width = int(max(font.getlength(s) for s in lines)) + 24
    bar_h = int(rng.integers(40, 60))
    height = int(len(lines) * size * 1.25) + bar_h + 30
    img = Image.new("L", (width, height), 0)
    d = ImageDraw.Draw(img)
    for k, s in enumerate(lines):
        d.text((12, 8 + k * size * 1.25), s, font=font, fill=255)
    arr = np.asarray(img, np.uint8).copy()
    # Barcode: bar widths from a hash of the bet id (looks like Code 128, is not decodable).
    brng = np.random.default_rng(int.from_bytes(barcode_key.encode()[:16].ljust(16, b"0"), "big"))
    x = 14
    y0 = height - bar_h - 12
    while x < width - 20:
        bw = int(brng.integers(1, 5)) * 2
        arr[y0 : y0 + bar_h, x : x + bw] = 255
        x += bw + int(brng.integers(1, 4)) * 2
    # Thermal print: fading across the head and along the feed.
    fade = 1.0 - rng.uniform(0.0, 0.35) * np.abs(
        cv2.resize(rng.random((1, 6)).astype(np.float32), (width, 1), interpolation=cv2.INTER_CUBIC)
    )
    arr = (arr.astype(np.float32) * np.clip(fade, 0.4, 1.0)).astype(np.uint8)
    return arr


def paste_max(dst: np.ndarray, src: np.ndarray, x: int, y: int) -> None:
    """Max-composite ``src`` into ``dst`` with its top-left at column x, row y (clipped)."""
    h, w = src.shape
    r0, c0 = max(0, y), max(0, x)
    r1, c1 = min(dst.shape[0], y + h), min(dst.shape[1], x + w)
    if r1 <= r0 or c1 <= c0:
        return
    region = dst[r0:r1, c0:c1]
    np.maximum(region, src[r0 - y : r1 - y, c0 - x : c1 - x], out=region)


def rotate_bound(img: np.ndarray, angle: float) -> np.ndarray:
    """Rotate by ``angle`` degrees, enlarging the canvas so nothing is cut."""
    h, w = img.shape
    m = cv2.getRotationMatrix2D((w / 2, h / 2), angle, 1.0)
    c, s = abs(m[0, 0]), abs(m[0, 1])
    nw, nh = int(h * s + w * c) + 2, int(h * c + w * s) + 2
    m[0, 2] += nw / 2 - w / 2
    m[1, 2] += nh / 2 - h / 2
    return cv2.warpAffine(img, m, (nw, nh), flags=cv2.INTER_LINEAR, borderValue=0)


def _field(rng: np.random.Generator, shape: tuple[int, int], grid: int) -> np.ndarray:
    coarse = rng.random((grid, grid)).astype(np.float32)
    return cv2.resize(coarse, (shape[1], shape[0]), interpolation=cv2.INTER_CUBIC)


@lru_cache(maxsize=1)
def _noise_tile() -> np.ndarray:
    """Unit Gaussian noise, made once per process (fixed seed): drawing 1 Mpx of fresh
    normals costs ~45 ms, a random crop of this tile costs nothing."""
    tile = np.random.default_rng(20261122).standard_normal((1600, 1600), dtype=np.float32)
    tile.setflags(write=False)
    return tile


def scan(
    *,
    hand: np.ndarray,
    hand_ink: float,
    print_cov: np.ndarray,
    print_dark: np.ndarray,
    rng: np.random.Generator,
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Compose ink layers on paper and scan them.

    Parameters
    ----------
    hand : ndarray, uint8, shape (rows, cols)
        Handwriting coverage (255 = ink).
    hand_ink : float
        Darkness of the writer's ink, 0..1.
    print_cov, print_dark : ndarray, uint8, shape (rows, cols)
        Printed coverage, and printed darkness (coverage times ink darkness).
    rng : numpy.random.Generator
        Per-slip randomness.

    Returns
    -------
    image : ndarray, uint8, shape (rows2, cols2)
        The greyscale scan (before JPEG).
    hand_mask, print_mask : ndarray, uint8, shape (rows2, cols2)
        255 where handwriting / printed ink lands in the scan, 0 elsewhere.
    """
    rows, cols = hand.shape
    scale = rng.uniform(0.9, 1.04)
    angle = float(np.clip(rng.normal(0, 1.0), -3.0, 3.0))
    out_w, out_h = int(round(cols * scale)), int(round(rows * scale))
    m = cv2.getRotationMatrix2D((cols / 2, rows / 2), angle, scale)
    m[0, 2] += out_w / 2 - cols / 2 + rng.normal(0, 5)
    m[1, 2] += out_h / 2 - rows / 2 + rng.normal(0, 5)

    def warp(a: np.ndarray) -> np.ndarray:
        return cv2.warpAffine(a, m, (out_w, out_h), flags=cv2.INTER_LINEAR, borderValue=0)

    hand_w, pcov_w, pdark_w = warp(hand), warp(print_cov), warp(print_dark)
    carbon = rng.random() < 0.2
    paper = rng.uniform(0.72, 0.84) if carbon else rng.uniform(0.9, 0.985)
    # Uneven illumination: a smooth multiplicative field (scanner lid, curled paper).
    light = _field(rng, (out_h, out_w), 3)
    light *= -rng.uniform(0.03, 0.15) * paper * 255.0
    light += paper * 255.0
    # Ink is multiplicative: paper * (1 - print darkness) * (1 - hand darkness).
    keep_print = cv2.convertScaleAbs(pdark_w, alpha=-1.0, beta=255.0)
    if carbon:
        # Carbon copies: soft, grainy strokes and a mottled sheet.
        oy = int(rng.integers(0, max(1, 1600 - out_h // 2)))
        ox = int(rng.integers(0, max(1, 1600 - out_w // 2)))
        grain = _noise_tile()[oy : oy + out_h // 2, ox : ox + out_w // 2]
        grain = cv2.resize(grain, (out_w, out_h), interpolation=cv2.INTER_LINEAR)
        hand_f = cv2.GaussianBlur(hand_w.astype(np.float32), (0, 0), 1.2)
        hand_f *= np.clip(1.0 + 0.25 * grain, 0.3, 1.3) * (hand_ink * rng.uniform(0.7, 0.95))
        light *= 1.0 + 0.04 * grain
        keep_hand = np.clip(255.0 - hand_f, 0, 255).astype(np.uint8)
    else:
        keep_hand = cv2.convertScaleAbs(hand_w, alpha=-hand_ink, beta=255.0)
    img = cv2.multiply(keep_print, keep_hand, scale=1.0 / 255.0, dtype=cv2.CV_32F)
    img = cv2.multiply(img, light, scale=1.0 / 255.0)
    if rng.random() < 0.3:
        _fold(img, rng)
    # Sensor noise before the optics blur: scanner noise is spatially correlated, which is
    # also what keeps a JPEG scan near 100 kB instead of 150 kB.
    oy, ox = int(rng.integers(0, max(1, 1600 - out_h))), int(rng.integers(0, max(1, 1600 - out_w)))
    img = cv2.scaleAdd(_noise_tile()[oy : oy + out_h, ox : ox + out_w], rng.uniform(1.2, 4.0), img)
    img = cv2.GaussianBlur(img, (0, 0), rng.uniform(0.45, 1.0))
    image = np.clip(img, 0, 255, out=img).astype(np.uint8)
    hand_mask = cv2.threshold(hand_w, 90, 255, cv2.THRESH_BINARY)[1]
    print_mask = cv2.threshold(pcov_w, 90, 255, cv2.THRESH_BINARY)[1]
    return image, hand_mask, print_mask


def _fold(img: np.ndarray, rng: np.random.Generator) -> None:
    """A fold line: a thin dark crease and a slight shade on one side (in place)."""
    rows, cols = img.shape
    horizontal = rng.random() < 0.6
    view = img if horizontal else img.T
    n_along, n_across = (cols, rows) if horizontal else (rows, cols)
    pos = rng.uniform(0.25, 0.75) * n_across
    tilt = math.tan(math.radians(rng.normal(0, 2)))
    depth, shade = rng.uniform(0.1, 0.3), rng.uniform(0.0, 0.06)
    line = pos + tilt * np.arange(n_along, dtype=np.float32)
    # Only a band of +-200 px around the crease changes (exp(-200/60) ~ 0.04).
    lo = max(0, int(line.min()) - 200)
    hi = min(n_across, int(line.max()) + 200)
    if hi <= lo:
        return
    d = np.arange(lo, hi, dtype=np.float32)[:, None] - line[None, :]
    factor = 1.0 - depth * np.exp(-(d**2) / 3.0) - shade * (d > 0) * np.exp(-np.abs(d) / 60.0)
    view[lo:hi, :] *= factor
