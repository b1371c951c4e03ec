from __future__ import annotations

import pytest

from api.ratelimit import SlidingWindow
from tests.factories import make_bet, scan_bytes


def test_sliding_window_counts_per_key_and_forgets_old_hits():
    window = SlidingWindow(limit=2, seconds=10)
    assert window.hit("a", now=0.0) is None
    assert window.hit("a", now=1.0) is None
    assert window.hit("a", now=2.0) == 8.0  # the first hit leaves the window at t = 10
    assert window.hit("b", now=2.0) is None
    assert window.hit("a", now=10.5) is None
    with pytest.raises(ValueError):
        SlidingWindow(limit=0, seconds=1)


@pytest.mark.parametrize("db_url", ["sqlite"], indirect=True)
def test_uploads_over_the_rate_get_429(settings, keys, session):
    from fastapi.testclient import TestClient

    from api.main import create_app

    app = create_app(settings.model_copy(update={"upload_rate_per_minute": 2}))
    bets = [make_bet(session) for _ in range(3)]
    with TestClient(app, headers={"X-API-Key": keys.admin}) as client:
        codes = [
            client.post(
                f"/bets/{b.id}/slip", files={"slip": ("s.png", scan_bytes(seed=i))}
            ).status_code
            for i, b in enumerate(bets)
        ]
        assert codes == [202, 202, 429]
        resp = client.post(f"/bets/{bets[2].id}/slip", files={"slip": ("s.png", scan_bytes())})
        assert "at most 2 per 60 s" in resp.json()["detail"]
