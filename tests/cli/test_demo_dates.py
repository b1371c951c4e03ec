"""The demo replays the sample bets moved to recent dates, so windowed rules still see them."""

import json
from datetime import date

from cli.demo import SAMPLE_SET, recent


def test_sample_dates_move_by_whole_days_so_the_newest_bet_is_yesterdays():
    data = json.loads((SAMPLE_SET / "bets.json").read_text())
    moved = recent(data, today=date(2027, 3, 1))
    newest = max(b["placed_at"] for b in moved["bets"])
    assert newest.startswith("2027-02-28T")
    # every bet moved by the same number of days, times of day kept
    before = [date.fromisoformat(b["placed_at"][:10]) for b in data["bets"]]
    after = [date.fromisoformat(b["placed_at"][:10]) for b in moved["bets"]]
    assert len({(a - b).days for a, b in zip(after, before, strict=True)}) == 1
    assert [b["placed_at"][10:] for b in moved["bets"]] == [
        b["placed_at"][10:] for b in data["bets"]
    ]
    shift = after[0] - before[0]
    # legs, self-exclusions and registrations move with them (dates stay dates)
    leg, leg0 = moved["bets"][0]["legs"][0], data["bets"][0]["legs"][0]
    assert (
        date.fromisoformat(leg["event_start"][:10]) - date.fromisoformat(leg0["event_start"][:10])
        == shift
    )
    for c, c0 in zip(moved["customers"], data["customers"], strict=True):
        for key in ("self_excluded_at", "registered_at"):
            if c0.get(key):
                assert len(c[key]) == len(c0[key])
                assert date.fromisoformat(c[key][:10]) - date.fromisoformat(c0[key][:10]) == shift
    assert moved["bets"][0]["image"] == data["bets"][0]["image"]  # other strings untouched
