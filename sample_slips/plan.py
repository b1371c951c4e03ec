"""What goes on each slip: shops, customers, bets, demo scenarios and the written text.

Pure data, no pixels: :func:`make_plan` decides every bet from the seed, and for every
slip the list of strings the writer puts in which box (derived from the bet record and
the writer's habits), so the text on a slip always matches its bet.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import UTC, date, datetime, timedelta

import numpy as np

from sample_slips.splits import templates_for
from sample_slips.templates import Layout, layout, random_design_name
from sample_slips.writers import Writer, make_writer

COURSES = (
    "Ascot", "Newbury", "Kempton", "Sandown", "Cheltenham", "Haydock", "Doncaster", "York",
    "Lingfield", "Wolverhampton", "Chepstow", "Musselburgh", "Carlisle", "Fakenham", "Exeter",
    "Wincanton", "Catterick", "Ludlow", "Newcastle", "Southwell", "Uttoxeter", "Warwick",
    "Aintree", "Leicester", "Plumpton", "Hereford",
)  # fmt: skip
DOG_TRACKS = (
    "Romford", "Towcester", "Sheffield", "Hove", "Nottingham", "Monmore", "Crayford",
    "Perry Barr", "Sunderland", "Yarmouth",
)  # fmt: skip
ADJ = (
    "Golden", "Silent", "Midnight", "Royal", "Lucky", "Brave", "Silver", "Copper", "Misty",
    "Rapid", "Northern", "Wild", "Gentle", "Bold", "Scarlet", "Velvet", "Dancing", "Hidden",
    "Crimson", "Little", "Grand", "Distant", "Quiet", "Sunny", "Kings", "Jolly", "Ballymac",
)  # fmt: skip
NOUN = (
    "Arrow", "Partner", "Legend", "Spirit", "Harbour", "Meadow", "Thunder", "Echo", "Falcon",
    "Promise", "Rover", "Lady", "Storm", "Lantern", "Warrior", "Breeze", "Whisper", "Dream",
    "Mischief", "Sovereign", "Comet", "Ember", "Valley", "Jester", "Flyer", "Duke",
)  # fmt: skip
TEAMS = (
    "Arsenal", "Chelsea", "Everton", "Leeds", "Burnley", "Fulham", "Brentford", "Spurs",
    "Wolves", "Villa", "Celtic", "Rangers", "Hibs", "Stoke", "Derby", "Hull", "Millwall",
    "Sunderland", "Norwich", "Bolton",
)  # fmt: skip
PLAYERS = (
    "Moreau", "Kovac", "Lindqvist", "Harland", "Okafor", "Brennan", "Silva", "Tanaka",
    "Novak", "Duval", "Reyes", "Fischer",
)  # fmt: skip
FIRST = (
    "James", "Mary", "John", "Patricia", "Robert", "Linda", "Michael", "Barbara", "David",
    "Susan", "Paul", "Karen", "Mark", "Sarah", "Gary", "Lisa", "Kevin", "Julie", "Steven",
    "Donna", "Ian", "Tracy", "Colin", "Angela", "Darren", "Nicola", "Wayne", "Joanne",
)  # fmt: skip
LAST = (
    "Smith", "Jones", "Taylor", "Brown", "Williams", "Wilson", "Johnson", "Davies",
    "Robinson", "Wright", "Thompson", "Evans", "Walker", "White", "Roberts", "Green", "Hall",
    "Wood", "Jackson", "Clarke", "Hughes", "Edwards", "Turner", "Hill", "Moore", "Harris",
)  # fmt: skip
SHOPS = (
    ("S01", "High Street, Leeds", "North"),
    ("S02", "Market Square, Derby", "Midlands"),
    ("S03", "Mile End Road, London", "London"),
    ("S04", "Queen Street, Cardiff", "Wales"),
    ("S05", "Union Street, Glasgow", "Scotland"),
    ("S06", "Fore Street, Exeter", "South West"),
    ("S07", "Station Road, Hull", "North"),
    ("S08", "Bridge Street, Chester", "North West"),
)
# Fractional prices as written; decimal odds = a / b + 1.
PRICES = (
    "evs", "2/1", "5/2", "3/1", "7/2", "4/1", "9/2", "5/1", "6/1", "7/1", "8/1", "10/1",
    "12/1", "14/1", "16/1", "20/1", "11/4", "6/4", "4/6", "13/8", "11/10", "33/1",
)  # fmt: skip
BET_COUNTS = {
    "single": 1,
    "double": 1,
    "treble": 1,
    "trixie": 4,
    "patent": 7,
    "yankee": 11,
    "lucky15": 15,
}
LEGS_FOR = {
    "single": 1,
    "double": 2,
    "treble": 3,
    "trixie": 3,
    "patent": 3,
    "yankee": 4,
    "lucky15": 4,
}
TYPE_WORDS = {
    "single": ("Single", "Sgl"),
    "double": ("Double", "Dbl"),
    "treble": ("Treble", "Tbl"),
    "trixie": ("Trixie", "Trix"),
    "patent": ("Patent", "Pat"),
    "yankee": ("Yankee", "Yank"),
    "lucky15": ("Lucky 15", "L15"),
}
FIRST_DAY = date(2026, 11, 2)  # November: UK local time == UTC, so race times are UTC
N_DAYS = 19
IMAGE_EXT = ".jpg"  # scanners deliver JPEG; a noisy PNG scan is 4-6x larger
AML_THRESHOLD_GBP = 2000.0
REFERRAL_LIMIT_GBP = 500.0


@dataclass
class Leg:
    sport: str
    hour: int
    minute: int
    venue: str  # course, track, or "Home v Away"
    selection: str
    market: str
    price: str | None  # written fractional price, None = SP

    @property
    def odds(self) -> float | None:
        if self.price is None:
            return None
        if self.price == "evs":
            return 2.0
        a, b = self.price.split("/")
        return round(int(a) / int(b) + 1.0, 4)

    @property
    def event(self) -> str:
        if self.sport in ("Horse Racing", "Greyhounds"):
            return f"{_clock(self.hour, self.minute, '.', False)} {self.venue}"
        return self.venue


@dataclass
class SlipPlan:
    """Everything needed to draw one slip, and its records."""

    index: int
    image: str
    writer: Writer
    template: str
    shop: str
    customer: str | None
    day: date
    placed: datetime
    bet_type: str
    each_way: bool
    unit: float
    legs: list[Leg]
    items: list[dict[str, str]] = field(default_factory=list)  # field, text|mark, crossed
    stamp: bool = True
    bet_id: str = ""
    till: int = 1

    @property
    def total(self) -> float:
        return round(self.unit * BET_COUNTS[self.bet_type] * (2 if self.each_way else 1), 2)

    def bet_record(self) -> dict[str, object]:
        legs = []
        for leg in self.legs:
            start = datetime(
                self.day.year, self.day.month, self.day.day, leg.hour, leg.minute, tzinfo=UTC
            )
            legs.append(
                {
                    "sport": leg.sport,
                    "event": leg.event,
                    "event_start": _iso(start),
                    "market": leg.market,
                    "selection": leg.selection,
                    "odds": leg.odds,
                }
            )
        return {
            "image": self.image,
            "shop": self.shop,
            "customer": self.customer,
            "placed_at": _iso(self.placed),
            "currency": "GBP",
            "unit_stake": self.unit,
            "total_stake": self.total,
            "bet_type": self.bet_type,
            "each_way": self.each_way,
            "legs": legs,
            "written_text": [i["text"] for i in self.items if "text" in i],
            "ticked": [i["field"] for i in self.items if "mark" in i],
            "crossed_out": [i["crossed"] for i in self.items if "crossed" in i],
            # Where each mark went: {"field": box name, "text" or "mark", "crossed"?}.
            "writing": [dict(i) for i in self.items],
            "bet_id": self.bet_id,
            "template": self.template,
        }


def _iso(dt: datetime) -> str:
    return dt.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def _clock(hour: int, minute: int, sep: str, clock24: bool) -> str:
    h = hour if clock24 or hour <= 12 else hour - 12
    return f"{h}{sep}{minute:02d}"


def fmt_money(x: float, w: Writer, *, pound: bool | None = None) -> str:
    """A stake as this writer writes it: '£5', '5.00', '£2.50'."""
    s = f"{x:.2f}" if (w.decimals or x != int(x)) else f"{int(x)}"
    return ("£" if (w.pound if pound is None else pound) else "") + s


def parse_money(s: str) -> float:
    """Inverse of :func:`fmt_money` for the first number in a written stake or total."""
    num = ""
    for ch in s:
        if ch.isdigit() or (ch == "." and num):
            num += ch
        elif num:
            break
    return float(num.rstrip("."))


def _case(s: str, caps: str) -> str:
    if caps == "upper":
        return s.upper()
    if caps == "lower":
        return s.lower()
    return s


def _name(rng: np.random.Generator, used: set[str]) -> str:
    while True:
        n = f"{ADJ[rng.integers(len(ADJ))]} {NOUN[rng.integers(len(NOUN))]}"
        if n not in used:
            used.add(n)
            return n


def _random_leg(rng: np.random.Generator, *, sport: str | None = None) -> Leg:
    sport = sport or str(
        rng.choice(["Horse Racing", "Greyhounds", "Football", "Tennis"], p=[0.7, 0.14, 0.11, 0.05])
    )
    price = str(rng.choice(PRICES))
    if sport == "Horse Racing":
        hour, minute = int(rng.integers(12, 21)), int(rng.integers(0, 12)) * 5
        return Leg(sport, hour, minute, str(rng.choice(COURSES)), _name(rng, set()), "Win", price)
    if sport == "Greyhounds":
        hour, minute = int(rng.integers(10, 22)), int(rng.integers(0, 60))
        sel = f"Trap {rng.integers(1, 7)}" if rng.random() < 0.4 else _name(rng, set())
        return Leg(sport, hour, minute, str(rng.choice(DOG_TRACKS)), sel, "Win", price)
    if sport == "Football":
        hour, minute = [(12, 30), (15, 0), (17, 30), (19, 45), (20, 0)][rng.integers(5)]
        home, away = rng.choice(TEAMS, size=2, replace=False)
        sel = str(rng.choice([home, away, "Draw"], p=[0.5, 0.35, 0.15]))
        return Leg(sport, hour, minute, f"{home} v {away}", sel, "Match Result", price)
    hour, minute = int(rng.integers(11, 20)), int(rng.choice([0, 30]))
    a, b = rng.choice(PLAYERS, size=2, replace=False)
    return Leg(sport, hour, minute, f"{a} v {b}", str(rng.choice([a, b])), "Match Winner", price)


def _round_stake(x: float) -> float:
    for step in (50.0, 10.0, 5.0, 1.0, 0.5):
        if x >= step * 4:
            return max(step, round(x / step) * step)
    return max(0.5, round(x * 2) / 2)


def _random_bet(rng: np.random.Generator, w: Writer) -> tuple[str, bool, float, list[Leg]]:
    n = int(rng.choice([1, 2, 3, 4], p=[0.5, 0.2, 0.15, 0.15]))
    bet_type = {
        1: "single",
        2: "double",
        3: str(rng.choice(["treble", "trixie", "patent"])),
        4: str(rng.choice(["yankee", "lucky15"])),
    }[n]
    legs = [_random_leg(rng) for _ in range(n)]
    each_way = all(leg.sport == "Horse Racing" for leg in legs) and rng.random() < 0.45
    scale = 1.0 if n <= 2 else 0.25
    unit = _round_stake(w.typical_stake * scale * float(rng.choice([0.5, 1, 1, 1, 2])))
    return bet_type, each_way, unit, legs


def _writing(p: SlipPlan, lay: Layout, rng: np.random.Generator) -> list[dict[str, str]]:
    """The writer's marks for a slip, derived from the bet record and their habits."""
    w = p.writer
    items: list[dict[str, str]] = []
    f = lay.fields
    # Habits hold on most slips, not all: now and then a writer switches to capitals.
    caps = w.caps if rng.random() < 0.85 else str(rng.choice(["as_is", "upper", "lower"]))
    ew_ticked = False
    ew_text = w.ew_word if p.each_way else None
    win_text = None
    if not p.each_way and rng.random() < w.win_rate:
        win_text = w.win_word
    single = p.bet_type == "single"
    for i, leg in enumerate(p.legs):
        t = _clock(leg.hour, leg.minute, w.time_sep, w.clock24)
        venue = _case(leg.venue, caps)
        sel = _case(leg.selection, caps)
        price = None
        if rng.random() < w.odds_rate:
            price = leg.price or "SP"
        if leg.price is not None and price is None:
            leg.price = None  # no price written: the bet is at SP
        elif price == "SP":
            leg.price = None
        if f"leg{i}.line" in f:
            parts = [t, venue, sel] if leg.sport in ("Horse Racing", "Greyhounds") else [venue, sel]
            if leg.sport in ("Football", "Tennis") and rng.random() < 0.5:
                parts = [t, *parts]
            if price:
                parts.append(("@ " if rng.random() < 0.4 else "") + price)
            items.append({"field": f"leg{i}.line", "text": " ".join(parts)})
        else:
            if f"leg{i}.event" in f:
                items.append({"field": f"leg{i}.event", "text": f"{t} {venue}"})
            else:
                items.append({"field": f"leg{i}.time", "text": t})
                items.append({"field": f"leg{i}.meeting", "text": venue})
            items.append({"field": f"leg{i}.selection", "text": sel})
            if price:
                key = f"leg{i}.odds" if f"leg{i}.odds" in f else f"leg{i}.selection"
                if key == f"leg{i}.odds":
                    items.append({"field": key, "text": price})
                else:
                    items[-1]["text"] += f" {price}"
        if p.each_way and w.prefers_ticks and f"leg{i}.ew" in f:
            items.append({"field": f"leg{i}.ew", "mark": w.tick_style})
            ew_ticked = True
        elif win_text and w.prefers_ticks and f"leg{i}.win" in f:
            items.append({"field": f"leg{i}.win", "mark": w.tick_style})
    if p.each_way and w.prefers_ticks and "tick.ew" in f and not ew_ticked:
        items.append({"field": "tick.ew", "mark": w.tick_style})
        ew_ticked = True
    stake = fmt_money(p.unit, w)
    if p.each_way and not ew_ticked:
        stake += f" {ew_text}"
    elif win_text and not any("mark" in it for it in items):
        stake += f" {win_text}"
    if single and "leg0.stake" in f and rng.random() < 0.8:
        items.append({"field": "leg0.stake", "text": stake})
    else:
        items.append({"field": "stake", "text": stake})
    if not single or rng.random() < 0.15:
        tick = f"tick.{p.bet_type}"
        if tick in f and (w.prefers_ticks or rng.random() < 0.5):
            items.append({"field": tick, "mark": w.tick_style})
        else:
            word = TYPE_WORDS[p.bet_type][1 if w.abbreviate else 0]
            items.append({"field": "type", "text": _case(word, caps)})
    if rng.random() < w.total_rate or (p.total != p.unit and rng.random() < w.total_rate):
        prefix = str(rng.choice(["Total ", "TOTAL ", "T ", "", "Tot "]))
        items.append({"field": "total", "text": prefix + fmt_money(p.total, w)})
    # Crossings-out: the writer first puts a wrong stake or name, strikes it, writes again.
    if rng.random() < w.crossout_rate:
        texts = [k for k, it in enumerate(items) if "text" in it]
        k = texts[int(rng.integers(len(texts)))]
        wrong = items[k]["text"].split(" ")[0]
        wrong = wrong[:-1] + ("7" if wrong[-1:] != "7" else "4") if wrong else "x"
        items[k]["crossed"] = wrong
    return items


def _customer(ref: str, rng: np.random.Generator, **kw: object) -> dict[str, object]:
    reg = FIRST_DAY - timedelta(days=int(rng.integers(30, 2500)))
    c: dict[str, object] = {
        "ref": ref,
        "name": f"{FIRST[rng.integers(len(FIRST))]} {LAST[rng.integers(len(LAST))]}",
        "status": "active",
        "registered_at": reg.isoformat(),
        "risk_category": str(
            rng.choice(["normal", "good", "new", "watch"], p=[0.7, 0.15, 0.1, 0.05])
        ),
        "stake_factor": float(rng.choice([1.0, 1.0, 1.0, 1.0, 0.5])),
    }
    c.update(kw)
    return c


@dataclass
class Plan:
    shops: list[dict[str, str]]
    customers: list[dict[str, object]]
    slips: list[SlipPlan]
    scenarios: list[dict[str, object]]
    writers: list[Writer]


SCENARIOS = (
    "multi_account",
    "self_excluded_anonymous",
    "aml_over_threshold",
    "structuring",
    "selection_run",
)


def make_plan(
    *,
    writers: int,
    slips_per_writer: int,
    seed: int,
    split: str,
    random_designs: float = 0.0,
    first_writer: int = 1,
) -> Plan:
    """Decide every slip of a set. Deterministic in its arguments.

    The set's writers are numbers ``first_writer`` .. ``first_writer + writers - 1`` of the
    split (a writer is the same person in every set, :func:`sample_slips.writers.make_writer`),
    so a set of writers no earlier set held starts past the largest one used.

    ``random_designs`` (fit split only) is the fraction of slips drawn on a procedurally
    randomised design (``sample_slips.templates.random_design_name``) instead of a fit
    design; 0 leaves the plan exactly as without it.
    """
    if not 0.0 <= random_designs <= 1.0:
        raise ValueError(f"random_designs must be in [0, 1], got {random_designs!r}")
    if random_designs and split != "fit":
        raise ValueError("random_designs is for the fit split only (held-out sets stay fixed)")
    rng = np.random.default_rng([seed, 7919])
    # Its own stream: the other draws (and so every set without random designs) are unchanged.
    design_rng = np.random.default_rng([seed, 15485863])
    if first_writer < 1:
        raise ValueError(f"first_writer must be >= 1, got {first_writer!r}")
    ws = [make_writer(split, first_writer - 1 + i) for i in range(writers)]
    designs = templates_for(split)
    shops = [{"code": c, "name": n, "region": r} for c, n, r in SHOPS]
    customers: list[dict[str, object]] = []
    scenarios: list[dict[str, object]] = []
    n_cust = 0

    def new_ref() -> str:
        nonlocal n_cust
        n_cust += 1
        return f"C{n_cust:03d}"

    # Scenario writers are drawn at random; one scenario per writer, in a fixed order.
    order = rng.permutation(writers)
    roles: dict[int, str] = {}
    for kind, wi in zip(SCENARIOS, order, strict=False):
        roles[int(wi)] = kind
    slips: list[SlipPlan] = []
    run_leg = _random_leg(rng, sport="Horse Racing")
    run_leg.hour, run_leg.minute = 16, 20
    run_day = FIRST_DAY + timedelta(days=int(rng.integers(2, N_DAYS - 2)))
    index = 0
    for wi, w in enumerate(ws):
        role = roles.get(wi)
        srng = np.random.default_rng([seed, 104729, wi])
        home = [shops[int(k)]["code"] for k in srng.choice(len(shops), size=2, replace=False)]
        accounts: list[str] = []
        scen: dict[str, object] | None = None
        if role == "multi_account":
            n_acc = max(1, min(3, slips_per_writer))
            for _ in range(n_acc):
                ref = new_ref()
                accounts.append(ref)
                customers.append(_customer(ref, srng, risk_category="normal"))
            scen = {"kind": role, "note": f"one writer, {n_acc} accounts under different names"}
        elif role == "self_excluded_anonymous":
            ref = new_ref()
            accounts.append(ref)
            excl = FIRST_DAY + timedelta(days=N_DAYS // 2)
            customers.append(
                _customer(
                    ref,
                    srng,
                    status="self_excluded",
                    risk_category="high",
                    self_excluded_at=excl.isoformat(),
                )
            )
            scen = {
                "kind": role,
                "note": f"{ref} self-excluded on {excl.isoformat()}; the same hand keeps "
                "betting anonymously afterwards",
            }
        elif role in ("aml_over_threshold", "structuring"):
            scen = {"kind": role}
        elif role == "selection_run":
            scen = {"kind": role}
        elif srng.random() < 0.7:
            ref = new_ref()
            accounts.append(ref)
            customers.append(_customer(ref, srng))
        images: list[str] = []
        base_day = FIRST_DAY + timedelta(days=int(srng.integers(0, N_DAYS - 3)))
        for k in range(slips_per_writer):
            index += 1
            image = f"slip_{index:05d}{IMAGE_EXT}"
            images.append(image)
            bet_type, each_way, unit, legs = _random_bet(srng, w)
            day = FIRST_DAY + timedelta(days=int(srng.integers(0, N_DAYS)))
            shop = home[0] if srng.random() < 0.6 else str(srng.choice([s["code"] for s in shops]))
            customer: str | None = None
            if accounts:
                customer = accounts[k % len(accounts)] if srng.random() < 0.9 else None
            if role == "multi_account":
                customer = accounts[k % len(accounts)]
                shop = shops[(wi + k) % len(shops)]["code"]
            elif role == "self_excluded_anonymous":
                before = k < max(1, slips_per_writer // 3) and slips_per_writer > 1
                customer = accounts[0] if before else None
                off = int(srng.integers(1, N_DAYS // 2 - 1))
                day = FIRST_DAY + timedelta(days=N_DAYS // 2 + (-off if before else off))
            elif role == "aml_over_threshold":
                # Anonymous cash stakes across shops within 3 days, together over the threshold.
                bet_type, legs = "single", [_random_leg(srng, sport="Horse Racing")]
                each_way = False
                unit = _round_stake(
                    AML_THRESHOLD_GBP * 1.45 / slips_per_writer * srng.uniform(0.8, 1.2)
                )
                day = base_day + timedelta(days=k % 3)
                shop = shops[(wi + k) % len(shops)]["code"]
            elif role == "structuring":
                bet_type, legs = "single", [_random_leg(srng, sport="Horse Racing")]
                each_way = False
                unit = float(REFERRAL_LIMIT_GBP - srng.choice([1, 2, 5, 10, 20]))
                day = base_day + timedelta(days=k // 3)
                shop = home[k % 2]
            elif role == "selection_run":
                bet_type, each_way = "single", bool(srng.random() < 0.4)
                legs = [Leg(**run_leg.__dict__)]
                unit = _round_stake(float(srng.choice([20, 25, 50, 100])))
                day = run_day
                shop = shops[(wi + k) % len(shops)]["code"]
            elif k == 0 and wi in {int(order[j]) for j in range(5, min(8, writers))}:
                # A few ordinary punters join the run on the same selection.
                bet_type, each_way = "single", False
                legs = [Leg(**run_leg.__dict__)]
                day = run_day
            first = min(leg.hour * 60 + leg.minute for leg in legs)
            lead = int(srng.integers(5, 180))
            minutes = max(9 * 60, first - lead)
            placed = datetime(day.year, day.month, day.day, tzinfo=UTC) + timedelta(
                minutes=minutes, seconds=int(srng.integers(0, 60))
            )
            if any(
                leg.event == run_leg.event and leg.selection == run_leg.selection for leg in legs
            ):
                placed = datetime(day.year, day.month, day.day, 14, 50, tzinfo=UTC) + timedelta(
                    minutes=int(srng.integers(0, 80)), seconds=int(srng.integers(0, 60))
                )
            template = designs[int(srng.integers(len(designs)))]
            if random_designs and design_rng.random() < random_designs:
                template = random_design_name(int(design_rng.integers(1 << 31)))
            plan = SlipPlan(
                index=index,
                image=image,
                writer=w,
                template=template,
                shop=shop,
                customer=customer,
                day=day,
                placed=placed,
                bet_type=bet_type,
                each_way=each_way,
                unit=unit,
                legs=legs,
                stamp=bool(srng.random() < 0.8),
                bet_id=f"{int(shop[1:]):02d}{srng.integers(0, 10**8):08d}",
                till=int(srng.integers(1, 5)),
            )
            plan.items = _writing(plan, layout(template), srng)
            slips.append(plan)
        if scen is not None:
            scen["writer"] = w.id
            scen["customers"] = accounts
            scen["images"] = images
            if role == "aml_over_threshold":
                total = sum(s.total for s in slips if s.image in images)
                scen["note"] = (
                    f"anonymous cash stakes £{total:,.2f} across "
                    f"{len({s.shop for s in slips if s.image in images})} shops within 3 days "
                    f"(threshold £{AML_THRESHOLD_GBP:,.0f})"
                )
                scen["threshold"] = AML_THRESHOLD_GBP
            elif role == "structuring":
                scen["note"] = (
                    f"stakes just under the £{REFERRAL_LIMIT_GBP:,.0f} referral limit, split "
                    "across slips and shops"
                )
                scen["limit"] = REFERRAL_LIMIT_GBP
            elif role == "selection_run":
                scen["selection"] = run_leg.selection
                scen["event"] = run_leg.event
            scenarios.append(scen)
    # Everyone's slips on the run selection belong to the selection_run scenario.
    for scen in scenarios:
        if scen["kind"] == "selection_run":
            run_images = [
                s.image
                for s in slips
                if any(
                    leg.event == run_leg.event and leg.selection == run_leg.selection
                    for leg in s.legs
                )
            ]
            scen["images"] = run_images
            scen["note"] = (
                f"{len(run_images)} bets on {run_leg.selection} ({run_leg.event}) within "
                f"90 minutes on {run_day.isoformat()} across shops"
            )
    closed = _customer(new_ref(), rng, status="closed", risk_category="normal")
    customers.append(closed)
    return Plan(shops=shops, customers=customers, slips=slips, scenarios=scenarios, writers=ws)
