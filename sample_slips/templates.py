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
    """The printed ink (uint8, rows x cols, 255 = ink, read-only) and layout of a design."""
    return _design(name)


def layout(name: str) -> Layout:
    """The layout of a design."""
    return _design(name)[1]
