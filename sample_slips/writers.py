"""Writers: a handwriting font plus a persistent personal style and habits.

A writer is a pure function of ``(split, index)``: ``w003`` is the same person (font,
slant, size, habits) in every held-out set whatever the seed, so larger sets extend
smaller ones. Several writers share a font and differ only by style, on purpose.
"""

from __future__ import annotations

import hashlib
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np

from sample_slips.splits import fonts_for, writer_prefix

FONT_DIR = Path(__file__).resolve().parent / "fonts" / "hand"

EW_WORDS = ("EW", "E/W", "each way", "e/w", "EACH WAY", "ew", "E.W.")
WIN_WORDS = ("win", "WIN", "W", "Win")
TICK_STYLES = ("tick", "cross", "slash", "blob")
CAPS = ("as_is", "upper", "lower")
TOTAL_PREFIX = ("Total ", "TOTAL ", "T ", "", "Tot ")


@dataclass(frozen=True)
class Writer:
    """Everything that stays the same across one person's slips."""

    id: str
    split: str
    font: str
    size: float  # capital height in px at the base scan resolution
    slant: float  # horizontal shear, x += slant * (baseline - y); >0 leans right
    weight: float  # stroke weight, -1 (thin) .. 1.5 (heavy)
    spacing: float  # extra letter spacing as a fraction of size
    word_gap: float  # word gap as a fraction of size
    drift: float  # baseline drift amplitude as a fraction of size
    drift_period: float  # baseline drift period in px
    jitter: float  # per-glyph jitter scale (1 = typical)
    rotation: float  # habitual line rotation in degrees (uphill > 0)
    ink: float  # ink darkness 0..1 (1 = black ink, ~0.6 = pale blue biro in greyscale)
    pressure: float  # stroke darkness variation 0..1
    caps: str  # "as_is" | "upper" | "lower"
    ew_word: str
    win_word: str
    win_rate: float  # how often a win-only stake gets the win word
    pound: bool  # writes £ before stakes
    decimals: bool  # writes 5.00 rather than 5
    time_sep: str  # "." or ":"
    clock24: bool  # 15.15 rather than 3.15
    tick_style: str
    prefers_ticks: bool  # ticks the E.W. / bet-type boxes rather than writing words
    abbreviate: bool  # "Dbl", "L15", "Tbl"
    total_rate: float  # how often the total is written
    crossout_rate: float
    odds_rate: float  # how often a price is written next to a selection
    margin: float  # left margin inside a box, fraction of size
    typical_stake: float  # the writer's usual unit stake in GBP


def _unit(key: str) -> float:
    """Deterministic uniform [0, 1) from a string (stable across Python runs)."""
    return int.from_bytes(hashlib.sha256(key.encode()).digest()[:8], "big") / 2**64


def make_writer(split: str, index: int) -> Writer:
    """Writer number ``index`` (0-based) of a split; same inputs give the same writer."""
    if index < 0:
        raise ValueError(f"index must be >= 0, got {index}")
    fonts = fonts_for(split)
    # Fonts go round-robin in a fixed shuffled order, so N writers use min(N, n_fonts)
    # fonts and from n_fonts+1 writers on, fonts are shared by writers of different style.
    order = sorted(fonts, key=lambda f: _unit(f"font-order:{split}:{f}"))
    font = order[index % len(order)]
    seed = int.from_bytes(hashlib.sha256(f"writer:{split}:{index}".encode()).digest()[:8], "big")
    r = np.random.default_rng(seed)
    return Writer(
        id=f"{writer_prefix(split)}{index + 1:03d}",
        split=split,
        font=font,
        size=float(r.uniform(24.0, 40.0)),
        slant=float(np.clip(r.normal(0.12, 0.16), -0.25, 0.45)),
        weight=float(r.uniform(-0.7, 1.1)),
        spacing=float(r.uniform(-0.04, 0.14)),
        word_gap=float(r.uniform(0.22, 0.55)),
        drift=float(r.uniform(0.0, 0.09)),
        drift_period=float(r.uniform(150.0, 500.0)),
        jitter=float(r.uniform(0.5, 1.5)),
        rotation=float(np.clip(r.normal(0.0, 1.5), -3.5, 3.5)),
        ink=float(r.uniform(0.55, 0.95)),
        pressure=float(r.uniform(0.05, 0.4)),
        caps=str(r.choice(CAPS, p=[0.55, 0.35, 0.10])),
        ew_word=str(r.choice(EW_WORDS)),
        win_word=str(r.choice(WIN_WORDS)),
        win_rate=float(r.choice([0.0, 0.3, 0.8])),
        pound=bool(r.random() < 0.6),
        decimals=bool(r.random() < 0.35),
        time_sep=str(r.choice([".", ":"], p=[0.7, 0.3])),
        clock24=bool(r.random() < 0.2),
        tick_style=str(r.choice(TICK_STYLES)),
        prefers_ticks=bool(r.random() < 0.5),
        abbreviate=bool(r.random() < 0.4),
        total_rate=float(r.choice([0.0, 0.3, 0.7])),
        crossout_rate=float(r.choice([0.0, 0.1, 0.25])),
        odds_rate=float(r.choice([0.0, 0.2, 0.6])),
        margin=float(r.uniform(0.1, 0.9)),
        typical_stake=float(r.choice([1, 2, 2.5, 5, 5, 10, 10, 20, 25, 50])),
    )


def font_path(font: str) -> Path:
    """The vendored WOFF file of a handwriting font folder."""
    files = sorted((FONT_DIR / font).glob("*.woff"))
    if not files:
        raise FileNotFoundError(f"no .woff font in {FONT_DIR / font}")
    return files[0]


def writer_dict(w: Writer) -> dict[str, object]:
    """JSON-ready style parameters (rounded for readability)."""
    return {k: round(v, 4) if isinstance(v, float) else v for k, v in asdict(w).items()}
