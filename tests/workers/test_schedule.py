"""The beat schedule: every scheduled task exists, and the daily self-exclusion pass runs
through a real worker and changes customers' status from the register."""

from __future__ import annotations

from datetime import timedelta

import pytest
from sqlmodel import Session

from store.db import get_engine
from store.models import Customer, CustomerStatus, utcnow
from store.trading import SelfExclusion
from tests.factories import make_customer
from tests.workers.conftest import queue_prefix, wait_for
from workers.config import PipelineConfig
from workers.schedule import beat_schedule


def test_every_scheduled_task_is_registered_and_routed():
    import workers.tasks  # noqa: F401 - registers the tasks
    from workers.app import ROUTES, app

    app.loader.import_default_modules()  # the app's include list, as a worker imports it
    schedule = beat_schedule(PipelineConfig(queue_prefix="p-"))
    for name, entry in schedule.items():
        assert entry["task"] in app.tasks, f"{name}: {entry['task']} is not a task"
        assert entry["options"]["queue"] == "p-" + ROUTES[entry["task"]], name
    daily = schedule["self-exclusions"]
    assert daily["task"] == "sliplink.exclusions"
    # once a day, after midnight UTC and before the 06:00 screening that reads the statuses
    assert daily["schedule"].hour == {0} and len(daily["schedule"].minute) == 1
    assert max(schedule["screening"]["schedule"].hour) > 0


def _register(session: Session) -> tuple[int, int, int]:
    """An exclusion in force whose customer is still active, one ended and cooled off, one
    ended but asked for reinstatement only an hour ago (rows written straight, as an import
    from another system would leave them before the daily pass)."""
    now = utcnow()
    starting = make_customer(session)
    cooled = make_customer(session, status=CustomerStatus.self_excluded)
    cooling = make_customer(session, status=CustomerStatus.self_excluded)
    ended, day = now - timedelta(days=2), timedelta(days=1)
    rows = [
        ("R-1", starting, now - timedelta(minutes=5), now + 180 * day, None),
        ("R-2", cooled, now - 200 * day, ended, now - timedelta(hours=25)),
        ("R-3", cooling, now - 200 * day, ended, now - timedelta(hours=1)),
    ]
    for ref, customer, start, end, asked in rows:
        session.add(
            SelfExclusion(
                source="own",
                reference=ref,
                customer_id=customer.id,
                starts_on=start,
                ends_on=end,
                reinstatement_requested_at=asked,
            )
        )
    session.commit()
    return starting.id, cooled.id, cooling.id  # type: ignore[return-value]


def _statuses(url: str, ids: tuple[int, ...]) -> list[str]:
    with Session(get_engine(url)) as s:
        return [s.get(Customer, i).status for i in ids]  # type: ignore[union-attr]


def test_the_daily_pass_applies_the_register(session, settings):
    from workers.pipeline import apply_exclusions_now

    ids = _register(session)
    assert apply_exclusions_now(settings=settings) == {"excluded": 1, "reinstated": 1}
    assert _statuses(settings.effective_database_url, ids) == [
        "self_excluded",
        "active",
        "self_excluded",
    ]
    assert apply_exclusions_now(settings=settings) == {"excluded": 0, "reinstated": 0}


@pytest.mark.broker
@pytest.mark.postgres
def test_the_scheduled_task_runs_on_a_real_worker(
    pg_url, shared_broker_url, worker_env, start_worker
):
    from workers.app import make_celery

    with Session(get_engine(pg_url)) as session:
        ids = _register(session)
    prefix = queue_prefix()
    start_worker(worker_env(database_url=pg_url, broker_url=shared_broker_url, prefix=prefix))
    entry = beat_schedule(PipelineConfig(queue_prefix=prefix))["self-exclusions"]
    sender = make_celery(shared_broker_url, config=PipelineConfig(queue_prefix=prefix))
    # what beat does when the entry is due: send the task by name to the entry's queue
    sender.send_task(entry["task"], **entry["options"])
    wait_for(
        lambda: _statuses(pg_url, ids) == ["self_excluded", "active", "self_excluded"],
        timeout=60,
        what="the worker to apply the register",
    )
