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

import io
import math
import warnings
from collections.abc import Sequence
from dataclasses import dataclass

import cv2
import numpy as np
from numpy.typing import NDArray

__all__ = [
    "Prepared",
    "Quality",
    "binarise",
    "estimate_skew",
    "estimate_stroke_width",
    "estimate_x_height",
    "flatten_background",
    "handwriting_boxes",
    "handwriting_mask",
    "load_image",
    "preprocess",
]

# Work on at most this many pixels; a 10000 x 10000 scan is resampled first (area average)
# so memory and time stay bounded.  4 MP keeps 300 dpi A5 slips at full resolution.
MAX_WORK_PIXELS = 4_000_000
# Below this many handwriting ink pixels (at the normalised scale) a slip carries too
# little handwriting to describe a writer.
MIN_INK_PIXELS = 150
# Images with fewer rows or columns than this are flagged tiny.
MIN_SIDE = 16
# Minimum ink/background contrast (grey levels on the flattened image) to call ink.
MIN_CONTRAST = 40.0


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
    the total resize factor applied to the input image.
    """

    ink: NDArray[np.uint8]
    grey: NDArray[np.uint8]
    scale: float
    quality: Quality


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
    from PIL import Image, ImageOps, UnidentifiedImageError

    if not isinstance(data, bytes | bytearray | memoryview):
        raise ValueError(f"data must be bytes, got {type(data).__name__}")
    if len(data) == 0:
        raise ValueError("data is empty")
    if max_pixels <= 0:
        raise ValueError(f"max_pixels must be positive, got {max_pixels}")
    try:
        with warnings.catch_warnings():
            # Pillow warns (and raises beyond 2x) on bombs; we check the size ourselves.
            warnings.simplefilter("ignore", Image.DecompressionBombWarning)
            img = Image.open(io.BytesIO(bytes(data)))
            cols, rows = img.size
            if cols <= 0 or rows <= 0:
                raise ValueError(f"image has empty size {cols}x{rows}")
            if rows * cols > max_pixels:
                raise ValueError(
                    f"image is too large: {cols}x{rows} = {rows * cols} pixels "
                    f"exceeds max_pixels={max_pixels}"
                )
            if img.format not in {"PNG", "JPEG", "TIFF", "MPO"}:
                raise ValueError(f"unsupported image format {img.format!r}; use PNG, JPEG or TIFF")
            img.seek(0)
            img = ImageOps.exif_transpose(img)
            img.load()
    except ValueError:
        raise
    except (UnidentifiedImageError, OSError, SyntaxError, Image.DecompressionBombError) as exc:
        raise ValueError(f"cannot decode image: {exc}") from exc
    except Exception as exc:  # Pillow raises assorted errors on truncated/corrupt files
        raise ValueError(f"cannot decode image: {type(exc).__name__}: {exc}") from exc
    return _pil_to_grey(img)


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


def flatten_background(image: NDArray[np.uint8], *, ink_size: int = 0) -> NDArray[np.uint8]:
    """Divide out uneven lighting: ``out = 255 * image / background``.

    The background is estimated at reduced resolution by a grey closing (a max filter
    removes dark strokes thinner than the kernel) followed by a median that removes the
    closing's blockiness; then it is resized back.  Dark ink stays dark, paper becomes ~255.

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
    if ink_size <= 0:
        ink_size = max(15, int(0.02 * min(rows, cols)))
    # Reduce so the closing kernel is ~7 px at the small scale: fast and smooth.
    f = max(1, ink_size // 5)
    small = cv2.resize(image, (max(1, cols // f), max(1, rows // f)), interpolation=cv2.INTER_AREA)
    k = 7
    kernel = cv2.getStructuringElement(cv2.MORPH_RECT, (k, k))
    bg = cv2.morphologyEx(small, cv2.MORPH_CLOSE, kernel, borderType=cv2.BORDER_REPLICATE)
    bg = cv2.dilate(bg, cv2.getStructuringElement(cv2.MORPH_RECT, (3, 3)))
    bg = cv2.medianBlur(bg, 5)
    bg = cv2.resize(bg, (cols, rows), interpolation=cv2.INTER_LINEAR)
    bg = np.maximum(bg, 1)
    out = cv2.divide(image, bg, scale=255.0)
    return out


def binarise(flat: NDArray[np.uint8], *, min_contrast: float = MIN_CONTRAST) -> NDArray[np.bool_]:
    """Ink mask of a flattened image (paper ~255).

    Otsu's threshold on the darkness of the flattened image, floored at ``min_contrast``
    grey levels below paper so that a blank page does not turn its noise into ink.

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
    t, _ = cv2.threshold(flat, 0, 255, cv2.THRESH_BINARY + cv2.THRESH_OTSU)
    t = min(float(t), 255.0 - min_contrast)
    return flat < t


# --------------------------------------------------------------------------- geometry


def estimate_skew(
    ink: NDArray[np.bool_], *, max_degrees: float = 15.0, max_points: int = 60_000
) -> float:
    """Skew of text lines / ruled lines in degrees (positive = counter-clockwise).

    Projection-profile method (Postl 1986): the angle whose rotated row histogram of ink
    pixels has the largest sum of squared differences between adjacent bins.  Works on a
    subsample of ink coordinates, so it costs a few ms for any image.

    Parameters
    ----------
    ink : (rows, cols) bool
    max_degrees : float
        Search range +-max_degrees.

    Returns
    -------
    float, 0.0 when there is too little ink to tell.
    """
    ys, xs = np.nonzero(ink)
    if ys.size < 50:
        return 0.0
    if ys.size > max_points:
        rng = np.random.default_rng(0)
        sel = rng.choice(ys.size, size=max_points, replace=False)
        ys, xs = ys[sel], xs[sel]
    ys = ys.astype(np.float64) - ink.shape[0] / 2
    xs = xs.astype(np.float64) - ink.shape[1] / 2

    def score(deg: float) -> float:
        a = math.radians(deg)
        # Row of each point after rotating the image by -deg (undoing a deg skew).
        r = ys * math.cos(a) + xs * math.sin(a)
        r = np.rint(r - r.min()).astype(np.int64)
        h = np.bincount(r).astype(np.float64)
        return float(np.sum(np.diff(h) ** 2))

    coarse = np.arange(-max_degrees, max_degrees + 1e-9, 1.0)
    scores = [score(d) for d in coarse]
    best = float(coarse[int(np.argmax(scores))])
    fine = np.arange(best - 1.0, best + 1.0 + 1e-9, 0.1)
    scores = [score(d) for d in fine]
    best = float(fine[int(np.argmax(scores))])
    # A flat score landscape (no lines at all) gives no evidence: keep the image upright.
    if max(scores) <= 1.02 * score(0.0):
        return 0.0
    return round(best, 2)


def _rotate(image: NDArray[np.uint8], degrees: float, *, border: int) -> NDArray[np.uint8]:
    rows, cols = image.shape
    m = cv2.getRotationMatrix2D((cols / 2.0, rows / 2.0), -degrees, 1.0)
    return cv2.warpAffine(
        image,
        m,
        (cols, rows),
        flags=cv2.INTER_LINEAR,
        borderMode=cv2.BORDER_CONSTANT,
        borderValue=border,
    )


def estimate_stroke_width(ink: NDArray[np.bool_]) -> float:
    """Median stroke width (px) of an ink mask.

    Twice the distance-transform value on the ridge (pixels that are local maxima of the
    distance to background), i.e. the diameter of the largest disc inside the stroke.

    Returns
    -------
    float, nan when there is no ink.
    """
    if not ink.any():
        return float("nan")
    u8 = ink.astype(np.uint8)
    u8 = cv2.copyMakeBorder(u8, 1, 1, 1, 1, cv2.BORDER_CONSTANT, value=0)
    dist = cv2.distanceTransform(u8, cv2.DIST_L2, 3)
    ridge = (dist >= cv2.dilate(dist, np.ones((3, 3), np.uint8))) & (u8 > 0)
    vals = dist[ridge]
    if vals.size == 0:
        return float("nan")
    # distanceTransform gives the distance to the nearest zero pixel *centre*; a one-pixel
    # stroke has value 1, so the width is 2*d - 1.
    return float(max(1.0, 2.0 * np.median(vals) - 1.0))


def estimate_x_height(ink: NDArray[np.bool_]) -> float:
    """x-height (px): height of the densest horizontal band of the ink's row profile.

    The core band is where the row profile exceeds half its peak (the main body of lower-
    case letters / the bulk of capitals); nan when there is too little ink.
    """
    if int(ink.sum()) < 30:
        return float("nan")
    prof = ink.sum(axis=1).astype(np.float64)
    prof = np.convolve(prof, np.ones(3) / 3.0, mode="same")
    peak = float(prof.max())
    if peak <= 0:
        return float("nan")
    return float(np.count_nonzero(prof >= 0.5 * peak))


# --------------------------------------------------------------------------- separation


@dataclass(frozen=True)
class _Analysis:
    flat: NDArray[np.uint8]  # flattened, deskewed, work-resolution grey
    ink: NDArray[np.bool_]  # all ink, same frame
    hand: NDArray[np.bool_]  # handwriting ink, same frame
    skew: float
    work_scale: float  # work frame = input * work_scale (before rotation)
    low_contrast: bool


def _analyse(
    image: NDArray[np.uint8],
    *,
    templates: Sequence[NDArray[np.uint8]] | None,
    deskew: bool,
) -> _Analysis:
    from cv import separate

    rows, cols = image.shape
    work_scale = 1.0
    if rows * cols > MAX_WORK_PIXELS:
        work_scale = math.sqrt(MAX_WORK_PIXELS / (rows * cols))
        image = cv2.resize(
            image,
            (max(1, round(cols * work_scale)), max(1, round(rows * work_scale))),
            interpolation=cv2.INTER_AREA,
        )
    flat = flatten_background(image)
    lo = float(np.percentile(flat, 1)) if flat.size else 255.0
    low_contrast = 255.0 - lo < MIN_CONTRAST
    ink = binarise(flat)
    skew = estimate_skew(ink) if deskew else 0.0
    if abs(skew) >= 0.3:
        flat = _rotate(flat, skew, border=255)
        ink = binarise(flat)
    if templates:
        from cv import register

        ink_wo_template = register.remove_template(flat, ink, templates=templates)
    else:
        ink_wo_template = ink
    hand = separate.separate(flat, ink_wo_template)
    return _Analysis(flat, ink, hand, skew, work_scale, low_contrast)


def handwriting_mask(
    image: NDArray[np.uint8], *, templates: Sequence[NDArray[np.uint8]] | None = None
) -> NDArray[np.bool_]:
    """Handwriting pixels of a slip at full resolution, aligned with the input.

    Parameters
    ----------
    image : (rows, cols) uint8
    templates : sequence of (r, c) uint8, optional
        Blank scans of the slip designs in use (see :mod:`cv.register`).

    Returns
    -------
    (rows, cols) bool, True = handwriting ink.
    """
    image = _check_image(image)
    rows, cols = image.shape
    if rows < 2 or cols < 2:
        return np.zeros((rows, cols), dtype=bool)
    a = _analyse(image, templates=templates, deskew=True)
    hand = a.hand.astype(np.uint8) * 255
    if abs(a.skew) >= 0.3:
        hand = _rotate(hand, -a.skew, border=0)
    if hand.shape != (rows, cols):
        hand = cv2.resize(hand, (cols, rows), interpolation=cv2.INTER_LINEAR)
    return hand >= 128


def _boxes_from_mask(hand: NDArray[np.bool_], *, gap: int) -> list[tuple[int, int, int, int]]:
    if not hand.any():
        return []
    u8 = hand.astype(np.uint8)
    k = cv2.getStructuringElement(cv2.MORPH_RECT, (2 * gap + 1, max(1, gap) + 1))
    merged = cv2.dilate(u8, k)
    n, _, stats, _ = cv2.connectedComponentsWithStats(merged, connectivity=8)
    boxes = []
    for i in range(1, n):
        x, y, w, h, _ = stats[i]
        sub = u8[y : y + h, x : x + w]
        if not sub.any():
            continue
        rr = np.nonzero(sub.any(axis=1))[0]
        cc = np.nonzero(sub.any(axis=0))[0]
        boxes.append((int(y + rr[0]), int(x + cc[0]), int(y + rr[-1] + 1), int(x + cc[-1] + 1)))
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
    hand = handwriting_mask(image, templates=templates)
    if gap <= 0:
        sw = estimate_stroke_width(hand)
        gap = max(8, int(round(3 * sw))) if math.isfinite(sw) else 8
    return _boxes_from_mask(hand, gap=gap)


# --------------------------------------------------------------------------- preprocess


def _empty(flags: tuple[str, ...], skew: float = 0.0, scale: float = 1.0) -> Prepared:
    q = Quality(
        ink_pixels=0,
        handwriting_area=0.0,
        stroke_width=float("nan"),
        x_height=float("nan"),
        skew_degrees=skew,
        flags=flags,
    )
    return Prepared(
        ink=np.zeros((1, 1), np.uint8), grey=np.full((1, 1), 255, np.uint8), scale=scale, quality=q
    )


def preprocess(
    image: NDArray[np.uint8],
    *,
    templates: Sequence[NDArray[np.uint8]] | None = None,
    target_stroke_width: float = 3.0,
    margin: int = 8,
    min_scale: float = 0.25,
    max_scale: float = 4.0,
    deskew: bool = True,
) -> Prepared:
    """Isolate, deskew, crop and scale-normalise the handwriting of a slip or a crop.

    Never raises on a valid 2-D uint8 array: unusable input gets quality flags (``blank``,
    ``tiny_image``, ``low_contrast``, ``too_little_handwriting``, ``downscaled``).

    Parameters
    ----------
    image : (rows, cols) uint8
        Greyscale scan, dark ink on light paper.
    templates : sequence of (r, c) uint8, optional
        Blank scans of the known slip designs; their print is removed after registration.
    target_stroke_width : float
        Median stroke width (px) after scale normalisation.
    margin : int
        Background margin (px, after normalisation) around the handwriting crop.
    min_scale, max_scale : float
        Clamp of the normalisation factor (protects against absurd estimates).
    deskew : bool
        Estimate and undo the page skew.

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
    rows, cols = image.shape
    if rows < MIN_SIDE or cols < MIN_SIDE:
        return _empty(("tiny_image",))

    a = _analyse(image, templates=templates, deskew=deskew)
    flags: list[str] = []
    if a.work_scale < 1.0:
        flags.append("downscaled")
    if a.low_contrast:
        flags.append("low_contrast")
    hand = a.hand
    n_hand = int(hand.sum())
    if n_hand == 0:
        flags.append("blank" if not a.ink.any() or a.low_contrast else "too_little_handwriting")
        return _empty(tuple(dict.fromkeys(flags)), skew=a.skew, scale=a.work_scale)

    sw = estimate_stroke_width(hand)
    ys, xs = np.nonzero(hand)
    r0, r1, c0, c1 = int(ys.min()), int(ys.max()) + 1, int(xs.min()), int(xs.max()) + 1
    crop_hand = hand[r0:r1, c0:c1]
    xh = estimate_x_height(crop_hand)
    boxes = _boxes_from_mask(hand, gap=max(8, int(round(3 * sw))))
    box_area = sum((b[2] - b[0]) * (b[3] - b[1]) for b in boxes)
    area_frac = float(box_area) / float(hand.size)

    s = float(np.clip(target_stroke_width / sw, min_scale, max_scale))
    pad = int(math.ceil(margin / s))
    r0p, c0p = max(0, r0 - pad), max(0, c0 - pad)
    r1p, c1p = min(hand.shape[0], r1 + pad), min(hand.shape[1], c1 + pad)
    h_crop = hand[r0p:r1p, c0p:c1p]
    g_crop = np.where(h_crop, a.flat[r0p:r1p, c0p:c1p], np.uint8(255)).astype(np.uint8)
    # Pad to the full margin when the crop touches the page edge.
    top, left = pad - (r0 - r0p), pad - (c0 - c0p)
    bottom, right = pad - (r1p - r1), pad - (c1p - c1)
    if top or left or bottom or right:
        h_crop = cv2.copyMakeBorder(
            h_crop.astype(np.uint8), top, bottom, left, right, cv2.BORDER_CONSTANT, value=0
        ).astype(bool)
        g_crop = cv2.copyMakeBorder(
            g_crop, top, bottom, left, right, cv2.BORDER_CONSTANT, value=255
        )
    out_cols = max(1, int(round(h_crop.shape[1] * s)))
    out_rows = max(1, int(round(h_crop.shape[0] * s)))
    interp = cv2.INTER_AREA if s < 1 else cv2.INTER_LINEAR
    grey = cv2.resize(g_crop, (out_cols, out_rows), interpolation=interp)
    ink_f = cv2.resize(h_crop.astype(np.uint8) * 255, (out_cols, out_rows), interpolation=interp)
    ink = np.where(ink_f >= 128, np.uint8(255), np.uint8(0)).astype(np.uint8)
    n_ink = int(np.count_nonzero(ink))
    if n_ink < MIN_INK_PIXELS:
        flags.append("too_little_handwriting")
    q = Quality(
        ink_pixels=n_ink,
        handwriting_area=area_frac,
        stroke_width=float(sw / a.work_scale),
        x_height=float(xh / a.work_scale),
        skew_degrees=float(a.skew),
        flags=tuple(dict.fromkeys(flags)),
    )
    return Prepared(ink=ink, grey=grey, scale=float(s * a.work_scale), quality=q)
