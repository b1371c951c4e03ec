"""Printed slip designs: ruled boxes, headings, logos, tick boxes and small print.

Each design is drawn once per process (cached) as a uint8 ink-coverage image (255 = ink)
with a :class:`Layout` naming the boxes a customer writes into. Field names:

- ``leg{i}.time`` / ``leg{i}.meeting`` / ``leg{i}.event`` (time + meeting together) /
  ``leg{i}.selection`` / ``leg{i}.odds`` / ``leg{i}.stake`` in table designs;
  ``leg{i}.line`` (a whole leg on one ruled line) in lined designs;
- ``leg{i}.win`` / ``leg{i}.ew`` per-row tick cells, ``tick.<bet type>`` / ``tick.ew`` /
  ``tick.win`` tick boxes;
- ``stake`` (stake per bet), ``total``, ``type`` (write the bet type), ``account``.

Printing uses the vendored DejaVu fonts (never a handwriting font).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from functools import lru_cache
from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw, ImageFont

PRINT_DIR = Path(__file__).resolve().parent / "fonts" / "print"

Box = tuple[int, int, int, int]  # x0, y0, x1, y1 in px

SMALL_PRINT = (
    "All bets are accepted subject to the rules displayed in this shop, a copy of which is "
    "available on request. Customers must be 18 or over. Maximum payouts apply. In the event "
    "of a dispute the decision of the management is final. Bets placed after the off are void. "
    "Each-way terms as displayed. Dead-heat rules apply. Please check your receipt before "
    "leaving the counter. When the fun stops, stop. BeGambleAware. Rule 4 deductions may "
    "apply to all prices taken. Non-runners in multiples are treated as winners at odds of "
    "evens unless stated otherwise. Lost slips cannot be replaced."
)


@dataclass
class Layout:
    """A design's size, print ink darkness and named boxes."""

    name: str
    width: int
    height: int
    kind: str  # "table" or "lined"
    ink: float  # print darkness 0..1 (coloured print scans lighter than black)
    fields: dict[str, Box] = field(default_factory=dict)

    @property
    def max_legs(self) -> int:
        return len({k.split(".")[0] for k in self.fields if k.startswith("leg")})

    def has(self, name: str) -> bool:
        return name in self.fields


@lru_cache(maxsize=16)
def _font(name: str, size: int) -> ImageFont.FreeTypeFont:
    files = {
        "sans": "DejaVuSans.ttf",
        "bold": "DejaVuSans-Bold.ttf",
        "mono": "DejaVuSansMono.ttf",
        "serif": "DejaVuSerif-Bold.ttf",
    }
    return ImageFont.truetype(str(PRINT_DIR / files[name]), size)


class _Pen:
    """Small drawing helper on a uint8 ink-coverage canvas (255 = ink)."""

    def __init__(self, width: int, height: int) -> None:
        self.img = Image.new("L", (width, height), 0)
        self.d = ImageDraw.Draw(self.img)

    def text(self, xy: tuple[float, float], s: str, font: str, size: int, **kw: object) -> None:
        self.d.text(xy, s, font=_font(font, size), fill=kw.pop("fill", 255), **kw)  # type: ignore[arg-type]

    def rect(self, b: Box, width: int = 2, fill: int | None = None, radius: int = 0) -> None:
        if radius:
            self.d.rounded_rectangle(b, radius=radius, outline=255, width=width, fill=fill)
        else:
            self.d.rectangle(b, outline=255, width=width, fill=fill)

    def hline(self, x0: int, x1: int, y: int, width: int = 2) -> None:
        self.d.line((x0, y, x1, y), fill=255, width=width)

    def vline(self, x: int, y0: int, y1: int, width: int = 2) -> None:
        self.d.line((x, y0, x, y1), fill=255, width=width)

    def dashed(self, x0: int, x1: int, y: int, dash: int, gap: int, width: int = 2) -> None:
        for x in range(x0, x1, dash + gap):
            self.d.line((x, y, min(x + dash, x1), y), fill=255, width=width)

    def tick(self, x: int, y: int, label: str, size: int = 30, font_size: int = 18) -> Box:
        """A tick box with its label on the right; returns the box."""
        b = (x, y, x + size, y + size)
        self.rect(b, width=2)
        self.text((x + size + 8, y + size // 2), label, "bold", font_size, anchor="lm")
        return b

    def small_print(self, b: Box, size: int = 14, text: str = SMALL_PRINT) -> None:
        font = _font("sans", size)
        words = text.split()
        x0, y, x1, y1 = b
        line = ""
        for w in words:
            trial = f"{line} {w}".strip()
            if font.getlength(trial) > x1 - x0 and line:
                self.text((x0, y), line, "sans", size)
                y += int(size * 1.3)
                line = w
                if y + size > y1:
                    return
            else:
                line = trial
        if line and y + size <= y1:
            self.text((x0, y), line, "sans", size)

    def array(self) -> np.ndarray:
        return np.asarray(self.img, dtype=np.uint8).copy()


def _crown_classic() -> tuple[np.ndarray, Layout]:
    w, h = 1240, 900
    p = _Pen(w, h)
    lay = Layout("crown_classic", w, h, "table", ink=0.85)
    p.d.polygon(
        [(40, 100), (40, 45), (65, 72), (85, 30), (105, 72), (130, 45), (130, 100)], fill=255
    )
    p.text((150, 26), "CROWN BOOKMAKERS", "bold", 46)
    p.text((153, 86), "Licensed Betting Office  ·  Est. 1961  ·  Tel 0800 000 000", "sans", 18)
    p.text((1000, 30), "BET SLIP", "bold", 28)
    p.text((1000, 84), "A/C", "bold", 16)
    p.rect((1045, 76, 1200, 118))
    lay.fields["account"] = (1045, 76, 1200, 118)
    cols = [
        ("TIME", 40, 150),
        ("MEETING", 150, 380),
        ("SELECTION", 380, 800),
        ("WIN", 800, 880),
        ("E.W.", 880, 960),
        ("STAKE", 960, 1200),
    ]
    p.rect((40, 140, 1200, 180), width=2, fill=255)
    for name, x0, x1 in cols:
        p.text(((x0 + x1) / 2, 160), name, "bold", 20, anchor="mm", fill=0)
    p.rect((40, 140, 1200, 520), width=3)
    for i in range(4):
        y0 = 180 + 85 * i
        p.hline(40, 1200, y0 + 85)
        keys = ("time", "meeting", "selection", "win", "ew", "stake")
        for key, (_, x0, x1) in zip(keys, cols, strict=True):
            lay.fields[f"leg{i}.{key}"] = (x0, y0, x1, y0 + 85)
    for _, x0, _ in cols[1:]:
        p.vline(x0, 140, 520)
    p.text((40, 540), "BET TYPE", "bold", 20)
    names = [
        ("single", "SINGLE"),
        ("double", "DOUBLE"),
        ("treble", "TREBLE"),
        ("trixie", "TRIXIE"),
        ("patent", "PATENT"),
        ("yankee", "YANKEE"),
        ("lucky15", "LUCKY 15"),
    ]
    for k, (key, label) in enumerate(names):
        lay.fields[f"tick.{key}"] = p.tick(40 + 165 * k, 578, label)
    p.text((40, 650), "OTHER BET", "bold", 18)
    p.hline(180, 560, 690)
    lay.fields["type"] = (180, 628, 560, 692)
    p.text((620, 648), "UNIT STAKE £", "bold", 18)
    p.rect((800, 628, 1000, 694))
    lay.fields["stake"] = (800, 628, 1000, 694)
    p.text((620, 728), "TOTAL STAKE £", "bold", 18)
    p.rect((800, 708, 1000, 774))
    lay.fields["total"] = (800, 708, 1000, 774)
    p.rect((1030, 628, 1200, 774), width=1)
    p.text((1040, 636), "FOR OFFICE USE", "sans", 13)
    p.small_print((40, 800, 1200, 890), size=14)
    return p.array(), lay


def _kingsway_grid() -> tuple[np.ndarray, Layout]:
    w, h = 1300, 860
    p = _Pen(w, h)
    lay = Layout("kingsway_grid", w, h, "table", ink=0.95)
    p.rect((0, 0, w - 1, 110), width=1, fill=255)
    p.text((40, 22), "KINGSWAY BET", "bold", 54, fill=0)
    p.text((860, 30), "kingsway-bet.example", "sans", 20, fill=0)
    p.text((860, 62), "18+  Please bet responsibly", "sans", 18, fill=0)
    p.d.polygon([(1230, 25), (1265, 55), (1230, 85), (1195, 55)], fill=0)
    cols = [
        ("No.", 30, 80),
        ("TIME", 80, 185),
        ("COURSE", 185, 400),
        ("SELECTION", 400, 700),
        ("ODDS", 700, 800),
        ("STAKE", 800, 920),
        ("E/W", 920, 980),
    ]
    for name, x0, x1 in cols:
        p.text(((x0 + x1) / 2, 160), name, "bold", 19, anchor="mm")
    p.hline(30, 980, 182, width=4)
    keys = (None, "time", "meeting", "selection", "odds", "stake", "ew")
    for i in range(4):
        y0 = 184 + 90 * i
        p.hline(30, 980, y0 + 90, width=1)
        p.text((55, y0 + 45), str(i + 1), "bold", 22, anchor="mm")
        for key, (_, x0, x1) in zip(keys, cols, strict=True):
            if key:
                lay.fields[f"leg{i}.{key}"] = (x0, y0, x1, y0 + 90)
    for _, x0, _ in cols[1:]:
        p.vline(x0, 140, 544, width=1)
    p.rect((1000, 130, 1275, 544), width=2)
    p.text((1015, 140), "BET TYPE", "bold", 20)
    names = [
        ("single", "SINGLES"),
        ("double", "DOUBLE"),
        ("treble", "TREBLE"),
        ("trixie", "TRIXIE"),
        ("patent", "PATENT"),
        ("yankee", "YANKEE"),
        ("lucky15", "LUCKY 15"),
    ]
    for k, (key, label) in enumerate(names):
        lay.fields[f"tick.{key}"] = p.tick(1015, 185 + 50 * k, label, size=30, font_size=19)
    p.text((30, 585), "STAKE PER BET", "bold", 18)
    p.rect((200, 566, 400, 636), width=2)
    lay.fields["stake"] = (200, 566, 400, 636)
    p.text((430, 585), "No. OF BETS", "bold", 16)
    p.rect((560, 566, 640, 636), width=2)
    p.text((670, 585), "TOTAL", "bold", 18)
    p.rect((750, 566, 980, 636), width=2)
    lay.fields["total"] = (750, 566, 980, 636)
    p.text((30, 670), "OTHER / BET NAME", "bold", 16)
    p.hline(220, 980, 706, width=1)
    lay.fields["type"] = (220, 650, 980, 708)
    p.small_print((30, 735, 1270, 850), size=15)
    return p.array(), lay


def _parade_lined() -> tuple[np.ndarray, Layout]:
    w, h = 1180, 960
    p = _Pen(w, h)
    lay = Layout("parade_lined", w, h, "lined", ink=0.7)
    p.text((w / 2, 50), "PARADE RING", "serif", 50, anchor="mm")
    p.text((w / 2, 100), "T U R F   A C C O U N T A N T S", "sans", 20, anchor="mm")
    p.hline(40, w - 40, 124, width=4)
    p.hline(40, w - 40, 132, width=1)
    p.text((40, 150), "YOUR SELECTIONS", "bold", 20)
    p.text((935, 150), "STAKE", "bold", 20)
    for i in range(4):
        y = 250 + 90 * i
        p.text((40, y - 30), f"{i + 1}.", "bold", 22)
        p.hline(80, 900, y, width=2)
        lay.fields[f"leg{i}.line"] = (80, y - 78, 900, y + 4)
        p.rect((930, y - 70, 1140, y + 4), width=2)
        lay.fields[f"leg{i}.stake"] = (930, y - 70, 1140, y + 4)
    lay.fields["tick.win"] = p.tick(40, 585, "WIN")
    lay.fields["tick.ew"] = p.tick(200, 585, "EACH WAY")
    names = [
        ("single", "SINGLE"),
        ("double", "DOUBLE"),
        ("treble", "TREBLE"),
        ("yankee", "YANKEE"),
        ("lucky15", "LUCKY 15"),
    ]
    for k, (key, label) in enumerate(names):
        lay.fields[f"tick.{key}"] = p.tick(40 + 175 * k, 650, label)
    p.text((930, 655), "OTHER", "bold", 16)
    p.hline(930, 1140, 700, width=1)
    lay.fields["type"] = (900, 640, 1140, 702)
    p.text((40, 745), "STAKE £", "bold", 20)
    p.rect((150, 725, 420, 795), width=2)
    lay.fields["stake"] = (150, 725, 420, 795)
    p.text((480, 745), "TOTAL £", "bold", 20)
    p.rect((590, 725, 860, 795), width=2)
    lay.fields["total"] = (590, 725, 860, 795)
    p.small_print((40, 825, 1140, 950), size=14)
    return p.array(), lay


def _riband_boxes() -> tuple[np.ndarray, Layout]:
    w, h = 1260, 900
    p = _Pen(w, h)
    lay = Layout("riband_boxes", w, h, "table", ink=0.6)
    p.d.ellipse((40, 25, 120, 105), outline=255, width=7)
    p.d.polygon([(55, 95), (45, 130), (65, 122), (75, 135), (80, 100)], fill=255)
    p.d.polygon([(105, 95), (115, 130), (95, 122), (85, 135), (80, 100)], fill=255)
    p.text((145, 24), "BLUE RIBAND BETS", "bold", 44)
    p.text((148, 80), "Racing  ·  Football  ·  Greyhounds  ·  Tennis", "sans", 18)
    for i in range(4):
        x = 40 + 600 * (i % 2)
        y = 140 + 230 * (i // 2)
        p.rect((x, y, x + 570, y + 215), width=3, radius=14)
        p.text((x + 14, y + 10), f"SELECTION {i + 1}", "bold", 16)
        lay.fields[f"leg{i}.win"] = p.tick(x + 330, y + 8, "WIN", size=24, font_size=14)
        lay.fields[f"leg{i}.ew"] = p.tick(x + 440, y + 8, "E/W", size=24, font_size=14)
        p.hline(x, x + 570, y + 40, width=1)
        p.text((x + 12, y + 44), "TIME", "sans", 13)
        p.text((x + 162, y + 44), "MEETING", "sans", 13)
        p.vline(x + 150, y + 40, y + 120, width=1)
        p.hline(x, x + 570, y + 120, width=1)
        p.text((x + 12, y + 124), "HORSE / DOG / TEAM", "sans", 13)
        p.text((x + 422, y + 124), "STAKE £", "sans", 13)
        p.vline(x + 410, y + 120, y + 215, width=1)
        lay.fields[f"leg{i}.time"] = (x + 6, y + 48, x + 150, y + 120)
        lay.fields[f"leg{i}.meeting"] = (x + 156, y + 48, x + 565, y + 120)
        lay.fields[f"leg{i}.selection"] = (x + 6, y + 130, x + 410, y + 212)
        lay.fields[f"leg{i}.stake"] = (x + 416, y + 130, x + 565, y + 212)
    names = [
        ("double", "DOUBLE"),
        ("treble", "TREBLE"),
        ("trixie", "TRIXIE"),
        ("yankee", "YANKEE"),
        ("lucky15", "LUCKY 15"),
    ]
    for k, (key, label) in enumerate(names):
        lay.fields[f"tick.{key}"] = p.tick(40 + 190 * k, 620, label)
    p.text((40, 700), "BET", "bold", 20)
    p.hline(100, 520, 735, width=1)
    lay.fields["type"] = (100, 675, 520, 737)
    p.text((560, 700), "UNIT £", "bold", 20)
    p.rect((650, 680, 860, 745), width=2, radius=8)
    lay.fields["stake"] = (650, 680, 860, 745)
    p.text((890, 700), "TOTAL £", "bold", 20)
    p.rect((1000, 680, 1220, 745), width=2, radius=8)
    lay.fields["total"] = (1000, 680, 1220, 745)
    p.small_print((40, 775, 1220, 890), size=14)
    return p.array(), lay


def _castle_ledger() -> tuple[np.ndarray, Layout]:
    w, h = 1220, 940
    p = _Pen(w, h)
    lay = Layout("castle_ledger", w, h, "table", ink=0.8)
    p.d.polygon(
        [
            (40, 110),
            (40, 40),
            (58, 40),
            (58, 55),
            (76, 55),
            (76, 40),
            (94, 40),
            (94, 55),
            (112, 55),
            (112, 40),
            (130, 40),
            (130, 110),
            (98, 110),
            (98, 85),
            (72, 85),
            (72, 110),
        ],
        fill=255,
    )
    p.text((160, 24), "CASTLE GATE", "serif", 48)
    p.text((164, 84), "BOOKMAKERS SINCE 1974", "sans", 18)
    for k in range(12):
        x = 990 + 18 * k
        p.d.line((x, 100, x + 40, 30), fill=255, width=5)
    names = [
        ("single", "SINGLE"),
        ("double", "DOUBLE"),
        ("treble", "TREBLE"),
        ("patent", "PATENT"),
        ("yankee", "YANKEE"),
        ("lucky15", "LUCKY 15"),
    ]
    for k, (key, label) in enumerate(names):
        x = 40 + 190 * k
        p.text((x, 132), label, "bold", 16)
        p.rect((x, 158, x + 34, 192), width=3)
        lay.fields[f"tick.{key}"] = (x, 158, x + 34, 192)
    cols = [
        ("EVENT", 40, 400),
        ("SELECTION", 400, 780),
        ("PRICE", 780, 900),
        ("STAKE", 900, 1050),
        ("WIN", 1050, 1120),
        ("EW", 1120, 1190),
    ]
    for name, x0, _x1 in cols:
        p.text((x0 + 6, 226), name, "bold", 18)
    p.hline(40, 1190, 256, width=3)
    keys = ("event", "selection", "odds", "stake", "win", "ew")
    for i in range(4):
        y = 340 + 90 * i
        p.dashed(40, 1190, y, 3, 5, width=2)
        for key, (_, x0, x1) in zip(keys, cols, strict=True):
            lay.fields[f"leg{i}.{key}"] = (x0, y - 84, x1, y + 2)
    for _, x0, _ in cols[2:]:
        p.dashed(x0, x0 + 1, 256, 1, 1)
        for yy in range(256, 610, 8):
            p.d.line((x0, yy, x0, yy + 3), fill=255, width=2)
    p.text((40, 660), "BET:", "bold", 20)
    p.dashed(110, 560, 700, 3, 5)
    lay.fields["type"] = (110, 640, 560, 702)
    p.text((600, 660), "STAKE £", "bold", 20)
    p.rect((720, 640, 900, 705), width=3)
    lay.fields["stake"] = (720, 640, 900, 705)
    p.text((920, 660), "TOTAL", "bold", 20)
    p.rect((1010, 640, 1190, 705), width=3)
    lay.fields["total"] = (1010, 640, 1190, 705)
    p.hline(40, 1190, 740, width=1)
    p.small_print((40, 755, 1190, 930), size=15)
    return p.array(), lay


def _harbour_strip() -> tuple[np.ndarray, Layout]:
    w, h = 1040, 1300
    p = _Pen(w, h)
    lay = Layout("harbour_strip", w, h, "lined", ink=0.9)
    p.d.ellipse((60, 30, 90, 60), outline=255, width=5)
    p.d.line((75, 60, 75, 125), fill=255, width=7)
    p.d.line((55, 75, 95, 75), fill=255, width=6)
    p.d.arc((40, 80, 110, 135), start=20, end=160, fill=255, width=7)
    p.text((140, 34), "HARBOUR RACING", "bold", 46)
    p.text((143, 92), "Turf Accountants  ·  Licensed under the Gambling Act 2005", "sans", 16)
    p.hline(40, 1000, 135, width=2)
    p.text((60, 155), "BET TYPE", "bold", 20)
    left = [("single", "SINGLE"), ("double", "DOUBLE"), ("treble", "TREBLE"), ("trixie", "TRIXIE")]
    right = [("patent", "PATENT"), ("yankee", "YANKEE"), ("lucky15", "LUCKY 15"), ("ew", "E.W.")]
    for k, (key, label) in enumerate(left):
        lay.fields[f"tick.{key}"] = p.tick(60, 195 + 45 * k, label, size=32)
    for k, (key, label) in enumerate(right):
        lay.fields[f"tick.{key}"] = p.tick(520, 195 + 45 * k, label, size=32)
    p.text((60, 385), "SELECTIONS", "bold", 22)
    for i in range(4):
        y = 500 + 100 * i
        p.text((40, y - 32), f"{i + 1}", "sans", 18)
        p.dashed(62, 980, y, 12, 7, width=2)
        lay.fields[f"leg{i}.line"] = (62, y - 88, 980, y + 4)
    p.rect((60, 880, 480, 980), width=2)
    p.text((70, 886), "STAKE PER BET £", "sans", 14)
    lay.fields["stake"] = (60, 905, 480, 980)
    p.rect((540, 880, 980, 980), width=2)
    p.text((550, 886), "TOTAL £", "sans", 14)
    lay.fields["total"] = (540, 905, 980, 980)
    p.text((60, 1020), "BET TYPE (OTHER)", "sans", 14)
    p.hline(60, 980, 1080, width=1)
    lay.fields["type"] = (60, 1022, 980, 1082)
    p.small_print((60, 1110, 980, 1290), size=15)
    return p.array(), lay


DESIGNS: dict[str, Callable[[], tuple[np.ndarray, Layout]]] = {
    "crown_classic": _crown_classic,
    "kingsway_grid": _kingsway_grid,
    "parade_lined": _parade_lined,
    "riband_boxes": _riband_boxes,
    "castle_ledger": _castle_ledger,
    "harbour_strip": _harbour_strip,
}


@lru_cache(maxsize=len(DESIGNS))
def _design(name: str) -> tuple[np.ndarray, Layout]:
    if name not in DESIGNS:
        raise ValueError(f"template must be one of {sorted(DESIGNS)}, got {name!r}")
    ink, lay = DESIGNS[name]()
    ink.setflags(write=False)
    return ink, lay


def design(name: str) -> tuple[np.ndarray, Layout]:
    """The printed ink (uint8, rows x cols, 255 = ink, read-only) and layout of a design
    (one of :data:`DESIGNS`, or a fit-only ``random-<seed>`` design)."""
    if is_random_design(name):
        return _random_cached(name)
    return _design(name)


def layout(name: str) -> Layout:
    """The layout of a design."""
    return design(name)[1]


# --------------------------------------------------------------------------- random designs
#
# Procedurally randomised designs, for fitting the print/handwriting separator only (see
# ``generate(..., random_designs=...)``): with only four fixed fit layouts a classifier
# learns where print sits instead of what print looks like. Random designs shuffle every
# printed element (logos, hatching, patterns, tick-box rows, tables, ruled lines, small
# print, barcodes, stamps) in position, size, weight and style. Their names are
# ``random-<seed>``; they are never in :data:`DESIGNS` (held-out sets, the committed set and
# :func:`sample_slips.generate.template_images` never see them).

RANDOM_PREFIX = "random-"

_WORDS = (
    "ACE", "ALPHA", "ARROW", "BET", "BETS", "BOOKMAKERS", "CASTLE", "CENTRAL", "CITY",
    "CORNER", "COUNTY", "CROWN", "DERBY", "EAGLE", "EMPIRE", "EXPRESS", "FORTUNE", "GALLOP",
    "GOLD", "GRAND", "HAT", "HORSESHOE", "JOCKEY", "KING", "LUCKY", "MARKET", "NORTH",
    "ODDS", "OWL", "PADDOCK", "PREMIER", "QUEEN", "RACING", "ROYAL", "SPORTS", "STAR",
    "STIRRUP", "TOTE", "TURF", "UNION", "VICTORY", "WEST", "WINNERS",
)  # fmt: skip
_SUBTITLES = (
    "Licensed Betting Office", "Turf Accountants", "Est. 1958", "Please bet responsibly",
    "18+ only", "Tel 0800 111 222", "www.example-bets.example", "Racing - Football - Dogs",
    "Member of the Betting Association", "Open 7 days", "Best odds guaranteed",
)  # fmt: skip
_BET_TYPES = (
    ("single", "SINGLE"), ("double", "DOUBLE"), ("treble", "TREBLE"), ("trixie", "TRIXIE"),
    ("patent", "PATENT"), ("yankee", "YANKEE"), ("lucky15", "LUCKY 15"),
)  # fmt: skip


def is_random_design(name: str) -> bool:
    """Whether ``name`` names a procedurally randomised (fit-only) design."""
    return name.startswith(RANDOM_PREFIX) and name[len(RANDOM_PREFIX) :].isdigit()


def random_design_name(seed: int) -> str:
    return f"{RANDOM_PREFIX}{int(seed)}"


class _RandomPen(_Pen):
    """A :class:`_Pen` with transformed text, patterns and a record of occupied boxes."""

    def __init__(self, width: int, height: int, rng: np.random.Generator) -> None:
        super().__init__(width, height)
        self.rng = rng
        self.fields: list[Box] = []

    def glyphs(
        self,
        xy: tuple[float, float],
        s: str,
        font: str,
        size: int,
        *,
        sx: float = 1.0,
        shear: float = 0.0,
        reverse: bool = False,
    ) -> Box:
        """Text stretched by ``sx`` and sheared (italic), pasted at top-left ``xy``."""
        f = _font(font, size)
        l_, t, r, b = f.getbbox(s)
        tw, th = int(r - l_ + 4), int(b - t + 4)
        img = Image.new("L", (tw, th), 0)
        ImageDraw.Draw(img).text((2 - l_, 2 - t), s, font=f, fill=255)
        nw = max(1, int(tw * sx))
        img = img.resize((nw, th), Image.Resampling.BILINEAR)
        if shear:
            extra = int(abs(shear) * th) + 1
            img = img.transform(
                (nw + extra, th),
                Image.Transform.AFFINE,
                (1, shear, -extra if shear > 0 else 0, 0, 1, 0),
                Image.Resampling.BILINEAR,
            )
        x, y = int(xy[0]), int(xy[1])
        box = (x, y, x + img.width, y + img.height)
        if reverse:
            pad = max(4, size // 5)
            self.d.rectangle((x - pad, y - pad, box[2] + pad, box[3] + pad), fill=255)
            self.img.paste(0, (x, y), mask=img)
        else:
            self.img.paste(255, (x, y), mask=img)
        return box

    def hatch(self, b: Box) -> None:
        """Parallel thick strokes (////) filling box ``b``."""
        x0, y0, x1, y1 = b
        r = self.rng
        step = int(r.integers(8, 24))
        width = int(r.integers(2, 8))
        slope = float(r.choice([-1, 1]) * r.uniform(0.4, 2.5))
        layer = Image.new("L", (x1 - x0, y1 - y0), 0)
        d = ImageDraw.Draw(layer)
        hgt = y1 - y0
        for x in range(-int(abs(slope) * hgt) - step, x1 - x0 + step, step):
            d.line((x, hgt, x + slope * hgt, 0), fill=255, width=width)
        self.img.paste(255, (x0, y0), mask=layer)

    def pattern(self, b: Box) -> None:
        """A decorative fill of box ``b``: hatching, checks, dots, bars, rings or tint."""
        x0, y0, x1, y1 = b
        r = self.rng
        kind = str(r.choice(["hatch", "checks", "dots", "bars", "rings", "zigzag", "grid"]))
        if kind == "hatch":
            self.hatch(b)
        elif kind == "checks":
            c = int(r.integers(5, 16))
            for yy in range(y0, y1 - c + 1, c):
                for xx in range(x0 + c * (((yy - y0) // c) % 2), x1 - c + 1, 2 * c):
                    self.d.rectangle((xx, yy, xx + c - 1, yy + c - 1), fill=255)
        elif kind == "dots":
            c, rad = int(r.integers(7, 18)), int(r.integers(1, 5))
            for yy in range(y0 + rad, y1 - rad, c):
                for xx in range(x0 + rad, x1 - rad, c):
                    self.d.ellipse((xx - rad, yy - rad, xx + rad, yy + rad), fill=255)
        elif kind == "bars":
            vertical = r.random() < 0.5
            x = x0 if vertical else y0
            end = x1 if vertical else y1
            while x < end:
                bw = int(r.integers(1, 7))
                if vertical:
                    self.d.rectangle((x, y0, min(x + bw, x1), y1), fill=255)
                else:
                    self.d.rectangle((x0, x, x1, min(x + bw, y1)), fill=255)
                x += bw + int(r.integers(2, 9))
        elif kind == "rings":
            cx, cy = (x0 + x1) / 2, (y0 + y1) / 2
            width = int(r.integers(2, 6))
            for rad in range(width + 2, int(min(x1 - x0, y1 - y0) / 2), width * 2 + 2):
                self.d.ellipse((cx - rad, cy - rad, cx + rad, cy + rad), outline=255, width=width)
        elif kind == "zigzag":
            amp, per = (y1 - y0) / 2, int(r.integers(10, 30))
            pts = [(x, y0 + (0 if (x - x0) // per % 2 else 2 * amp)) for x in range(x0, x1, per)]
            for k in range(int(r.integers(1, 4))):
                off = k * int(r.integers(4, 10))
                self.d.line([(x, min(y + off, y1)) for x, y in pts], fill=255, width=3)
        else:
            c, width = int(r.integers(8, 20)), int(r.integers(1, 3))
            for xx in range(x0, x1 + 1, c):
                self.d.line((xx, y0, xx, y1), fill=255, width=width)
            for yy in range(y0, y1 + 1, c):
                self.d.line((x0, yy, x1, yy), fill=255, width=width)

    def logo(self, b: Box) -> None:
        """A random logo in box ``b``: star, shield, ring, monogram, pattern block, crest or a
        line drawing."""
        x0, y0, x1, y1 = b
        r = self.rng
        cx, cy, rad = (x0 + x1) / 2, (y0 + y1) / 2, min(x1 - x0, y1 - y0) / 2
        kinds = ["star", "shield", "ring", "monogram", "pattern", "crest", "lineart"]
        kind = str(r.choice(kinds, p=[0.12, 0.12, 0.12, 0.12, 0.12, 0.12, 0.28]))
        if kind == "lineart":
            self.line_art(b)
            return
        if kind == "star":
            n = int(r.integers(5, 9))
            ang = np.arange(2 * n) * np.pi / n + r.uniform(0, np.pi)
            rr = np.where(np.arange(2 * n) % 2 == 0, rad, rad * r.uniform(0.35, 0.6))
            pts = list(zip(cx + rr * np.cos(ang), cy + rr * np.sin(ang), strict=True))
            self.d.polygon(pts, fill=255 if r.random() < 0.7 else None, outline=255, width=3)
        elif kind == "shield":
            pts = [(x0, y0), (x1, y0), (x1, cy), (cx, y1), (x0, cy)]
            self.d.polygon(pts, fill=255)
            if r.random() < 0.6:
                m = rad * 0.3
                self.d.polygon([(x0 + m, y0 + m), (x1 - m, y0 + m), (cx, cy)], fill=0)
        elif kind == "ring":
            width = int(r.integers(3, 10))
            self.d.ellipse((x0, y0, x1, y1), outline=255, width=width)
            letter = str(r.choice(list("ABCDGHKMRSTW")))
            self.text((cx, cy), letter, str(r.choice(["bold", "serif"])), int(rad), anchor="mm")
        elif kind == "monogram":
            self.d.rectangle(b, fill=255)
            s = "".join(r.choice(list("ABCDEGHJKMNPRSTW"), size=int(r.integers(1, 3))))
            self.text((cx, cy), s, "bold", int(rad * 0.9), anchor="mm", fill=0)
        elif kind == "pattern":
            self.pattern(b)
        else:
            teeth = int(r.integers(3, 6))
            tw = (x1 - x0) / (2 * teeth - 1)
            pts = [(x0, y1)]
            for k in range(2 * teeth - 1):
                top = y0 if k % 2 == 0 else y0 + (y1 - y0) * 0.25
                pts += [(x0 + k * tw, top), (x0 + (k + 1) * tw, top)]
            pts += [(x1, y1)]
            self.d.polygon(pts, fill=255)

    def line_art(self, b: Box) -> None:
        """A pictogram drawn with one thick pen: a few arcs, rings, strokes and hooks.

        Outline pictograms (an anchor, a horseshoe, a cup) are strokes of even width like
        handwriting, unlike filled logos; the separator must learn them as print too.
        """
        x0, y0, x1, y1 = b
        r = self.rng
        width = int(r.integers(3, 9))

        def point() -> tuple[float, float]:
            return float(r.uniform(x0, x1)), float(r.uniform(y0, y1))

        for _ in range(int(r.integers(2, 6))):
            shape = str(r.choice(["arc", "line", "ring", "hook"]))
            if shape in ("arc", "ring"):
                (ax, ay), (bx, by) = point(), point()
                if abs(bx - ax) < 2 * width or abs(by - ay) < 2 * width:
                    continue
                box = (min(ax, bx), min(ay, by), max(ax, bx), max(ay, by))
                start = float(r.uniform(0, 360)) if shape == "arc" else 0.0
                end = start + (float(r.uniform(90, 300)) if shape == "arc" else 360.0)
                self.d.arc(box, start, end, fill=255, width=width)
            elif shape == "line":
                self.d.line([point(), point()], fill=255, width=width)
            else:
                pts = [point() for _ in range(int(r.integers(3, 5)))]
                self.d.line(pts, fill=255, width=width, joint="curve")

    def barcode(self, b: Box) -> None:
        x0, y0, x1, y1 = b
        x = x0
        while x < x1:
            bw = int(self.rng.integers(1, 5)) * 2
            self.d.rectangle((x, y0, min(x + bw - 1, x1), y1), fill=255)
            x += bw + int(self.rng.integers(1, 4)) * 2

    def blocks(self, b: Box) -> None:
        """A QR-like grid of random filled squares with three finder squares."""
        x0, y0, x1, y1 = b
        n = int(self.rng.integers(15, 26))
        c = max(2, (x1 - x0) // n)
        bits = self.rng.random((n, n)) < 0.5
        for i in range(n):
            for j in range(n):
                if bits[i, j]:
                    self.d.rectangle(
                        (x0 + j * c, y0 + i * c, x0 + j * c + c - 1, y0 + i * c + c - 1), fill=255
                    )
        for fx, fy in ((0, 0), (n - 7, 0), (0, n - 7)):
            bx, by = x0 + fx * c, y0 + fy * c
            self.d.rectangle((bx, by, bx + 7 * c - 1, by + 7 * c - 1), fill=0, outline=255, width=c)
            self.d.rectangle((bx + 2 * c, by + 2 * c, bx + 5 * c - 1, by + 5 * c - 1), fill=255)

    def free(self, b: Box, margin: int = 8) -> bool:
        """Whether ``b`` lies on the canvas, on nearly blank paper and clear of every field."""
        x0, y0, x1, y1 = b
        if x0 < 0 or y0 < 0 or x1 >= self.img.width or y1 >= self.img.height:
            return False
        if np.asarray(self.img.crop(b)).mean() > 8:  # mostly blank paper only
            return False
        for f0, g0, f1, g1 in self.fields:
            if x0 < f1 + margin and f0 - margin < x1 and y0 < g1 + margin and g0 - margin < y1:
                return False
        return True


def _rand_label(r: np.random.Generator, n: int = 2) -> str:
    return " ".join(str(w) for w in r.choice(_WORDS, size=n, replace=False))


def _rule(p: _RandomPen, x0: int, x1: int, y: int, style: str, width: int) -> None:
    if style == "solid":
        p.hline(x0, x1, y, width=width)
    elif style == "dashed":
        p.dashed(x0, x1, y, int(p.rng.integers(4, 16)), int(p.rng.integers(3, 9)), width=width)
    elif style == "dotted":
        p.dashed(x0, x1, y, width, int(p.rng.integers(3, 7)), width=width)


def _vrule(p: _RandomPen, x: int, y0: int, y1: int, style: str, width: int) -> None:
    if style == "solid":
        p.vline(x, y0, y1, width=width)
    elif style in ("dashed", "dotted"):
        on = width if style == "dotted" else int(p.rng.integers(4, 14))
        for y in range(y0, y1, on + int(p.rng.integers(3, 8))):
            p.d.line((x, y, x, min(y + on, y1)), fill=255, width=width)


def _random_header(p: _RandomPen, w: int, y: int) -> int:
    r = p.rng
    hh = int(r.integers(90, 170))
    band = r.random() < 0.25
    if band:
        p.d.rectangle(
            (0, y, w - 1, y + hh), fill=255 if r.random() < 0.7 else int(r.integers(70, 140))
        )
    logo_side = str(r.choice(["left", "right", "none"], p=[0.55, 0.3, 0.15]))
    ls = int(r.integers(55, min(130, hh)))
    x_title = 40
    if logo_side == "left":
        p.logo((40, y + (hh - ls) // 2, 40 + ls, y + (hh - ls) // 2 + ls))
        x_title = 40 + ls + int(r.integers(15, 40))
    elif logo_side == "right":
        p.logo((w - 40 - ls, y + (hh - ls) // 2, w - 40, y + (hh - ls) // 2 + ls))
    size = int(r.integers(30, 62))
    title = _rand_label(r, int(r.integers(1, 3)))
    if r.random() < 0.2:
        title = " ".join(title)  # letter-spaced
    font = str(r.choice(["bold", "serif", "sans", "mono"], p=[0.45, 0.3, 0.15, 0.1]))
    sx = float(r.uniform(0.7, 1.35)) if r.random() < 0.5 else 1.0
    shear = float(r.uniform(-0.3, 0.1)) if r.random() < 0.2 else 0.0
    # On a band the title is reversed (paper-coloured glyphs on a solid block).
    box = p.glyphs((x_title, y + 12), title, font, size, sx=sx, shear=shear, reverse=band)
    sub = str(r.choice(_SUBTITLES))
    p.text((x_title + 3, box[3] + 8), sub, "sans", int(r.integers(12, 21)), fill=0 if band else 255)
    # Right side of the header: "BET SLIP", a hatch block, a barcode or a serial number.
    extra = str(r.choice(["hatch", "label", "barcode", "serial", "pattern", "none"]))
    ex0 = max(box[2] + 30, int(w * 0.62))
    ex1 = w - 50 - (ls + 10 if logo_side == "right" else 0)
    if ex1 - ex0 > 120 and not band:
        b = (ex0, y + 15, min(ex1, ex0 + int(r.integers(120, 300))), y + hh - 15)
        if extra == "hatch":
            p.hatch(b)
        elif extra == "pattern":
            p.pattern(b)
        elif extra == "barcode":
            p.barcode(b)
        elif extra == "label":
            p.text(
                (ex0, y + 20),
                str(r.choice(["BET SLIP", "COUPON", "BETTING SLIP"])),
                "bold",
                int(r.integers(20, 34)),
            )
        elif extra == "serial":
            p.text(
                (ex0, y + 25),
                f"No. {int(r.integers(0, 10**6)):06d}",
                "mono",
                int(r.integers(16, 26)),
            )
    y += hh + 8
    if r.random() < 0.6:
        _rule(p, 40, w - 40, y, str(r.choice(["solid", "solid", "dashed"])), int(r.integers(1, 6)))
        if r.random() < 0.3:
            p.hline(40, w - 40, y + 7, width=1)
        y += 14
    return y


def _random_ticks(p: _RandomPen, lay: Layout, w: int, y: int) -> int:
    r = p.rng
    names = [
        _BET_TYPES[int(k)] for k in sorted(r.choice(7, size=int(r.integers(3, 8)), replace=False))
    ]
    if r.random() < 0.4:
        names.append(("ew", str(r.choice(["E.W.", "E/W", "EACH WAY"]))))
    size = int(r.integers(20, 42))
    width = int(r.integers(1, 5))
    shape = str(r.choice(["square", "square", "round", "circle"]))
    where = str(r.choice(["right", "above", "grid"]))
    fs = int(r.integers(13, 22))
    if r.random() < 0.4:
        p.text((40, y), str(r.choice(["BET TYPE", "TYPE OF BET", "PLEASE TICK"])), "bold", fs + 2)
        y += fs + 14

    def box(x: int, yy: int) -> Box:
        b = (x, yy, x + size, yy + size)
        if shape == "circle":
            p.d.ellipse(b, outline=255, width=width)
        else:
            p.rect(b, width=width, radius=size // 4 if shape == "round" else 0)
        return b

    if where == "grid":
        ncol = int(r.integers(2, 4))
        colw = (w - 80) // ncol
        for k, (key, label) in enumerate(names):
            x, yy = 40 + colw * (k % ncol), y + (size + 14) * (k // ncol)
            lay.fields[f"tick.{key}"] = box(x, yy)
            p.text((x + size + 10, yy + size // 2), label, "bold", fs, anchor="lm")
        y += (size + 14) * (-(-len(names) // ncol))
    else:
        step = (w - 80) // len(names)
        for k, (key, label) in enumerate(names):
            x = 40 + step * k
            if where == "above":
                p.text((x, y), label, "bold", fs)
                lay.fields[f"tick.{key}"] = box(x, y + fs + 8)
            else:
                lay.fields[f"tick.{key}"] = box(x, y)
                p.text((x + size + 8, y + size // 2), label, "bold", fs, anchor="lm")
        y += size + (fs + 8 if where == "above" else 0)
    p.fields.extend(b for k, b in lay.fields.items() if k.startswith("tick."))
    return y + int(r.integers(15, 35))


def _random_table(p: _RandomPen, lay: Layout, w: int, y: int) -> int:
    r = p.rng
    event = r.random() < 0.4
    cols: list[tuple[str, str, float]] = []
    if event:
        cols.append(("event", str(r.choice(["EVENT", "RACE", "MEETING / TIME"])), 3.0))
    else:
        cols.append(("time", str(r.choice(["TIME", "OFF"])), 1.0))
        cols.append(("meeting", str(r.choice(["MEETING", "COURSE", "TRACK"])), 2.0))
    cols.append(("selection", str(r.choice(["SELECTION", "HORSE / TEAM", "YOUR PICK"])), 3.0))
    if r.random() < 0.6:
        cols.append(("odds", str(r.choice(["ODDS", "PRICE"])), 1.0))
    cols.append(("stake", "STAKE", 1.3))
    if r.random() < 0.5:
        cols += [("win", "WIN", 0.6), ("ew", str(r.choice(["E/W", "EW"])), 0.6)]
    if r.random() < 0.3:
        cols.insert(0, ("", "No.", 0.4))
    wts = np.array([c[2] for c in cols]) * r.uniform(0.8, 1.25, len(cols))
    xs = (40 + np.concatenate([[0], np.cumsum(wts)]) / wts.sum() * (w - 80)).astype(int)
    head_h = int(r.integers(30, 48))
    fs = int(r.integers(14, 22))
    filled = r.random() < 0.3
    if filled:
        p.d.rectangle((40, y, w - 40, y + head_h), fill=255)
    for (_, name, _), x0, x1 in zip(cols, xs[:-1], xs[1:], strict=True):
        anchor = (
            (((x0 + x1) / 2, y + head_h / 2), "mm")
            if r.random() < 0.6
            else ((x0 + 6, y + head_h / 2), "lm")
        )
        p.text(anchor[0], name, "bold", fs, anchor=anchor[1], fill=0 if filled else 255)
    y0 = y + head_h
    _rule(p, 40, w - 40, y0, "solid", int(r.integers(1, 5)))
    row_h = int(r.integers(72, 102))
    style = str(r.choice(["solid", "dashed", "dotted", "none"], p=[0.45, 0.25, 0.2, 0.1]))
    vstyle = str(r.choice(["solid", "dashed", "dotted", "none"], p=[0.5, 0.2, 0.15, 0.15]))
    lw = int(r.integers(1, 4))
    for i in range(4):
        ry = y0 + row_h * i
        _rule(p, 40, w - 40, ry + row_h, style if i < 3 else "solid", lw)
        for (key, _, _), x0, x1 in zip(cols, xs[:-1], xs[1:], strict=True):
            if key in ("win", "ew"):
                s = min(x1 - x0 - 12, 36)
                b = (
                    int((x0 + x1 - s) / 2),
                    ry + (row_h - s) // 2,
                    int((x0 + x1 + s) / 2),
                    ry + (row_h + s) // 2,
                )
                if r.random() < 0.5:
                    p.rect(b, width=lw)
                lay.fields[f"leg{i}.{key}"] = b
            elif key:
                lay.fields[f"leg{i}.{key}"] = (int(x0), ry, int(x1), ry + row_h)
            else:
                p.text(((x0 + x1) / 2, ry + row_h / 2), str(i + 1), "bold", fs + 2, anchor="mm")
    y1 = y0 + 4 * row_h
    for x in xs[1:-1]:
        _vrule(p, int(x), y, y1, vstyle, lw)
    if r.random() < 0.6:
        p.rect((40, y, w - 40, y1), width=int(r.integers(1, 5)), radius=int(r.choice([0, 0, 12])))
    p.fields.append((40, y0, w - 40, y1))
    return y1 + int(r.integers(20, 45))


def _random_lines(p: _RandomPen, lay: Layout, w: int, y: int) -> int:
    r = p.rng
    lay.kind = "lined"
    stakes = r.random() < 0.5
    fs = int(r.integers(14, 22))
    p.text((40, y), str(r.choice(["YOUR SELECTIONS", "SELECTIONS", "BETS"])), "bold", fs + 2)
    y += fs + int(r.integers(50, 80))
    x1 = int(w * r.uniform(0.68, 0.78)) if stakes else w - 40
    gap = int(r.integers(82, 110))
    style = str(r.choice(["solid", "dashed", "dotted"]))
    lw = int(r.integers(1, 4))
    numbered = r.random() < 0.7
    for i in range(4):
        ly = y + gap * i
        if numbered:
            p.text((40, ly - 30), f"{i + 1}{'.' if r.random() < 0.5 else ''}", "bold", fs)
        _rule(p, 80, x1, ly, style, lw)
        lay.fields[f"leg{i}.line"] = (80, ly - 78, x1, ly + 4)
        if stakes:
            b = (x1 + 30, ly - 70, w - 40, ly + 4)
            p.rect(b, width=lw)
            lay.fields[f"leg{i}.stake"] = b
    p.fields.append((80, y - 78, w - 40, y + 3 * gap + 4))
    return y + 3 * gap + int(r.integers(30, 60))


def _random_cards(p: _RandomPen, lay: Layout, w: int, y: int) -> int:
    r = p.rng
    cw, ch = (w - 110) // 2, int(r.integers(200, 240))
    lw = int(r.integers(1, 4))
    rad = int(r.choice([0, 8, 16]))
    for i in range(4):
        x0 = 40 + (cw + 30) * (i % 2)
        y0 = y + (ch + 20) * (i // 2)
        p.rect((x0, y0, x0 + cw, y0 + ch), width=lw + 1, radius=rad)
        p.text(
            (x0 + 12, y0 + 10), f"{str(r.choice(['SELECTION', 'LEG', 'BET']))} {i + 1}", "bold", 15
        )
        p.hline(x0, x0 + cw, y0 + 40, width=lw)
        p.text((x0 + 10, y0 + 44), "TIME", "sans", 12)
        p.vline(x0 + cw // 4, y0 + 40, y0 + 122, width=lw)
        p.text((x0 + cw // 4 + 8, y0 + 44), "COURSE", "sans", 12)
        p.hline(x0, x0 + cw, y0 + 122, width=lw)
        p.text((x0 + 10, y0 + 126), "SELECTION", "sans", 12)
        p.vline(x0 + int(cw * 0.7), y0 + 122, y0 + ch, width=lw)
        p.text((x0 + int(cw * 0.7) + 8, y0 + 126), "STAKE", "sans", 12)
        lay.fields[f"leg{i}.time"] = (x0 + 6, y0 + 48, x0 + cw // 4, y0 + 122)
        lay.fields[f"leg{i}.meeting"] = (x0 + cw // 4 + 6, y0 + 48, x0 + cw - 6, y0 + 122)
        lay.fields[f"leg{i}.selection"] = (x0 + 6, y0 + 132, x0 + int(cw * 0.7), y0 + ch - 3)
        lay.fields[f"leg{i}.stake"] = (x0 + int(cw * 0.7) + 6, y0 + 132, x0 + cw - 6, y0 + ch - 3)
    p.fields.append((40, y, w - 40, y + 2 * ch + 20))
    return y + 2 * ch + int(r.integers(40, 60))


def _random_totals(p: _RandomPen, lay: Layout, w: int, y: int) -> int:
    r = p.rng
    fs = int(r.integers(14, 22))
    bh = int(r.integers(58, 80))
    lw = int(r.integers(1, 4))
    rad = int(r.choice([0, 0, 8]))
    parts = ["type", "stake", "total"]
    r.shuffle(parts)
    x = 40
    slot = (w - 80) // 3
    for key in parts:
        label = {"type": "BET", "stake": "STAKE £", "total": "TOTAL £"}[key]
        label = str(r.choice([label, label.title(), label.replace(" £", "")]))
        if key == "type" and r.random() < 0.5:
            label = "OTHER BET"
        tw = int(_font("bold", fs).getlength(label)) + 12
        if r.random() < 0.5:  # label above the box
            p.text((x, y), label, "bold", fs)
            b = (x, y + fs + 10, x + slot - 30, y + fs + 10 + bh)
        else:
            p.text((x, y + bh // 2), label, "bold", fs, anchor="lm")
            b = (x + tw, y, x + slot - 30, y + bh)
        if key == "type" and r.random() < 0.6:
            _rule(p, b[0], b[2], b[3], str(r.choice(["solid", "dashed", "dotted"])), lw)
        else:
            p.rect(b, width=lw, radius=rad)
        lay.fields[key] = b
        p.fields.append(b)
        x += slot
    return y + bh + fs + int(r.integers(25, 45))


def _random_design(seed: int) -> tuple[np.ndarray, Layout]:
    r = np.random.default_rng([seed, 60221])
    w = int(r.integers(1000, 1360))
    canvas_h = 1700
    p = _RandomPen(w, canvas_h, r)
    lay = Layout(random_design_name(seed), w, canvas_h, "table", ink=float(r.uniform(0.5, 0.95)))
    y = _random_header(p, w, 20)
    ticks_first = r.random() < 0.5
    if ticks_first and r.random() < 0.8:
        y = _random_ticks(p, lay, w, y)
    body = str(r.choice(["table", "lines", "cards"], p=[0.5, 0.3, 0.2]))
    y = {"table": _random_table, "lines": _random_lines, "cards": _random_cards}[body](p, lay, w, y)
    if not ticks_first and r.random() < 0.7:
        y = _random_ticks(p, lay, w, y)
    y = _random_totals(p, lay, w, y)
    if r.random() < 0.3:  # a strip of account-number digit boxes
        n, s = int(r.integers(6, 11)), int(r.integers(24, 36))
        p.text((40, y + s // 2), "A/C No.", "bold", 16, anchor="lm")
        for k in range(n):
            p.rect((130 + k * s, y, 130 + (k + 1) * s, y + s), width=2)
        y += s + 20
    if r.random() < 0.8:
        sp_h = int(r.integers(60, 170))
        size = int(r.integers(10, 17))
        if r.random() < 0.3:
            mid = w // 2
            p.small_print((40, y, mid - 15, y + sp_h), size=size)
            p.small_print((mid + 15, y, w - 40, y + sp_h), size=size)
        else:
            p.small_print((40, y, w - 40, y + sp_h), size=size)
        y += sp_h + 10
    height = min(canvas_h, y + int(r.integers(15, 50)))
    # Extras wherever they clear the fields: hatching, patterns, barcodes, QR-like blocks,
    # a rubber-stamp box, a shaded office-use box.
    for _ in range(int(r.integers(1, 5))):
        kind = str(r.choice(["hatch", "pattern", "barcode", "blocks", "stamp", "office", "logo"]))
        bw, bh = int(r.integers(60, 280)), int(r.integers(40, 140))
        if kind == "blocks":
            bw = bh = int(r.integers(60, 130))
        for _try in range(25):
            x0, y0 = int(r.integers(0, max(1, w - bw))), int(r.integers(0, max(1, height - bh)))
            b = (x0, y0, x0 + bw, y0 + bh)
            if p.free(b):
                break
        else:
            continue
        if kind == "hatch":
            p.hatch(b)
        elif kind == "pattern":
            p.pattern(b)
        elif kind == "barcode":
            p.barcode(b)
        elif kind == "blocks":
            p.blocks(b)
        elif kind == "logo":
            s = min(bw, bh)
            p.logo((x0, y0, x0 + s, y0 + s))
        elif kind == "stamp":
            p.rect(b, width=int(r.integers(2, 6)), radius=int(r.choice([0, 10])))
            word = str(r.choice(["PAID", "COPY", "VOID IF ALTERED", "CUSTOMER COPY", "OFFICE"]))
            p.text(
                ((b[0] + b[2]) / 2, (b[1] + b[3]) / 2),
                word,
                "bold",
                max(12, min(bh // 2, 40)),
                anchor="mm",
            )
        else:
            p.rect(b, width=1)
            p.text((b[0] + 6, b[1] + 4), "FOR OFFICE USE", "sans", 12)
        p.fields.append(b)
    ink = p.array()[:height]
    if r.random() < 0.12:
        # Nothing printed at all: handwriting (and maybe a till stamp) on plain paper, the
        # plain-crop case the separator must pass through intact.
        ink[:] = 0
    lay.height = height
    return ink, lay


@lru_cache(maxsize=64)
def _random_cached(name: str) -> tuple[np.ndarray, Layout]:
    ink, lay = _random_design(int(name[len(RANDOM_PREFIX) :]))
    ink.setflags(write=False)
    return ink, lay
