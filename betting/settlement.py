"""Settlement of a bet from the results of its legs.

Conventions (UK retail): odds are decimal and include the stake; an each-way bet is two
equal bets, win and place, the place part paid at a fraction of the win odds (1/4, 1/5);
a void or non-runner leg counts as odds 1.0 in a multiple and returns the stake of a single;
a dead heat divides the stake (``dead_heat`` is the share, e.g. 0.5 for two runners);
a Rule 4 deduction takes ``rule4`` pence in the pound off the winnings, never the stake.
Full-cover bets are every combination of their legs at the listed sizes.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from enum import StrEnum
from itertools import combinations

# Full-cover bets: the combination sizes each covers (Trixie = 3 doubles + 1 treble, ...).
FULL_COVER = {
    "trixie": (3, (2, 3)),
    "patent": (3, (1, 2, 3)),
    "yankee": (4, (2, 3, 4)),
    "lucky15": (4, (1, 2, 3, 4)),
}
STRAIGHT = {"single": 1, "double": 2, "treble": 3}


class LegResult(StrEnum):
    won = "won"
    placed = "placed"
    lost = "lost"
    void = "void"  # includes non-runners


class Outcome(StrEnum):
    won = "won"
    placed = "placed"
    lost = "lost"
    void = "void"


@dataclass(frozen=True)
class LegSettlement:
    """One selection's result as it applies to this bet."""

    result: LegResult
    odds: float  # decimal price taken (or the starting price for SP bets)
    place_fraction: float = 0.25  # each-way terms: 1/4 or 1/5 of the odds
    dead_heat: float = 1.0  # share of the stake paid at full odds after a dead heat
    rule4: float = 0.0  # deduction in pence per pound, as a fraction (0.10 = 10p)


@dataclass(frozen=True)
class Settlement:
    outcome: Outcome
    returns: float  # what is paid back, stake included, to the penny
    lines: int
    total_stake: float


def _win_factor(leg: LegSettlement) -> float:
    if leg.result == LegResult.void:
        return 1.0
    if leg.result != LegResult.won:
        return 0.0
    winnings = (leg.odds - 1.0) * (1.0 - leg.rule4)
    return leg.dead_heat * (1.0 + winnings)


def _place_factor(leg: LegSettlement) -> float:
    if leg.result == LegResult.void:
        return 1.0
    if leg.result not in (LegResult.won, LegResult.placed):
        return 0.0
    winnings = (leg.odds - 1.0) * leg.place_fraction * (1.0 - leg.rule4)
    return leg.dead_heat * (1.0 + winnings)


def bet_lines(bet_type: str, n_legs: int) -> list[tuple[int, ...]]:
    """The leg index combinations a bet type covers, e.g. a double on two legs -> [(0, 1)]."""
    bet_type = bet_type.lower()
    if bet_type in FULL_COVER:
        need, sizes = FULL_COVER[bet_type]
        if n_legs != need:
            raise ValueError(f"bet_type {bet_type} needs {need} legs, got {n_legs}")
        return [c for size in sizes for c in combinations(range(n_legs), size)]
    if bet_type in STRAIGHT:
        if n_legs != STRAIGHT[bet_type]:
            raise ValueError(f"bet_type {bet_type} needs {STRAIGHT[bet_type]} legs, got {n_legs}")
        return [tuple(range(n_legs))]
    if bet_type == "accumulator":
        if n_legs < 2:
            raise ValueError("bet_type accumulator needs at least 2 legs")
        return [tuple(range(n_legs))]
    raise ValueError(f"bet_type {bet_type} cannot be settled automatically")


def settle(
    *, bet_type: str, unit_stake: float, each_way: bool, legs: list[LegSettlement]
) -> Settlement:
    """Settle a bet whose legs all have results.

    Parameters
    ----------
    bet_type : single, double, treble, accumulator, trixie, patent, yankee or lucky15
    unit_stake : stake per line (per part for each-way)
    each_way : whether every line is also struck for a place
    legs : the results, in the bet's leg order
    """
    if not math.isfinite(unit_stake) or unit_stake <= 0:
        raise ValueError("unit_stake must be a positive number")
    for i, leg in enumerate(legs):
        if not math.isfinite(leg.odds) or leg.odds < 1.0:
            raise ValueError(f"legs[{i}].odds must be a decimal price of at least 1.0")
        if not 0 < leg.dead_heat <= 1 or not 0 <= leg.rule4 < 1 or not 0 < leg.place_fraction <= 1:
            raise ValueError(f"legs[{i}] has dead_heat, rule4 or place_fraction out of range")
    lines = bet_lines(bet_type, len(legs))
    win_returns = sum(unit_stake * math.prod(_win_factor(legs[i]) for i in line) for line in lines)
    place_returns = 0.0
    if each_way:
        place_returns = sum(
            unit_stake * math.prod(_place_factor(legs[i]) for i in line) for line in lines
        )
    n_lines = len(lines) * (2 if each_way else 1)
    total_stake = unit_stake * n_lines
    returns = _round_down_penny(win_returns + place_returns)
    if all(leg.result == LegResult.void for leg in legs):
        outcome = Outcome.void
    elif returns <= 0:
        outcome = Outcome.lost
    elif win_returns > 0 and any(leg.result == LegResult.won for leg in legs):
        outcome = Outcome.won
    else:
        outcome = Outcome.placed
    return Settlement(outcome=outcome, returns=returns, lines=n_lines,
                      total_stake=round(total_stake, 2))  # fmt: skip


def _round_down_penny(amount: float) -> float:
    """Bookmakers pay to the penny below; the epsilon absorbs binary float error."""
    return math.floor(amount * 100 + 1e-6) / 100
