"""Handwriting rendering: a string in a writer's hand as an ink-coverage image.

Glyph by glyph: each glyph is rasterised from the writer's font (cached per integer
size), then placed with its own jitter in size, rotation and baseline, the writer's slant
(shear) and letter spacing, along a drifting baseline. The whole word run then gets a
smooth elastic distortion (a random displacement field, cv2.remap; Simard et al. 2003),
a stroke-weight change (blur + re-threshold) and pen-pressure variation.
"""

from __future__ import annotations

import hashlib
import math
from functools import lru_cache

import cv2
import numpy as np
from PIL import Image, ImageDraw, ImageFont

from sample_slips.writers import Writer, font_path


@lru_cache(maxsize=256)
def _font(name: str, size: int) -> ImageFont.FreeTypeFont:
    return ImageFont.truetype(str(font_path(name)), size)


@lru_cache(maxsize=64)
def cap_ratio(name: str) -> float:
    """Cap height of a font as a fraction of its nominal size (fonts differ by 2x)."""
    x0, y0, x1, y1 = _font(name, 100).getbbox("HEA", anchor="ls")
    return max(0.3, -y0 / 100.0)


@lru_cache(maxsize=4096)
def _allograph(writer_id: str, ch: str) -> tuple[float, float, float, float]:
    """A writer's persistent way of forming one character: (width scale, extra rotation
    in degrees, baseline offset and height scale as fractions of size). People sharing a
    copybook (here: a font) still differ letter by letter, consistently across slips."""
    h = hashlib.sha256(f"allograph:{writer_id}:{ch}".encode()).digest()
    u = [b / 255.0 - 0.5 for b in h[:4]]  # four uniforms in [-0.5, 0.5]
    return 1.0 + 0.2 * u[0], 8.0 * u[1], 0.06 * u[2], 1.0 + 0.16 * u[3]


@lru_cache(maxsize=32768)
def _glyph(name: str, size: int, ch: str) -> tuple[np.ndarray, int, int, float]:
    """(coverage uint8, origin x, baseline y, advance) of one glyph."""
    font = _font(name, size)
    ascent, descent = font.getmetrics()
    adv = float(font.getlength(ch))
    x0, _, x1, _ = font.getbbox(ch, anchor="ls")
    pad = size // 3
    w = int(max(adv, x1) - min(0, x0)) + 2 * pad
    h = ascent + descent + 2 * pad
    ox = int(pad - min(0, x0))
    img = Image.new("L", (max(w, 1), h), 0)
    ImageDraw.Draw(img).text((ox, pad + ascent), ch, font=font, fill=255, anchor="ls")
    arr = np.asarray(img, dtype=np.uint8).copy()
    arr.setflags(write=False)
    return arr, ox, pad + ascent, adv


def render_line(
    text: str, w: Writer, rng: np.random.Generator, *, size: float, tilt: float = 0.0
) -> tuple[np.ndarray, int]:
    """Render ``text`` in writer ``w``'s hand.

    Parameters
    ----------
    text : str
        What to write (one line).
    w : Writer
        The writer (font and style).
    rng : numpy.random.Generator
        Per-slip randomness (jitter, distortion).
    size : float
        Font size in px for this run.
    tilt : float
        Rotation of the whole line in degrees (> 0 runs uphill).

    Returns
    -------
    ink : ndarray, uint8, shape (rows, cols)
        Ink coverage, 255 = full ink.
    baseline : int
        Row of the baseline in ``ink``.
    """
    isz = max(8, int(round(size)))
    _, descent = _font(w.font, isz).getmetrics()
    ascent = _font(w.font, isz).getmetrics()[0]
    width = int(sum(_glyph(w.font, isz, c)[3] for c in text) * 1.35 + size * 2 + 8)
    slope = math.tan(math.radians(tilt))
    rise = int(abs(slope) * width) + 1
    height = int(ascent + descent + size * 1.2) + rise
    base = int(size * 0.6 + ascent) + (rise if slope > 0 else 0)
    canvas = np.zeros((height, width), np.uint8)
    x = size * 0.5
    phase = rng.uniform(0, 2 * math.pi)
    j = w.jitter
    gap = w.word_gap * size
    for ch in text:
        if ch == " ":
            x += gap * rng.uniform(0.8, 1.25)
            continue
        gsz = max(8, int(round(isz * (1 + rng.normal(0, 0.035 * j)))))
        g, ox, by, adv = _glyph(w.font, gsz, ch)
        # Baseline drift (slow sine along the line) plus per-glyph bounce.
        dy = w.drift * size * math.sin(phase + 2 * math.pi * x / w.drift_period)
        dy += rng.normal(0, 0.025 * size * j) - slope * x
        ax, arot, ady, ay = _allograph(w.id, ch)
        dy += ady * size
        ang = math.radians(rng.normal(arot - tilt, 2.5 * j))
        shear = w.slant + rng.normal(0, 0.03 * j)
        sy = ay * (1 + rng.normal(0, 0.03 * j))
        sx = ax
        c, s = math.cos(ang), math.sin(ang)
        # Glyph coords (u, v) relative to its pen origin (ox, by): scale (sx, sy), shear,
        # then rotate: [[c, -s], [s, c]] @ [[1, -shear], [0, 1]] @ diag(sx, sy).
        a11, a12 = c * sx, (-c * shear - s) * sy
        a21, a22 = s * sx, (-s * shear + c) * sy
        tx, ty = x, base + dy
        m = np.array(
            [[a11, a12, tx - a11 * ox - a12 * by], [a21, a22, ty - a21 * ox - a22 * by]],
            np.float32,
        )
        # Warp into a local window only (fast), then max-composite into the line.
        gh, gw = g.shape
        corners = np.array([[0, 0, 1], [gw, 0, 1], [0, gh, 1], [gw, gh, 1]], np.float32) @ m.T
        cx0 = max(0, int(corners[:, 0].min()) - 1)
        cy0 = max(0, int(corners[:, 1].min()) - 1)
        cx1 = min(width, int(corners[:, 0].max()) + 2)
        cy1 = min(height, int(corners[:, 1].max()) + 2)
        if cx1 <= cx0 or cy1 <= cy0:
            x += adv
            continue
        m[0, 2] -= cx0
        m[1, 2] -= cy0
        warped = cv2.warpAffine(g, m, (cx1 - cx0, cy1 - cy0), flags=cv2.INTER_LINEAR)
        region = canvas[cy0:cy1, cx0:cx1]
        np.maximum(region, warped, out=region)
        x += adv * (gsz / isz) * ax + w.spacing * size + rng.normal(0, 0.02 * size * j)
    right = min(width, int(x + size * 0.5))
    canvas = canvas[:, :right]
    canvas = _elastic(canvas, rng, size=size, amount=0.045 * j)
    canvas = _weight(canvas, weight=w.weight + rng.normal(0, 0.15), size=size)
    canvas = _pressure(canvas, rng, strength=w.pressure)
    return canvas, base


def _smooth_field(rng: np.random.Generator, shape: tuple[int, int], cell: float) -> np.ndarray:
    rows, cols = shape
    gh, gw = max(2, int(rows / cell) + 2), max(2, int(cols / cell) + 2)
    coarse = rng.standard_normal((gh, gw)).astype(np.float32)
    return cv2.resize(coarse, (cols, rows), interpolation=cv2.INTER_CUBIC)


def _elastic(
    ink: np.ndarray, rng: np.random.Generator, *, size: float, amount: float
) -> np.ndarray:
    """Smooth random displacement, about glyph-sized cells (elastic distortion)."""
    rows, cols = ink.shape
    cell = size * 0.8
    dx = _smooth_field(rng, (rows, cols), cell) * (amount * size)
    dy = _smooth_field(rng, (rows, cols), cell) * (amount * size)
    gx, gy = np.meshgrid(np.arange(cols, dtype=np.float32), np.arange(rows, dtype=np.float32))
    return cv2.remap(ink, gx + dx, gy + dy, cv2.INTER_LINEAR, borderValue=0)


def _weight(ink: np.ndarray, *, weight: float, size: float) -> np.ndarray:
    """Thicken (weight > 0) or thin (< 0) strokes by blurring and moving the threshold."""
    sigma = 0.5 + 0.012 * size
    blur = cv2.GaussianBlur(ink, (0, 0), sigma).astype(np.float32) / 255.0
    t = float(np.clip(0.4 - 0.15 * weight, 0.2, 0.55))
    out = np.clip((blur - t) / 0.22 + 0.5, 0.0, 1.0)
    return (out * 255).astype(np.uint8)


def _pressure(ink: np.ndarray, rng: np.random.Generator, *, strength: float) -> np.ndarray:
    """Ballpoint pressure: slow variation of darkness along the stroke."""
    if strength <= 0:
        return ink
    f = _smooth_field(rng, ink.shape, 40.0)
    scale = np.clip(1.0 - strength * (0.5 + 0.35 * f), 0.35, 1.0)
    return (ink.astype(np.float32) * scale).astype(np.uint8)


def render_mark(style: str, w: Writer, rng: np.random.Generator, *, box: int) -> np.ndarray:
    """A tick, cross, slash or blob about ``box`` px wide (uint8 coverage)."""
    n = int(box * 1.5)
    img = np.zeros((n, n), np.uint8)
    thick = max(2, int(round(2.5 + w.weight + 0.02 * w.size)))

    def pt(x: float, y: float) -> tuple[int, int]:
        j = box * 0.06
        return int((x + rng.normal(0, j)) * 16), int((y + rng.normal(0, j)) * 16)

    c = n / 2
    r = box * 0.45
    if style == "tick":
        pts = [pt(c - r, c), pt(c - r * 0.3, c + r * 0.8), pt(c + r * 1.1, c - r * 1.1)]
        cv2.polylines(img, [np.array(pts)], False, 255, thick, cv2.LINE_AA, shift=4)
    elif style == "cross":
        cv2.line(img, pt(c - r, c - r), pt(c + r, c + r), 255, thick, cv2.LINE_AA, shift=4)
        cv2.line(img, pt(c + r, c - r), pt(c - r, c + r), 255, thick, cv2.LINE_AA, shift=4)
    elif style == "slash":
        cv2.line(img, pt(c - r * 0.8, c + r), pt(c + r * 0.9, c - r), 255, thick, cv2.LINE_AA, 4)
    else:
        for k in range(4):
            y = c - r * 0.7 + k * r * 0.45
            cv2.line(img, pt(c - r * 0.8, y), pt(c + r * 0.8, y + r * 0.2), 255, thick, 16, 4)
    return img


def strike(ink: np.ndarray, rng: np.random.Generator, *, base: int, size: float) -> np.ndarray:
    """Cross out a rendered run: one or two wavy lines through the x-height."""
    out = ink.copy()
    cols = np.nonzero(ink.max(axis=0) > 60)[0]
    if cols.size == 0:
        return out
    x0, x1 = int(cols[0]), int(cols[-1])
    thick = max(2, int(size * 0.07))
    for k in range(int(rng.integers(1, 3))):
        y = base - size * (0.3 + 0.12 * k) + rng.normal(0, size * 0.04)
        xs = np.linspace(x0 - 3, x1 + 3, 12)
        ys = y + rng.normal(0, size * 0.04, xs.size) + np.linspace(0, rng.normal(0, 4), xs.size)
        pts = np.stack([xs, ys], 1) * 16
        cv2.polylines(out, [pts.astype(np.int32)], False, 255, thick, cv2.LINE_AA, shift=4)
    return out
