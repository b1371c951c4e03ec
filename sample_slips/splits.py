"""The train/test split rule for honest evaluation.

Whatever fits or tunes a model (fonts, slip designs, real UNIPEN writers) is never what
reports its accuracy:

- handwriting fonts: ``FIT_FONTS`` (23) for fitting, ``HELDOUT_FONTS`` (11) for reporting;
- slip designs: ``TEMPLATES_FIT`` appear in both splits, ``TEMPLATES_HELDOUT`` only in the
  held-out split, so "works on designs never seen" is measurable;
- real writers in ``../shared/data/unipen-dev``: :func:`unipen_split`, a hash of the
  writer id, so the split does not depend on which writers a folder happens to hold.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterable

__all__ = [
    "ALL_FONTS",
    "FIT_FONTS",
    "HELDOUT_FONTS",
    "TEMPLATES_FIT",
    "TEMPLATES_HELDOUT",
    "fonts_for",
    "templates_for",
    "unipen_split",
    "writer_prefix",
]

# Folder names under sample_slips/fonts/hand/. Held-out fonts were picked by hand to span
# the same range of styles as the fit fonts (print-like, cursive, narrow, marker-like).
HELDOUT_FONTS: list[str] = [
    "caveat-brush",
    "coming-soon",
    "gloria-hallelujah",
    "handlee",
    "indie-flower",
    "just-another-hand",
    "la-belle-aurore",
    "nanum-pen-script",
    "schoolbell",
    "shadows-into-light-two",
    "zeyada",
]

FIT_FONTS: list[str] = [
    "architects-daughter",
    "caveat",
    "charm",
    "covered-by-your-grace",
    "delius",
    "gamja-flower",
    "gochi-hand",
    "homemade-apple",
    "itim",
    "kalam",
    "mali",
    "neucha",
    "nothing-you-could-do",
    "patrick-hand",
    "reenie-beanie",
    "rock-salt",
    "shadows-into-light",
    "short-stack",
    "sriracha",
    "sue-ellen-francisco",
    "the-girl-next-door",
    "walter-turncoat",
    "yomogi",
]

ALL_FONTS: list[str] = sorted(FIT_FONTS + HELDOUT_FONTS)

# Slip designs (see sample_slips/templates.py). The fit designs also appear in held-out
# sets; the held-out designs never appear in a fit set.
TEMPLATES_FIT: list[str] = ["crown_classic", "kingsway_grid", "parade_lined", "riband_boxes"]
TEMPLATES_HELDOUT: list[str] = ["castle_ledger", "harbour_strip"]

_SPLITS = ("fit", "heldout")


def _check_split(split: str) -> None:
    if split not in _SPLITS:
        raise ValueError(f"split must be one of {_SPLITS}, got {split!r}")


def fonts_for(split: str) -> list[str]:
    """Handwriting font folders a split may use."""
    _check_split(split)
    return list(FIT_FONTS if split == "fit" else HELDOUT_FONTS)


def templates_for(split: str) -> list[str]:
    """Slip designs a split may use (held-out sets use every design)."""
    _check_split(split)
    return list(TEMPLATES_FIT if split == "fit" else TEMPLATES_FIT + TEMPLATES_HELDOUT)


def writer_prefix(split: str) -> str:
    """Writer-id prefix: ``f`` for fit writers, ``w`` for held-out ones; ids never collide."""
    _check_split(split)
    return "f" if split == "fit" else "w"


def unipen_split(writers: Iterable[str]) -> tuple[set[str], set[str]]:
    """Split real UNIPEN writer ids into (fit, held-out), about 50/50.

    A writer is held out when the first byte of ``sha256("sliplink-unipen:" + id)`` is odd,
    so the rule is deterministic and independent of the other ids in the list.
    """
    fit: set[str] = set()
    heldout: set[str] = set()
    for w in writers:
        digest = hashlib.sha256(f"sliplink-unipen:{w}".encode()).digest()
        (heldout if digest[0] & 1 else fit).add(w)
    return fit, heldout
