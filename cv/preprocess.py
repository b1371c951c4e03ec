"""Slip preprocessing: decode, normalise, deskew, drop printed content, scale-normalise.

The pipeline (one pass, top to bottom in :func:`preprocess`):

1. validate; downscale huge inputs so memory and time stay bounded;
2. flatten uneven lighting by dividing by a background estimate (morphological closing at
   reduced resolution, then a median) and binarise the flattened image;
3. estimate the skew from the ink (projection-profile variance, Postl 1986) and rotate;
4. separate handwriting from print (:mod:`cv.separate`: ruled lines, barcodes, then a
   per-component classifier; optionally :mod:`cv.register` removes a registered template);
5. estimate stroke width and x-height of the handwriting, crop it with a margin and resize
   so its median stroke width hits a fixed target (slips scanned at different dpi compare);
6. report quality flags instead of raising on valid but useless images.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import cv2
import numpy as np
from numpy.typing import NDArray

from cv.design import print_signature
from cv.features import inkviews
from cv.stamp import stamp_mask

__all__ = [
    "Prepared",
    "Quality",
    "binarise",
    "estimate_skew",
    "estimate_stroke_width",
    "estimate_x_height",
    "flatten_background",
    "boxes_of_mask",
    "handwriting_boxes",
    "handwriting_mask",
    "load_image",
    "preprocess",
    "rescaled_ink",
]

# The print/handwriting analysis runs on a frame of at most about this many pixels (area-
# average decimation by an integer factor): a 1.2 MP slip is analysed at 1/2, which makes
# time and memory independent of the scan size; the mask is refined at full resolution.
WORK_PIXELS = 350_000
# Scans up to this size have their handwriting cut out and measured at full resolution;
# larger ones (rare) stay in the work frame.
DETAIL_PIXELS = 6_000_000
# Inputs beyond this are processed (after downscaling) but flagged.
HUGE_PIXELS = 50_000_000
# Below this many handwriting ink pixels (at the normalised scale) a slip carries too
# little handwriting to describe a writer.
MIN_INK_PIXELS = 150
# On a printed form so little kept ink (a few letters' worth) means the separator lost the
# handwriting (faint ink, a till stamp across it) and kept specks and print: such slips
# embed alike and linked each other across writers (three such slips made the only false
# link among 240 of 1,000 held-out writers, 2026-12-06, at a floor of 1,000).  Plain crops
# keep MIN_INK_PIXELS (4.6 % of UNIPEN's real handwriting crops hold under 1,000 ink pixels:
# short words, rightly kept).  500 since session 22: a real customer's one word or
# selection on a slip keeps 500-1,000 (the 1,000 floor left 60 % of real hands on slips out
# of clustering); chosen on fit-split real hands on fit designs (bench/real_slips.py --split
# fit, 3 draws pooled, batch / live right of linked pairs): floor 1,000 39 / 43, 34 / 43;
# 700 48 / 52, 56 / 66; 500 55 / 61, 88 / 100; 300 53 / 63, 83 / 102.
MIN_FORM_INK_PIXELS = 500  # at stroke width 5; it scales with the stroke width's square
# The reference slip page: 1.1 MP (a betting slip scanned as the generated ones are, about
# 150 dpi), on which handwriting strokes are 4.9 px wide (median of generated fit slips).
PAGE_PIXELS = 1_100_000
PAGE_STROKE_WIDTH = 4.9
# A page of this many pixels is a slip scanned at a lower resolution than the reference (a
# generated slip at the reference resolution has 0.80-1.55 MP, designs differ in size): it
# is first resized to PAGE_PIXELS.  The separator was fitted on work frames of pages near
# the reference resolution and reads component sizes in work pixels; a 0.75x scan reached
# it at 0.75 of that scale and lost handwriting (the 60 x 6 held-out slips rescanned at
# 0.75x ranked at mAP 0.668 instead of 0.863; resized back up, 0.868).  Plain crops are
# smaller (UNIPEN's 7-265 kP); larger pages keep their size.
SMALL_PAGE_PIXELS = (300_000, 750_000)
# Images with fewer rows or columns than this are flagged tiny.
MIN_SIDE = 16
# Clear the till stamp (:mod:`cv.stamp`) from the handwriting the separator kept.
STAMPS = True
# Remove a fold's crease from pages without a printed form (cv.separate.remove_creases).
CREASES = True
# Minimum ink/background contrast (grey levels on the flattened image) to call ink.
MIN_CONTRAST = 40.0
# Ink at least this much darker than paper always counts, whatever Otsu says.
FAINT_INK = 55.0
# A page has contrast when its darkest 0.5 % is MIN_CONTRAST below paper, or when at least
# this many work-frame pixels are: a few words on an otherwise blank sheet (a bet written on
# plain paper) cover under 0.5 % of it and were flagged low_contrast.
MIN_DARK_PIXELS = 120


@dataclass(frozen=True)
class Quality:
    """Per-slip quality report; ``flags`` is empty when the slip is usable."""

    ink_pixels: int
    handwriting_area: float
    stroke_width: float
    x_height: float
    skew_degrees: float
    flags: tuple[str, ...]

    @property
    def ok(self) -> bool:
        return not self.flags


@dataclass(frozen=True)
class Prepared:
    """Handwriting of one slip, deskewed, scale-normalised and cropped.

    ``ink`` is (rows, cols) uint8 with 255 = handwriting ink, ``grey`` the same crop of the
    flattened greyscale (dark ink on white) with everything else whitened out.  ``scale`` is
    the total resize factor applied to the input image.  ``design`` is the signature of the
    print removed (:func:`cv.design.print_signature`), None when no printed form was found.
    ``crop`` is the handwriting mask (0/255) before its final resize and that resize's
    factor, from which :func:`rescaled_ink` makes the ink at other scales (None when empty).
    """

    ink: NDArray[np.uint8]
    grey: NDArray[np.uint8]
    scale: float
    quality: Quality
    design: NDArray[np.float32] | None = None
    crop: tuple[NDArray[np.uint8], float] | None = dataclasses.field(default=None, repr=False)
    # inkviews.components(ink) when preprocess computed them (the style family reads them)
    components: tuple[int, NDArray[np.int32], NDArray[np.int32]] | None = dataclasses.field(
        default=None, repr=False, compare=False
    )


def _page_sized(image: NDArray[np.uint8]) -> tuple[NDArray[np.uint8], float]:
    """The image resized to :data:`PAGE_PIXELS` when its size is a low-resolution scan's
    (:data:`SMALL_PAGE_PIXELS`), and the factor applied (1.0: unchanged)."""
    n = image.shape[0] * image.shape[1]
    if not SMALL_PAGE_PIXELS[0] <= n < SMALL_PAGE_PIXELS[1]:
        return image, 1.0
    up = math.sqrt(PAGE_PIXELS / n)
    size = (int(round(image.shape[1] * up)), int(round(image.shape[0] * up)))
    return cv2.resize(image, size, interpolation=cv2.INTER_CUBIC), up


def _check_image(image: object, name: str = "image") -> NDArray[np.uint8]:
    if not isinstance(image, np.ndarray):
        raise ValueError(f"{name} must be a numpy array, got {type(image).__name__}")
    if image.ndim != 2:
        raise ValueError(f"{name} must be 2-D (rows, cols) greyscale, got shape {image.shape}")
    if image.dtype != np.uint8:
        raise ValueError(f"{name} must have dtype uint8, got {image.dtype}")
    return image


# --------------------------------------------------------------------------- decoding


def load_image(data: bytes, *, max_pixels: int = 50_000_000) -> NDArray[np.uint8]:
    """Decode PNG/JPEG/TIFF bytes to a uint8 greyscale array.

    EXIF orientation is applied, only the first page of a multi-page TIFF is read, 16-bit
    and colour images are converted to 8-bit grey.  The header is checked *before* the
    pixels are decoded, so decompression bombs are refused cheaply.

    Parameters
    ----------
    data : bytes
        The encoded file.
    max_pixels : int
        Largest accepted rows * cols.

    Returns
    -------
    (rows, cols) uint8 array, dark ink on light paper as scanned.

    Raises
    ------
    ValueError
        On empty, corrupt, unsupported or too large input; the message says which.
    """
    from cv.imageio import decode_greyscale

    if not isinstance(data, bytes | bytearray | memoryview):
        raise ValueError(f"data must be bytes, got {type(data).__name__}")
    if max_pixels <= 0:
        raise ValueError(f"max_pixels must be positive, got {max_pixels}")
    # one decoder for the whole product: the upload path uses the same function
    image, _ = decode_greyscale(bytes(data), max_pixels=max_pixels)
    return image


def _pil_to_grey(img) -> NDArray[np.uint8]:
    mode = img.mode
    if mode in {"I;16", "I;16B", "I;16L", "I;16N", "I", "F"}:
        arr = np.asarray(img, dtype=np.float64)
        lo, hi = float(arr.min()), float(arr.max())
        if mode.startswith("I;16"):
            lo, hi = 0.0, 65535.0
        elif hi <= lo:
            hi = lo + 1.0
        out = np.clip((arr - lo) * (255.0 / (hi - lo)), 0, 255)
        return np.ascontiguousarray(np.rint(out).astype(np.uint8))
    if mode in {"RGBA", "LA", "PA"} or (mode == "P" and "transparency" in img.info):
        # Composite transparent scans onto white paper.
        rgba = img.convert("RGBA")
        from PIL import Image

        bg = Image.new("RGBA", rgba.size, (255, 255, 255, 255))
        img = Image.alpha_composite(bg, rgba)
    if img.mode != "L":
        img = img.convert("L")
    return np.ascontiguousarray(np.asarray(img, dtype=np.uint8))


# --------------------------------------------------------------------------- lighting


def _background(image: NDArray[np.uint8], *, ink_size: int = 0) -> NDArray[np.uint8]:
    """Paper brightness at reduced resolution (rows/f, cols/f) and the factor f."""
    rows, cols = image.shape
    if ink_size <= 0:
        ink_size = max(15, int(0.02 * min(rows, cols)))
    # Reduce so the closing kernel is ~7 px at the small scale: fast and smooth.
    f = max(1, ink_size // 5)
    small = _shrink(image, f)
    kernel = cv2.getStructuringElement(cv2.MORPH_RECT, (7, 7))
    bg = cv2.morphologyEx(small, cv2.MORPH_CLOSE, kernel, borderType=cv2.BORDER_REPLICATE)
    bg = cv2.dilate(bg, cv2.getStructuringElement(cv2.MORPH_RECT, (3, 3)))
    bg = cv2.medianBlur(bg, 5)
    return np.maximum(bg, 1)


def _shrink(image: NDArray[Any], k: int) -> NDArray[Any]:
    """``image`` area-averaged by the integer factor ``k``, the sides that do not divide by
    ``k`` cut short (the last ``rows % k`` rows and ``cols % k`` columns are dropped).

    OpenCV's area resize is fast only for exact integer factors: on an odd-sided 1.2 MP
    scan halving the whole image costs 1.31 ms, the cropped one 0.18 ms (session 11).
    The result's pixel (i, j) is the mean of input rows k*i .. k*i+k-1 and columns alike.
    """
    rows, cols = image.shape[:2]
    r, c = max(1, rows // k), max(1, cols // k)
    if k <= 1 or rows < k or cols < k:
        return cv2.resize(image, (c, r), interpolation=cv2.INTER_AREA) if k > 1 else image
    return cv2.resize(image[: r * k, : c * k], (c, r), interpolation=cv2.INTER_AREA)


def _divide(image: NDArray[np.uint8], bg_small: NDArray[np.uint8]) -> NDArray[np.uint8]:
    rows, cols = image.shape
    bg = cv2.resize(bg_small, (cols, rows), interpolation=cv2.INTER_LINEAR)
    return cv2.divide(image, bg, scale=255.0)


def flatten_background(image: NDArray[np.uint8], *, ink_size: int = 0) -> NDArray[np.uint8]:
    """Divide out uneven lighting: ``out = 255 * image / background``.

    The background is estimated at reduced resolution by a grey closing (a max filter
    removes dark strokes thinner than the kernel) followed by a median that removes the
    closing's blockiness; then it is resized back.  Dark ink stays dark, paper becomes ~255.
    Solid printed areas wider than ``ink_size`` count as background and vanish, which is
    what we want for logos and black header bars.

    Parameters
    ----------
    image : (rows, cols) uint8
    ink_size : int
        Widest dark structure (px) to treat as ink; 0 = automatic (2 % of the shorter side,
        at least 15 px).

    Returns
    -------
    (rows, cols) uint8, flattened.
    """
    image = _check_image(image)
    rows, cols = image.shape
    if rows < 4 or cols < 4:
        return image.copy()
    return _divide(image, _background(image, ink_size=ink_size))


def _threshold(flat: NDArray[np.uint8], *, min_contrast: float = MIN_CONTRAST) -> float:
    t, _ = cv2.threshold(flat, 0, 255, cv2.THRESH_BINARY + cv2.THRESH_OTSU)
    # Otsu splits paper from the *darkest* ink; on slips with black bars and heavy print it
    # lands near 150 and drops pale biro (measured: handwriting pixel recall 0.91 -> 0.98
    # on held-out slips with the floor).  Anything FAINT_INK levels below paper is ink.
    return min(max(float(t), 255.0 - FAINT_INK), 255.0 - min_contrast)


def binarise(flat: NDArray[np.uint8], *, min_contrast: float = MIN_CONTRAST) -> NDArray[np.bool_]:
    """Ink mask of a flattened image (paper ~255).

    Otsu's threshold on the flattened image, raised to at least ``FAINT_INK`` grey levels
    below paper (pale pen next to black print) and capped at ``min_contrast`` levels below
    paper so that a blank page does not turn its noise into ink.

    Parameters
    ----------
    flat : (rows, cols) uint8
        Output of :func:`flatten_background`.

    Returns
    -------
    (rows, cols) bool, True = ink.
    """
    flat = _check_image(flat, "flat")
    if flat.size == 0:
        return np.zeros(flat.shape, dtype=bool)
    return flat < _threshold(flat, min_contrast=min_contrast)


# --------------------------------------------------------------------------- geometry


def _skew_from_components(
    labels: NDArray[np.int32], stats: NDArray[np.int32], *, max_degrees: float
) -> float:
    rows, cols = labels.shape
    w = stats[:, cv2.CC_STAT_WIDTH].astype(np.float64)
    h = stats[:, cv2.CC_STAT_HEIGHT].astype(np.float64)
    area = stats[:, cv2.CC_STAT_AREA].astype(np.float64)
    length = np.maximum(w, h)
    # Ruled lines and frames: long (>= 40 % of the page side), elongated, sparse.  A
    # handwritten word is rarely that long relative to its image and never that sparse.
    cand = (length >= max(60.0, 0.4 * max(rows, cols))) & (area <= 0.25 * w * h)
    cand &= np.maximum(w, h) >= 3.0 * np.minimum(w, h)
    cand[0] = False
    idx = np.nonzero(cand)[0]
    if idx.size == 0:
        return 0.0
    angles, weights = [], []
    for i in idx[np.argsort(-length[idx])][:12]:
        x, y = stats[i, 0], stats[i, 1]
        roi = (labels[y : y + int(h[i]), x : x + int(w[i])] == i).astype(np.uint8)
        m = cv2.moments(roi, binaryImage=True)
        # Orientation of the principal axis (image moments), folded so vertical rules vote
        # like horizontal ones; y grows downwards, so a counter-clockwise skew is negative.
        a = 0.5 * math.degrees(math.atan2(2 * m["mu11"], m["mu20"] - m["mu02"]))
        a = (a + 45.0) % 90.0 - 45.0
        if abs(a) <= max_degrees:
            angles.append(-a)
            weights.append(length[i])
    if not angles:
        return 0.0
    order = np.argsort(angles)
    a_sorted = np.asarray(angles)[order]
    cw = np.cumsum(np.asarray(weights)[order])
    return float(a_sorted[int(np.searchsorted(cw, cw[-1] / 2))])


# A page with at least this many glyph-sized components is a printed form: its skew comes
# from the baselines of the print (plain handwriting crops have far fewer components).
MIN_BASELINE_POINTS = 150
BASELINE_MAX_DEGREES = 8.0


def _skew_from_baselines(stats: NDArray[np.int32], shape: tuple[int, int]) -> float | None:
    """Skew (degrees, positive = counter-clockwise) that lines up the glyphs' bottoms.

    Printed text, dotted rules and tick boxes put the bottoms of many small components on
    common lines; the angle that makes their histogram along the page's height sharpest
    (largest sum of squares, a projection profile of points, after Postl 1986) is the
    page's skew.  Returns None when there are too few glyph-sized components to tell.
    """
    rows, cols = shape
    st = stats[1:]
    h, w = st[:, cv2.CC_STAT_HEIGHT], st[:, cv2.CC_STAT_WIDTH]
    glyph = (h >= 2) & (h <= 0.05 * rows) & (w <= 0.1 * cols) & (st[:, cv2.CC_STAT_AREA] >= 3)
    if np.count_nonzero(glyph) < MIN_BASELINE_POINTS:
        return None
    x = st[glyph, cv2.CC_STAT_LEFT] + w[glyph] / 2.0 - cols / 2.0
    y = (st[glyph, cv2.CC_STAT_TOP] + h[glyph]).astype(np.float64)

    def sharpest(degrees: NDArray[np.float64]) -> float:
        # All angles at once: one bincount over (angle, row) instead of one per angle.
        tans = np.array([math.tan(math.radians(float(d))) for d in degrees])
        yp = y[None, :] - tans[:, None] * x[None, :]
        bins = np.round(yp - yp.min(axis=1, keepdims=True)).astype(np.int64)
        width = int(bins.max()) + 2  # a zero column after every angle's last row
        flat = (bins + (np.arange(len(degrees)) * width)[:, None]).ravel()
        counts = np.bincount(flat, minlength=len(degrees) * width).reshape(len(degrees), width)
        counts = counts.astype(np.float64)
        # two-pixel bins (overlapping) so a line split across two rows still counts as one
        pairs = counts[:, :-1] + counts[:, 1:]
        score = (pairs**2).sum(axis=1)
        # an angle's own histogram ends at its last row: drop the pair it forms with padding
        top = bins.max(axis=1)
        score -= np.where(top > 0, counts[np.arange(len(degrees)), top] ** 2, 0.0)
        return float(degrees[int(np.argmax(score))])

    best = sharpest(np.arange(-BASELINE_MAX_DEGREES, BASELINE_MAX_DEGREES + 1e-9, 0.2))
    best = sharpest(np.arange(best - 0.2, best + 0.2 + 1e-9, 0.05))
    # bottoms line up at -theta on a page turned by theta (y grows downwards)
    return -best


def estimate_skew(ink: NDArray[np.bool_], *, max_degrees: float = 15.0) -> float:
    """Skew of the page in degrees (positive = counter-clockwise).

    On a printed form (at least :data:`MIN_BASELINE_POINTS` glyph-sized components) the
    bottoms of the printed glyphs, dots of dotted rules and box edges give it (see
    :func:`_skew_from_baselines`; +-8 degrees).  Otherwise long, elongated, sparse
    connected components (rules, table and box frames) vote with the orientation of their
    principal axis (second-order moments), weighted by length.  The frames alone were
    measured to miss half of the held-out generated slips (dotted rules, no long line:
    skew left at 0 on 52 %) and to follow a stamp or header bar on some others.  Pages
    without such structure (plain handwriting) are left upright: handwriting's own baseline
    tilt is a trait of the writer and a projection profile on a few words is unreliable
    (measured: +-15 degree false estimates on UNIPEN crops).

    Parameters
    ----------
    ink : (rows, cols) bool
    max_degrees : float
        Largest skew considered.

    Returns
    -------
    float, 0.0 when there is no evidence.
    """
    if ink.ndim != 2:
        raise ValueError(f"ink must be 2-D, got shape {ink.shape}")
    return _page_skew(ink, max_degrees=max_degrees)[0]


def _page_skew(ink: NDArray[np.bool_], *, max_degrees: float = 15.0) -> tuple[float, bool]:
    """(:func:`estimate_skew`, whether the page is a printed form)."""
    if not ink.any():
        return 0.0, False
    _, labels, stats = inkviews.components(ink.astype(np.uint8))
    from_print = _skew_from_baselines(stats, ink.shape)
    if from_print is not None and abs(from_print) <= max_degrees:
        return round(from_print, 2), True
    return round(_skew_from_components(labels, stats, max_degrees=max_degrees), 2), (
        from_print is not None
    )


def _rotation(shape: tuple[int, int], degrees: float) -> NDArray[np.float64]:
    rows, cols = shape
    return cv2.getRotationMatrix2D((cols / 2.0, rows / 2.0), -degrees, 1.0)


def estimate_stroke_width(ink: NDArray[np.bool_]) -> float:
    """Typical stroke width (px) of an ink mask.

    For a stroke of width w the Euclidean distance to the background, averaged over its
    pixels, is about w/4 + 1/2, so w = 4 * mean(distance) - 2.  The mean over all ink
    pixels is insensitive to the jagged outlines that spoil ridge-based medians (measured:
    ridge medians collapsed to 1 px on 1 in 25 UNIPEN crops); exact for bars >= 3 px wide,
    1-2 px strokes read as 2.

    Robust to print the separator let through (thick hatching, bold headings, box frames,
    small print): each connected component gets its own estimate, components whose width
    is outside [0.5, 2] x the sqrt(area)-weighted median component width are left out, and
    the pixel mean runs over the rest (measured on held-out slips with all print kept:
    median |log error| 0.50 -> 0.16; unchanged, 0.006 vs 0.008, on separated handwriting).

    Returns
    -------
    float, nan when there is no ink.
    """
    if not ink.any():
        return float("nan")
    u8 = cv2.copyMakeBorder(ink.astype(np.uint8), 1, 1, 1, 1, cv2.BORDER_CONSTANT, value=0)
    dist = cv2.distanceTransform(u8, cv2.DIST_L2, cv2.DIST_MASK_5)
    area, dist_sum = _component_sums(u8, dist)
    keep = _typical_width_components(area, dist_sum)
    return float(max(1.0, 4.0 * float(dist_sum[keep].sum() / area[keep].sum()) - 2.0))


def _component_sums(
    u8: NDArray[np.uint8], values: NDArray[np.float32]
) -> tuple[NDArray[np.float64], NDArray[np.float64]]:
    """Ink pixels and the sum of ``values`` over them, per 8-connected component of ``u8``."""
    n, labels = cv2.connectedComponents(u8, connectivity=8, ltype=cv2.CV_32S)
    fg = u8 > 0
    lab = labels[fg]
    area = np.bincount(lab, minlength=n)[1:].astype(np.float64)
    sums = np.bincount(lab, weights=values[fg], minlength=n)[1:]
    return area, sums


def _typical_width_components(
    area: NDArray[np.float64],
    dist_sum: NDArray[np.float64],
    *,
    band: tuple[float, float] = (0.5, 2.0),
) -> NDArray[np.bool_]:
    """Components whose stroke width is within ``band`` x the typical one.

    Specks (under 5 % of the 90th-percentile area) do not vote; the typical width is the
    sqrt(area)-weighted median, so neither many specks nor one huge printed block decide it.
    """
    width = 4.0 * dist_sum / np.maximum(area, 1.0) - 2.0
    voters = area >= max(4.0, 0.05 * float(np.percentile(area, 90)))
    if not voters.any():
        return np.ones(area.shape, bool)
    order = np.argsort(width[voters])
    wts = np.sqrt(area[voters])[order]
    cum = np.cumsum(wts)
    typical = float(width[voters][order][np.searchsorted(cum, cum[-1] / 2.0)])
    keep = voters & (width >= band[0] * typical) & (width <= band[1] * typical)
    return keep if keep.any() else voters


def estimate_x_height(ink: NDArray[np.bool_]) -> float:
    """x-height (px): height of the dense core band of the ink's row profile.

    Rows whose ink count exceeds half the peak of the (lightly smoothed) row profile form
    the core band (the body of lower-case letters, the bulk of capitals).  Text on several
    lines gives one band per line; the median band height is returned.  nan when there is
    too little ink.
    """
    if int(np.count_nonzero(ink)) < 30:
        return float("nan")
    prof = np.count_nonzero(ink, axis=1).astype(np.float64)
    prof = np.convolve(prof, np.ones(3) / 3.0, mode="same")
    peak = float(prof.max())
    if peak <= 0:
        return float("nan")
    core = (prof >= 0.5 * peak).astype(np.int8)
    edges = np.diff(np.concatenate([[0], core, [0]]))
    starts, ends = np.nonzero(edges == 1)[0], np.nonzero(edges == -1)[0]
    runs = ends - starts
    runs = runs[runs >= 2] if (runs >= 2).any() else runs
    return float(np.median(runs))


# --------------------------------------------------------------------------- analysis


@dataclass(frozen=True)
class _Analysis:
    flat: NDArray[np.uint8]  # flattened, deskewed grey in the work frame
    ink: NDArray[np.bool_]  # all ink, work frame
    hand: NDArray[np.bool_]  # handwriting ink, work frame
    bg: NDArray[np.uint8]  # background estimate of the unrotated work image (reduced)
    threshold: float  # ink threshold on flattened grey
    skew: float
    f: float  # work frame = input resized by f (then rotated by -skew about its centre)
    low_contrast: bool
    printed_form: bool = False


def _percentile_u8(a: NDArray[np.uint8], q: float) -> float:
    """``np.percentile(a, q)`` (linear method, same arithmetic) of a uint8 image, read off
    its histogram: no sort or partition of the pixels (1 ms -> 0.05 ms on a work frame)."""
    n = a.size
    cum = np.cumsum(cv2.calcHist([a], [0], None, [256], [0, 256]).ravel().astype(np.int64))
    vi = (n - 1) * (q / 100.0)  # numpy's virtual index, then its _lerp
    i = math.floor(vi)
    t = vi - i
    lo = float(np.searchsorted(cum, min(max(i, 0), n - 1), side="right"))
    hi = float(np.searchsorted(cum, min(max(i + 1, 0), n - 1), side="right"))
    d = hi - lo
    return hi - d * (1 - t) if t >= 0.5 else lo + d * t


def _work_factor(rows: int, cols: int, work_pixels: int) -> float:
    # Integer decimation (1/k): OpenCV's area resize has a fast exact path for it.
    k = max(1, math.ceil(math.sqrt(rows * cols / float(work_pixels)) - 0.15))
    return 1.0 / k


@dataclass(frozen=True)
class WorkFrame:
    """A slip in the reduced, deskewed analysis frame (for :mod:`cv.separate` training)."""

    flat: NDArray[np.uint8]  # flattened grey, deskewed
    ink: NDArray[np.bool_]  # all ink
    candidates: NDArray[np.bool_]  # ink left after template removal (= ink without templates)
    bg: NDArray[np.uint8]  # background estimate of the unrotated work image (reduced)
    threshold: float
    skew: float
    f: float  # work frame = input resized by f, then rotated by -skew about its centre
    low_contrast: bool
    printed_form: bool = False  # enough printed glyphs to be a slip form, not a crop

    def map_input(self, layer: NDArray[np.uint8]) -> NDArray[np.uint8]:
        """Bring an input-frame uint8 layer (e.g. a ground-truth mask) into this frame."""
        rows, cols = self.flat.shape
        out = layer
        if out.shape != (rows, cols):
            k = round(1.0 / self.f)
            if k > 1 and (layer.shape[0] // k, layer.shape[1] // k) == (rows, cols):
                out = _shrink(out, k)  # as work_frame cut and shrank the scan
            else:
                out = cv2.resize(out, (cols, rows), interpolation=cv2.INTER_AREA)
        if abs(self.skew) >= 0.3:
            out = cv2.warpAffine(
                out,
                _rotation(out.shape, self.skew),
                (cols, rows),
                flags=cv2.INTER_LINEAR,
                borderMode=cv2.BORDER_CONSTANT,
                borderValue=0,
            )
        return out


def work_frame(
    image: NDArray[np.uint8],
    *,
    templates: Sequence[NDArray[np.uint8]] | None = None,
    deskew: bool = True,
    work_pixels: int = 0,
) -> WorkFrame:
    """Downscale, flatten, binarise, deskew and (optionally) remove a registered template.

    Parameters
    ----------
    image : (rows, cols) uint8
    templates : optional blank designs, see :func:`handwriting_mask`
    deskew : bool
    work_pixels : int
        Size of the frame; 0 = :data:`WORK_PIXELS`.
    """
    image = _check_image(image)
    rows, cols = image.shape
    f = _work_factor(rows, cols, work_pixels or WORK_PIXELS)
    work = image
    if f < 1.0:
        # cut to whole multiples of 1/f: work pixel (i, j) is input block (i/f, j/f) exactly
        work = _shrink(image, round(1.0 / f))
    bg = _background(work)
    flat = _divide(work, bg)
    step = max(1, flat.shape[0] // 200)
    sample = flat[::step]
    lo = _percentile_u8(sample, 0.5)
    low_contrast = 255.0 - lo < MIN_CONTRAST
    if low_contrast:
        dark = cv2.countNonZero(cv2.inRange(sample, 0, int(255.0 - MIN_CONTRAST)))
        low_contrast = dark * step < MIN_DARK_PIXELS
    t = _threshold(flat)
    if _percentile_u8(bg, 50.0) < 2 * MIN_CONTRAST:
        # No paper anywhere (a black or lens-capped scan): nothing can be read.
        t, low_contrast = 0.0, True
    ink = flat < t
    # Print baselines and frames are found at half resolution at a quarter of the cost.
    if flat.size > 150_000:
        skew, printed_form = _page_skew(_shrink(flat, 2) < t)
    else:
        skew, printed_form = _page_skew(ink)
    if not deskew:
        skew = 0.0
    if abs(skew) >= 0.3:
        flat = cv2.warpAffine(
            flat,
            _rotation(flat.shape, skew),
            (flat.shape[1], flat.shape[0]),
            flags=cv2.INTER_LINEAR,
            borderMode=cv2.BORDER_CONSTANT,
            borderValue=255,
        )
        ink = flat < t
    cand = ink
    if templates:
        from cv import register

        cand = register.remove_template(flat, ink, templates=templates)
    return WorkFrame(flat, ink, cand, bg, t, skew, f, low_contrast, printed_form)


# An image without a printed form and with at most this many ink components is a plain crop
# of handwriting (_analyse: no classifier): UNIPEN's 913 crops have 4 (median) to 19; the
# generated and sample slips whose form was not recognised (4 of 480) have 493-938.
PLAIN_CROP_COMPONENTS = 60


def _ink_components(ink: NDArray[np.bool_]) -> int:
    return int(cv2.connectedComponents(ink.view(np.uint8), connectivity=8)[0]) - 1


def _analyse(
    image: NDArray[np.uint8],
    *,
    templates: Sequence[NDArray[np.uint8]] | None,
    deskew: bool,
    work_pixels: int,
    separator: object = True,
) -> _Analysis:
    from cv import separate

    w = work_frame(image, deskew=deskew, work_pixels=work_pixels)
    ink = w.ink
    if not w.printed_form and CREASES:
        # a fold across a sheet of plain paper would be kept as handwriting (on a printed
        # form the classifier, fitted on folded slips, drops it)
        ink = separate.remove_creases(ink)[0]
    # A plain crop of handwriting has no print to classify away, and the classifier (fitted
    # on forms) can take a long cursive word for print (the session-19 separator emptied 11
    # of 913 UNIPEN crops); ruled lines are still removed.
    plain = not w.printed_form and _ink_components(ink) <= PLAIN_CROP_COMPONENTS
    hand = separate.separate(w.flat, ink, model=separator, plain=plain)  # type: ignore[arg-type]
    if STAMPS:
        hand &= ~stamp_mask(w.ink)
    if templates:
        # The registered design's print is removed from the separator's output, not before
        # it: the separator was fitted on whole pages, and a page with its form cut away
        # leaves print fragments (stamps, remnants) it mistook for handwriting (measured:
        # precision 0.78 removing before, vs 0.83 without templates).
        from cv import register

        hand = register.remove_template(w.flat, w.ink, templates=templates, within=hand)
    return _Analysis(
        w.flat, w.ink, hand, w.bg, w.threshold, w.skew, w.f, w.low_contrast, w.printed_form
    )


def _to_input_frame(
    a: _Analysis, work_mask: NDArray[np.bool_], shape: tuple[int, int]
) -> NDArray[np.bool_]:
    """Map a work-frame mask back to the input frame (undo rotation and work scale)."""
    rows, cols = shape
    u8 = work_mask.astype(np.uint8) * 255
    if abs(a.skew) >= 0.3:
        u8 = cv2.warpAffine(
            u8,
            _rotation(u8.shape, -a.skew),
            (u8.shape[1], u8.shape[0]),
            flags=cv2.INTER_LINEAR,
            borderMode=cv2.BORDER_CONSTANT,
            borderValue=0,
        )
    if u8.shape != (rows, cols):
        k = round(1.0 / a.f)
        wr, wc = u8.shape
        if k > 1 and (rows // k, cols // k) == (wr, wc):
            # the work frame covers the scan's first wr*k rows and wc*k columns (_shrink)
            u8 = cv2.resize(u8, (wc * k, wr * k), interpolation=cv2.INTER_LINEAR)
            u8 = cv2.copyMakeBorder(u8, 0, rows - wr * k, 0, cols - wc * k, cv2.BORDER_REPLICATE)
        else:
            u8 = cv2.resize(u8, (cols, rows), interpolation=cv2.INTER_LINEAR)
    return u8 > 0


def handwriting_mask(
    image: NDArray[np.uint8],
    *,
    templates: Sequence[NDArray[np.uint8]] | None = None,
    work_pixels: int = 0,
) -> NDArray[np.bool_]:
    """Handwriting pixels of a slip at full resolution, aligned with the input.

    The separation runs in the reduced, deskewed work frame; the result is mapped back and
    intersected with the full-resolution ink (flattened with the same background and
    threshold), so stroke outlines are exact at full resolution.

    Parameters
    ----------
    image : (rows, cols) uint8
    templates : sequence of (r, c) uint8 or cv.register.Template, optional
        Blank scans of the slip designs in use (see :mod:`cv.register`).
    work_pixels : int
        Size of the work frame; 0 = the default :data:`WORK_PIXELS`.

    Returns
    -------
    (rows, cols) bool, True = handwriting ink.
    """
    image = _check_image(image)
    rows, cols = image.shape
    if rows < 4 or cols < 4:
        return np.zeros((rows, cols), dtype=bool)
    page, up = _page_sized(image)
    a = _analyse(page, templates=templates, deskew=True, work_pixels=work_pixels or WORK_PIXELS)
    mask = _full_mask(page, a)
    if up == 1.0:
        return mask
    # back to the input's pixels, kept where the input itself has ink
    back = cv2.resize(
        mask.view(np.uint8) * np.uint8(255), (cols, rows), interpolation=cv2.INTER_AREA
    )
    return (back > 63) & (flatten_background(image) < a.threshold)


def _full_mask(image: NDArray[np.uint8], a: _Analysis) -> NDArray[np.bool_]:
    rows, cols = image.shape
    near = _to_input_frame(a, a.hand, (rows, cols))
    if a.f >= 1.0:
        return near if abs(a.skew) < 0.3 else near & (_divide(image, a.bg) < a.threshold)
    near = cv2.dilate(near.astype(np.uint8), np.ones((3, 3), np.uint8)) > 0
    full_ink = _divide(image, a.bg) < a.threshold
    return near & full_ink


def _detail_region(
    image: NDArray[np.uint8], a: _Analysis, box: tuple[int, int, int, int], pad: int = 24
) -> tuple[NDArray[np.bool_], NDArray[np.uint8], tuple[int, int]]:
    """Handwriting mask and flattened grey at input resolution around a work-frame box.

    Only the box (plus ``pad`` work pixels) is warped and flattened, deskewed like the work
    frame: the cost follows the handwriting's extent, not the scan's. Returns the two
    layers and the region's (row, col) origin in the deskewed full-resolution frame.
    """
    rows, cols = image.shape
    up = 1.0 / a.f
    wr0, wr1, wc0, wc1 = box
    wr0, wc0 = max(0, wr0 - pad), max(0, wc0 - pad)
    wr1, wc1 = min(a.hand.shape[0], wr1 + pad), min(a.hand.shape[1], wc1 + pad)
    r0, c0 = int(round(wr0 * up)), int(round(wc0 * up))
    r1, c1 = min(rows, int(round(wr1 * up))), min(cols, int(round(wc1 * up)))
    h, w = max(1, r1 - r0), max(1, c1 - c0)
    # input -> deskewed full frame, then shifted to the region's origin
    m = np.vstack(
        [_rotation((rows, cols), a.skew) if abs(a.skew) >= 0.3 else np.eye(2, 3), [0, 0, 1]]
    )
    m[0, 2] -= c0
    m[1, 2] -= r0
    # background pixel -> input pixel (the centre-aligned mapping of cv2.resize)
    sy, sx = rows / a.bg.shape[0], cols / a.bg.shape[1]
    to_input = np.array([[sx, 0, 0.5 * (sx - 1)], [0, sy, 0.5 * (sy - 1)], [0, 0, 1]])
    # unskewed, the warp is an integer shift inside the image: it would only copy pixels
    grey = image[r0 : r0 + h, c0 : c0 + w]
    if abs(a.skew) >= 0.3 or grey.shape != (h, w):
        grey = cv2.warpAffine(
            image, m[:2], (w, h), flags=cv2.INTER_LINEAR, borderMode=cv2.BORDER_REPLICATE
        )
    bg = cv2.warpAffine(
        a.bg, (m @ to_input)[:2], (w, h), flags=cv2.INTER_LINEAR, borderMode=cv2.BORDER_REPLICATE
    )
    flat = cv2.divide(grey, bg, scale=255.0)
    near = cv2.resize(
        a.hand[wr0:wr1, wc0:wc1].astype(np.uint8), (w, h), interpolation=cv2.INTER_NEAREST
    )
    near = cv2.dilate(near, np.ones((3, 3), np.uint8)) > 0
    return near & (flat < a.threshold), flat, (r0, c0)


def _boxes_from_mask(hand: NDArray[np.bool_], *, gap: int) -> list[tuple[int, int, int, int]]:
    if not hand.any():
        return []
    ys, xs = np.nonzero(hand.any(axis=1))[0], np.nonzero(hand.any(axis=0))[0]
    r_off, c_off = int(ys[0]), int(xs[0])
    if r_off or c_off or ys[-1] + 1 < hand.shape[0] or xs[-1] + 1 < hand.shape[1]:
        inner = _boxes_from_mask(hand[r_off : ys[-1] + 1, c_off : xs[-1] + 1], gap=gap)
        return [(a + r_off, b + c_off, c + r_off, d + c_off) for a, b, c, d in inner]
    # Group ink closer than ``gap`` on a grid of gap/2 cells: cheap at any image size.
    c = max(1, gap // 2)
    rows, cols = hand.shape
    gr, gc = -(-rows // c), -(-cols // c)
    padded = np.zeros((gr * c, gc * c), dtype=bool)
    padded[:rows, :cols] = hand
    # any ink per c x c cell: a max filter anchored at the cell's corner, read every c-th
    # pixel (20x faster than numpy's any() over the reshaped blocks)
    block_max = cv2.dilate(padded.view(np.uint8), np.ones((c, c), np.uint8), anchor=(0, 0))
    cells = np.ascontiguousarray(block_max[::c, ::c])
    cells = cv2.dilate(cells, np.ones((1, 3), np.uint8))
    n, labels, stats, _ = cv2.connectedComponentsWithStats(cells, connectivity=8)
    boxes = []
    for i in range(1, n):
        x, y, w, h, _ = stats[i]
        r0, c0 = y * c, x * c
        sub = hand[r0 : (y + h) * c, c0 : (x + w) * c]
        if not sub.any():
            continue
        rr = np.nonzero(sub.any(axis=1))[0]
        cc = np.nonzero(sub.any(axis=0))[0]
        boxes.append((int(r0 + rr[0]), int(c0 + cc[0]), int(r0 + rr[-1] + 1), int(c0 + cc[-1] + 1)))
    boxes.sort()
    return boxes


def handwriting_boxes(
    image: NDArray[np.uint8],
    *,
    templates: Sequence[NDArray[np.uint8]] | None = None,
    gap: int = 0,
) -> list[tuple[int, int, int, int]]:
    """Regions of handwriting as ``(row0, col0, row1, col1)`` (end-exclusive), input frame.

    Parameters
    ----------
    image : (rows, cols) uint8
    templates : optional blank designs, see :func:`handwriting_mask`
    gap : int
        Ink closer than this (px) joins one box; 0 = automatic (3 stroke widths, >= 8 px).
    """
    return boxes_of_mask(handwriting_mask(image, templates=templates), gap=gap)


def boxes_of_mask(hand: NDArray[np.bool_], *, gap: int = 0) -> list[tuple[int, int, int, int]]:
    """:func:`handwriting_boxes` of a handwriting mask already computed."""
    if gap <= 0:
        sw = estimate_stroke_width(hand)
        gap = max(8, int(round(3 * sw))) if math.isfinite(sw) else 8
    return _boxes_from_mask(hand, gap=gap)


# --------------------------------------------------------------------------- preprocess


def _empty(
    flags: tuple[str, ...],
    skew: float = 0.0,
    scale: float = 1.0,
    design: NDArray[np.float32] | None = None,
) -> Prepared:
    q = Quality(
        ink_pixels=0,
        handwriting_area=0.0,
        stroke_width=float("nan"),
        x_height=float("nan"),
        skew_degrees=skew,
        flags=flags,
    )
    return Prepared(
        ink=np.zeros((1, 1), np.uint8),
        grey=np.full((1, 1), 255, np.uint8),
        scale=scale,
        quality=q,
        design=design,
    )


def preprocess(
    image: NDArray[np.uint8],
    *,
    templates: Sequence[NDArray[np.uint8]] | None = None,
    target_stroke_width: float = 3.0,
    margin: int = 8,
    min_scale: float = 0.1,
    max_scale: float = 4.0,
    deskew: bool = True,
    work_pixels: int = 0,
    design: bool = True,
) -> Prepared:
    """Isolate, deskew, crop and scale-normalise the handwriting of a slip or a crop.

    Never raises on a valid 2-D uint8 array: unusable input gets quality flags (``blank``,
    ``tiny_image``, ``low_contrast``, ``too_little_handwriting``, ``huge_image``).

    Parameters
    ----------
    image : (rows, cols) uint8
        Greyscale scan, dark ink on light paper.
    templates : sequence of (r, c) uint8 or cv.register.Template, optional
        Blank scans of the known slip designs; their print is removed after registration.
    target_stroke_width : float
        Median handwriting stroke width (px) after scale normalisation.
    margin : int
        Background margin (px, after normalisation) around the handwriting crop.
    min_scale, max_scale : float
        Clamp of the normalisation factor (protects against absurd estimates).
    deskew : bool
        Estimate and undo the page skew (from ruled lines and frames).
    work_pixels : int
        Size of the reduced analysis frame; 0 = the default :data:`WORK_PIXELS`.
    design : bool
        Also sign the printed design (``Prepared.design``, ~0.9 ms); False where only the
        handwriting is wanted (the service's extraction, which never ranks by design).

    Returns
    -------
    Prepared
    """
    image = _check_image(image)
    if not target_stroke_width > 0:
        raise ValueError(f"target_stroke_width must be positive, got {target_stroke_width}")
    if margin < 0:
        raise ValueError(f"margin must be >= 0, got {margin}")
    if not 0 < min_scale <= max_scale:
        raise ValueError(f"need 0 < min_scale <= max_scale, got {min_scale}, {max_scale}")
    if work_pixels < 0:
        raise ValueError(f"work_pixels must be >= 0, got {work_pixels}")
    rows, cols = image.shape
    if rows < MIN_SIDE or cols < MIN_SIDE:
        return _empty(("tiny_image",))
    flags: list[str] = []
    if rows * cols > HUGE_PIXELS:
        flags.append("huge_image")
    image, page_up = _page_sized(image)
    rows, cols = image.shape

    a = _analyse(image, templates=templates, deskew=deskew, work_pixels=work_pixels or WORK_PIXELS)
    # the print the separator removed tells the slip's design (cv.design: rankings discount it)
    signature = print_signature(a.ink & ~a.hand) if design and a.printed_form else None
    if a.low_contrast:
        flags.append("low_contrast")
    hand = a.hand
    if not hand.any():
        flags.append("blank" if not a.ink.any() or a.low_contrast else "too_little_handwriting")
        return _empty(
            tuple(dict.fromkeys(flags)), skew=a.skew, scale=a.f * page_up, design=signature
        )

    # bounding box from the row and column projections (a full nonzero() costs 10x more)
    ys, xs = np.flatnonzero(hand.any(axis=1)), np.flatnonzero(hand.any(axis=0))
    r0, r1, c0, c1 = int(ys[0]), int(ys[-1]) + 1, int(xs[0]), int(xs[-1]) + 1
    crop_hand = hand[r0:r1, c0:c1]
    xh_work = estimate_x_height(crop_hand)
    detail = a.f < 1.0 and rows * cols <= DETAIL_PIXELS
    # at full resolution the stroke width is measured there (below), once
    sw_work = 0.0 if detail else estimate_stroke_width(crop_hand)
    boxes = _boxes_from_mask(crop_hand, gap=max(8, int(round(3 * (sw_work or 2.0)))))
    box_area = sum((b[2] - b[0]) * (b[3] - b[1]) for b in boxes)
    area_frac = float(box_area) / float(hand.size)
    if detail:
        # Describe the strokes at full resolution: the work frame (half size on a 1.2 MP
        # slip) only decides *where* handwriting is; its blocky 1-2 px strokes lose the
        # shape detail the features measure (held-out generated mAP 0.395 -> 0.427).
        hand, flat, (R0, C0) = _detail_region(image, a, (r0, r1, c0, c1))
        up = 1.0 / a.f
        r0, r1, c0, c1 = (int(round(v * up)) for v in (r0, r1, c0, c1))
        r0, r1, c0, c1 = r0 - R0, min(r1 - R0, hand.shape[0]), c0 - C0, min(c1 - C0, hand.shape[1])
        sub = hand[r0:r1, c0:c1]
        # a printed form is scaled by its page: its stroke width is only reported, and is
        # measured below on the final crop (same pixels at ~1x, components shared)
        sw_work = 2.0 * up
        if not a.printed_form and sub.any():
            sw_work = estimate_stroke_width(sub)
        xh_work *= up
        a = dataclasses.replace(a, flat=flat, f=1.0)

    # s: output pixels per input pixel; k: output pixels per work pixel.
    if a.printed_form:
        # A slip form is its own ruler: scale by the page, not by the handwriting.  The
        # writer's pen width and letter size are traits (stroke-width normalisation took
        # them out of the shape families), and a stroke-width estimate moves with every
        # re-scan (7 % for one JPEG re-encode), which moves every feature (validation
        # writers: generated mAP 0.791 -> 0.812).  A page of another resolution (dpi) is
        # brought to the reference page's pixel count.
        s = target_stroke_width / PAGE_STROKE_WIDTH * math.sqrt(PAGE_PIXELS / (rows * cols))
        s = float(np.clip(s, min_scale, max_scale))
    else:
        s = float(np.clip(target_stroke_width * a.f / sw_work, min_scale, max_scale))
    k = s / a.f
    pad = int(math.ceil(margin / k))
    r0p, c0p = max(0, r0 - pad), max(0, c0 - pad)
    r1p, c1p = min(hand.shape[0], r1 + pad), min(hand.shape[1], c1 + pad)
    h_crop = hand[r0p:r1p, c0p:c1p].astype(np.uint8) * 255
    g_crop = a.flat[r0p:r1p, c0p:c1p]
    # Keep the grey of handwriting strokes (and their anti-aliased rims), whiten the rest.
    near = cv2.dilate(h_crop, np.ones((3, 3), np.uint8))
    g_crop = cv2.bitwise_or(g_crop, cv2.bitwise_not(near))  # near is 0/255
    top, left = pad - (r0 - r0p), pad - (c0 - c0p)
    bottom, right = pad - (r1p - r1), pad - (c1p - c1)
    if top or left or bottom or right:
        h_crop = cv2.copyMakeBorder(h_crop, top, bottom, left, right, cv2.BORDER_CONSTANT, value=0)
        g_crop = cv2.copyMakeBorder(
            g_crop, top, bottom, left, right, cv2.BORDER_CONSTANT, value=255
        )
    grey = _resized(g_crop, k)
    ink = _ink_at(h_crop, k)
    n_ink = int(np.count_nonzero(ink))
    components = None
    if detail and a.printed_form:
        components = inkviews.components(ink)
        if n_ink:
            sw_work = _crop_stroke_width(ink, components) / k
    form_floor = MIN_FORM_INK_PIXELS * (target_stroke_width / 5.0) ** 2
    if n_ink < (form_floor if a.printed_form else MIN_INK_PIXELS):
        flags.append("too_little_handwriting")
    q = Quality(
        ink_pixels=n_ink,
        handwriting_area=area_frac,
        stroke_width=float(sw_work / a.f / page_up),  # in the input's pixels
        x_height=float(xh_work / a.f / page_up),
        skew_degrees=float(a.skew),
        flags=tuple(dict.fromkeys(flags)),
    )
    return Prepared(
        ink=ink,
        grey=grey,
        scale=s * page_up,
        quality=q,
        design=signature,
        crop=(h_crop, k),
        components=components,
    )


def _crop_stroke_width(
    ink: NDArray[np.uint8], components: tuple[int, NDArray[np.int32], NDArray[np.int32]]
) -> float:
    """:func:`estimate_stroke_width` of a 0/255 ink crop from its :func:`inkviews.components`
    (the same estimate without a second labelling of the crop)."""
    border = max(ink[0].max(), ink[-1].max(), ink[:, 0].max(), ink[:, -1].max())
    if border:  # the distance transform needs background all round (no margin asked for)
        return estimate_stroke_width(ink > 0)
    n, labels, _ = components
    dist = cv2.distanceTransform(ink, cv2.DIST_L2, cv2.DIST_MASK_5)
    xy = cv2.findNonZero(ink).reshape(-1, 2)
    idx = xy[:, 1].astype(np.int64) * ink.shape[1] + xy[:, 0]
    lab = labels.ravel()[idx]
    area = np.bincount(lab, minlength=n)[1:].astype(np.float64)
    dist_sum = np.bincount(lab, weights=dist.ravel()[idx], minlength=n)[1:]
    keep = _typical_width_components(area, dist_sum)
    return float(max(1.0, 4.0 * float(dist_sum[keep].sum() / area[keep].sum()) - 2.0))


def _resized(crop: NDArray[np.uint8], k: float) -> NDArray[np.uint8]:
    """``crop`` resized by the factor ``k`` (bilinear down to half size, area-averaged below).

    A factor in [0.5, 1) has at most two input pixels per output pixel and side, which
    bilinear interpolation still weighs; OpenCV's area resize at such a non-integer factor
    cost 6x more (2.57 ms against 0.39 ms, session 11).
    """
    size = (max(1, int(round(crop.shape[1] * k))), max(1, int(round(crop.shape[0] * k))))
    return cv2.resize(crop, size, interpolation=cv2.INTER_AREA if k < 0.5 else cv2.INTER_LINEAR)


def _ink_at(h_crop: NDArray[np.uint8], k: float) -> NDArray[np.uint8]:
    """The 0/255 handwriting mask resized by ``k`` and re-thresholded at half (255 = ink)."""
    return cv2.threshold(_resized(h_crop, k), 127, 255, cv2.THRESH_BINARY)[1]  # >= 128 -> 255


def rescaled_ink(prepared: Prepared, factor: float) -> NDArray[np.uint8]:
    """The handwriting ink as :func:`preprocess` makes it with ``factor`` times the scale
    (as with ``factor`` times the target stroke width; only the margin, 8 px at factor 1,
    scales too): one resize of the kept crop, not a second preprocessing.

    Parameters
    ----------
    prepared : Prepared
        A :func:`preprocess` result; one without handwriting gives its (empty) ink back.
    factor : float
        Scale relative to ``prepared``'s, > 0.

    Returns
    -------
    (rows, cols) uint8
        255 = handwriting ink.
    """
    if not factor > 0:
        raise ValueError(f"factor must be positive, got {factor}")
    if prepared.crop is None:
        return prepared.ink
    h_crop, k = prepared.crop
    return _ink_at(h_crop, k * factor)
