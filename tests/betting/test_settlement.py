from __future__ import annotations

import pytest

from betting.settlement import LegResult, LegSettlement, Outcome, bet_lines, settle

W, P, L, V = LegResult.won, LegResult.placed, LegResult.lost, LegResult.void


def leg(result, odds, **kw):
    return LegSettlement(result=result, odds=odds, **kw)


def test_single_win_lose_void():
    assert (
        settle(bet_type="single", unit_stake=10, each_way=False, legs=[leg(W, 3.5)]).returns == 35.0
    )
    lost = settle(bet_type="single", unit_stake=10, each_way=False, legs=[leg(L, 3.5)])
    assert (lost.outcome, lost.returns) == (Outcome.lost, 0.0)
    void = settle(bet_type="single", unit_stake=10, each_way=False, legs=[leg(V, 3.5)])
    assert (void.outcome, void.returns) == (Outcome.void, 10.0)


def test_each_way_single_won_and_placed():
    # £5 E/W at 11.0 (10/1), 1/4 odds a place: win 5*11 = 55, place 5*(1 + 10/4) = 17.50
    won = settle(bet_type="single", unit_stake=5, each_way=True, legs=[leg(W, 11.0)])
    assert (won.outcome, won.returns, won.total_stake) == (Outcome.won, 72.5, 10.0)
    placed = settle(bet_type="single", unit_stake=5, each_way=True,
                    legs=[leg(P, 11.0, place_fraction=0.2)])  # fmt: skip
    assert (placed.outcome, placed.returns) == (Outcome.placed, 15.0)  # 5 * (1 + 10/5)


def test_double_with_a_void_leg_becomes_a_single():
    s = settle(bet_type="double", unit_stake=10, each_way=False, legs=[leg(W, 2.0), leg(V, 5.0)])
    assert s.returns == 20.0 and s.outcome == Outcome.won


def test_treble_and_accumulator():
    s = settle(bet_type="treble", unit_stake=2, each_way=False,
               legs=[leg(W, 2.0), leg(W, 3.0), leg(W, 1.5)])  # fmt: skip
    assert s.returns == 18.0
    s = settle(bet_type="accumulator", unit_stake=1, each_way=False,
               legs=[leg(W, 2.0), leg(W, 2.0), leg(W, 2.0), leg(L, 2.0)])  # fmt: skip
    assert s.returns == 0.0 and s.outcome == Outcome.lost


def test_line_counts_of_full_cover_bets():
    assert len(bet_lines("trixie", 3)) == 4
    assert len(bet_lines("patent", 3)) == 7
    assert len(bet_lines("yankee", 4)) == 11
    assert len(bet_lines("lucky15", 4)) == 15
    with pytest.raises(ValueError, match="needs 4 legs"):
        bet_lines("yankee", 3)


def test_yankee_two_winners_pays_only_their_double():
    s = settle(bet_type="yankee", unit_stake=1, each_way=False,
               legs=[leg(W, 3.0), leg(W, 4.0), leg(L, 5.0), leg(L, 6.0)])  # fmt: skip
    assert s.returns == 12.0 and s.total_stake == 11.0 and s.lines == 11


def test_lucky15_one_winner_pays_the_single():
    s = settle(bet_type="lucky15", unit_stake=1, each_way=False,
               legs=[leg(W, 6.0), leg(L, 2.0), leg(L, 2.0), leg(L, 2.0)])  # fmt: skip
    assert s.returns == 6.0


def test_patent_all_win():
    # singles 2+3+4, doubles 6+8+12, treble 24
    s = settle(bet_type="patent", unit_stake=1, each_way=False,
               legs=[leg(W, 2.0), leg(W, 3.0), leg(W, 4.0)])  # fmt: skip
    assert s.returns == 59.0


def test_each_way_double_pays_win_and_place_lines():
    # win line 2*4*2 = 16; place line at 1/4 odds 2*(1 + 3/4)*(1 + 1/4) = 4.375 -> 4.37
    s = settle(bet_type="double", unit_stake=2, each_way=True, legs=[leg(W, 4.0), leg(W, 2.0)])
    assert s.returns == 20.37
    assert s.total_stake == 4.0


def test_dead_heat_and_rule4():
    dh = settle(bet_type="single", unit_stake=10, each_way=False, legs=[leg(W, 5.0, dead_heat=0.5)])
    assert dh.returns == 25.0
    r4 = settle(bet_type="single", unit_stake=10, each_way=False, legs=[leg(W, 5.0, rule4=0.25)])
    assert r4.returns == 40.0  # winnings 40 less 25% = 30, plus the stake 10


def test_bad_input_is_refused():
    with pytest.raises(ValueError, match="unit_stake"):
        settle(bet_type="single", unit_stake=-1, each_way=False, legs=[leg(W, 2.0)])
    with pytest.raises(ValueError, match=r"legs\[0\].odds"):
        settle(bet_type="single", unit_stake=1, each_way=False, legs=[leg(W, float("nan"))])
    with pytest.raises(ValueError, match="cannot be settled"):
        settle(bet_type="forecast", unit_stake=1, each_way=False, legs=[leg(W, 2.0)])


def test_trixie_pays_its_doubles_and_treble():
    # doubles 2*3, 2*4, 3*4 and the treble 2*3*4 at 1 a line: 4 lines staked
    two = settle(bet_type="trixie", unit_stake=1, each_way=False,
                 legs=[leg(W, 2.0), leg(W, 3.0), leg(L, 4.0)])  # fmt: skip
    assert (two.returns, two.total_stake, two.outcome) == (6.0, 4.0, Outcome.won)
    three = settle(bet_type="trixie", unit_stake=1, each_way=False,
                   legs=[leg(W, 2.0), leg(W, 3.0), leg(W, 4.0)])  # fmt: skip
    assert three.returns == 50.0  # 6 + 8 + 12 + 24
    one = settle(bet_type="trixie", unit_stake=1, each_way=False,
                 legs=[leg(W, 2.0), leg(L, 3.0), leg(L, 4.0)])  # fmt: skip
    assert (one.returns, one.outcome) == (0.0, Outcome.lost)  # no singles in a trixie


def test_treble_with_a_non_runner_becomes_a_double():
    s = settle(bet_type="treble", unit_stake=2, each_way=False,
               legs=[leg(W, 2.0), leg(V, 5.0), leg(W, 3.0)])  # fmt: skip
    assert s.returns == 12.0


def test_each_way_dead_heat_for_a_place_halves_the_place_stake():
    # 10 E/W at 9.0 (8/1), 1/4 odds: placed in a dead heat for the last place (factor 1/2):
    # the win part loses, the place part pays 10 * 1/2 * (1 + 8/4) = 15
    s = settle(bet_type="single", unit_stake=10, each_way=True,
               legs=[leg(P, 9.0, dead_heat=0.5)])  # fmt: skip
    assert (s.outcome, s.returns, s.total_stake) == (Outcome.placed, 15.0, 20.0)
