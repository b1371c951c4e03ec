from __future__ import annotations

from datetime import date, timedelta

from fastapi import APIRouter, Query, Response

from api.deps import AnalystUser, SessionDep
from store import reports
from store.bets import bet_public
from store.models import utcnow
from store.settle import profit_and_loss

router = APIRouter(prefix="/reports", tags=["reports"])


def _today() -> date:
    return utcnow().date()


_FORMAT = Query("json", pattern="^(json|csv)$")


@router.get("/daily", response_model=None)
def daily(
    session: SessionDep, _actor: AnalystUser, day: date | None = None, format: str = _FORMAT
) -> Response | dict[str, object]:
    """A day's activity: bets, stakes, returns, hold %, top customers and clusters, alerts;
    as JSON, or CSV (``section,key,value``)."""
    report = reports.daily_activity(session=session, day=day or _today())
    if format == "csv":
        return Response(reports.daily_csv(report), media_type="text/csv")
    return report


@router.get("/staff", response_model=None)
def staff(
    session: SessionDep, _actor: AnalystUser, day: date | None = None, format: str = _FORMAT
) -> Response | list[dict[str, object]]:
    """Who reviewed and changed what on a day (from the audit log), as JSON or CSV."""
    rows = reports.staff_activity(session=session, day=day or _today())
    if format == "csv":
        return Response(reports.staff_csv(rows), media_type="text/csv")
    return rows


@router.get("/bets", response_model=None)
def bets(
    session: SessionDep,
    _actor: AnalystUser,
    day: date | None = None,
    format: str = Query("json", pattern="^(json|csv)$"),
) -> Response | list[dict[str, object]]:
    """The bets of any of the last 30 days, as JSON or CSV."""
    rows = reports.bets_of_day(session=session, day=day or _today())
    if format == "csv":
        return Response(reports.bets_csv(rows), media_type="text/csv")
    return [bet_public(session=session, bet=b).model_dump(mode="json") for b in rows]


@router.get("/pnl")
def pnl(
    session: SessionDep,
    _actor: AnalystUser,
    by: str = Query("day", pattern="^(customer|cluster|shop|day)$"),
    days: int = Query(30, ge=1, le=400),
) -> list[dict[str, object]]:
    """Operator profit and loss of settled bets by customer, handwriting cluster, shop or day."""
    end = utcnow() + timedelta(seconds=1)
    return profit_and_loss(session=session, by=by, start=end - timedelta(days=days), end=end)
