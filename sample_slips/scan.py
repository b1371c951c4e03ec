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
    light = 1.0 - rng.uniform(0.03, 0.15) * _field(rng, (out_h, out_w), 3)
    base = (paper * 255.0) * light
    hand_f = hand_w.astype(np.float32) * (hand_ink / 255.0)
    if carbon:
        # Carbon copies: soft, grainy strokes and a mottled sheet.
        hand_f = cv2.GaussianBlur(hand_f, (0, 0), 1.2) * rng.uniform(0.7, 0.95)
        grain = rng.standard_normal((out_h // 2, out_w // 2), dtype=np.float32)
        grain = cv2.resize(grain, (out_w, out_h), interpolation=cv2.INTER_LINEAR)
        base = base * (1.0 + 0.04 * grain)
        hand_f = hand_f * np.clip(1.0 + 0.25 * grain, 0.3, 1.3)
    img = base * (1.0 - pdark_w.astype(np.float32) / 255.0) * (1.0 - np.clip(hand_f, 0, 1))
    if rng.random() < 0.3:
        _fold(img, rng)
    sigma = rng.uniform(0.35, 1.0)
    img = cv2.GaussianBlur(img, (0, 0), sigma)
    noise = rng.uniform(1.0, 4.0)
    img += rng.standard_normal(img.shape, dtype=np.float32) * noise
    image = np.clip(img, 0, 255).astype(np.uint8)
    hand_mask = np.where(hand_w > 90, 255, 0).astype(np.uint8)
    print_mask = np.where(pcov_w > 90, 255, 0).astype(np.uint8)
    return image, hand_mask, print_mask


def _fold(img: np.ndarray, rng: np.random.Generator) -> None:
    """A fold line: a thin dark crease and a slight shade on one side (in place)."""
    rows, cols = img.shape
    horizontal = rng.random() < 0.6
    pos = rng.uniform(0.25, 0.75) * (rows if horizontal else cols)
    tilt = math.tan(math.radians(rng.normal(0, 2)))
    if horizontal:
        yy = np.arange(rows, dtype=np.float32)[:, None]
        line = pos + tilt * np.arange(cols, dtype=np.float32)[None, :]
        d = yy - line
    else:
        xx = np.arange(cols, dtype=np.float32)[None, :]
        line = pos + tilt * np.arange(rows, dtype=np.float32)[:, None]
        d = xx - line
    crease = 1.0 - rng.uniform(0.1, 0.3) * np.exp(-(d**2) / 3.0)
    shade = 1.0 - rng.uniform(0.0, 0.06) * (d > 0) * np.exp(-np.abs(d) / 60.0)
    img *= crease * shade
