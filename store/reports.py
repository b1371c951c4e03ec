"""Reports: a day's activity, staff activity, and the bets of a day."""

from __future__ import annotations

import csv
import io
from datetime import date, datetime, time, timedelta

from sqlalchemy import case, func
from sqlalchemy import select as sa_select
from sqlmodel import Session, col, select

from store.alerts import Alert
from store.clustering import ClusterMember
from store.errors import Invalid
from store.models import AuditEntry, Bet, BetStatus, Customer, Slip, utcnow

BETS_DAYS_KEPT_FOR_REPORTS = 30


def day_bounds(day: date) -> tuple[datetime, datetime]:
    start = datetime.combine(day, time.min).replace(tzinfo=utcnow().tzinfo)
    return start, start + timedelta(days=1)


def daily_activity(*, session: Session, day: date, top: int = 5) -> dict[str, object]:
    """Bets, stakes, returns, hold %, customers, shops, top customers and clusters, alerts by
    rule for one day (UTC)."""
    start, end = day_bounds(day)
    in_day = (col(Bet.placed_at) >= start, col(Bet.placed_at) < end)
    n, stakes, customers, shops, anonymous = session.execute(
        sa_select(
            func.count(),
            func.coalesce(func.sum(Bet.total_stake), 0),
            func.count(func.distinct(Bet.customer_id)),
            func.count(func.distinct(Bet.shop_id)),
            func.coalesce(func.sum(case((col(Bet.customer_id).is_(None), 1), else_=0)), 0),
        ).where(*in_day)
    ).one()
    settled_stakes, returns = session.exec(
        select(
            func.coalesce(func.sum(Bet.total_stake), 0), func.coalesce(func.sum(Bet.returns), 0)
        ).where(*in_day, Bet.status != BetStatus.open)
    ).one()
    settled_stakes, returns = float(settled_stakes or 0), float(returns or 0)
    top_customers = session.exec(
        select(Customer.id, Customer.external_ref, func.sum(Bet.total_stake).label("stake"))
        .join(Bet, Bet.customer_id == Customer.id)  # type: ignore[arg-type]
        .where(*in_day)
        .group_by(col(Customer.id), col(Customer.external_ref))
        .order_by(func.sum(Bet.total_stake).desc())
        .limit(top)
    ).all()
    top_clusters = session.exec(
        select(ClusterMember.cluster_id, func.count(), func.sum(Bet.total_stake))
        .join(Slip, Slip.id == ClusterMember.slip_id)  # type: ignore[arg-type]
        .join(Bet, Bet.id == Slip.bet_id)  # type: ignore[arg-type]
        .where(*in_day)
        .group_by(col(ClusterMember.cluster_id))
        .order_by(func.sum(Bet.total_stake).desc())
        .limit(top)
    ).all()
    alerts = session.exec(
        select(Alert.rule_id, func.count())
        .where(Alert.created_at >= start, Alert.created_at < end)
        .group_by(Alert.rule_id)
        .order_by(col(Alert.rule_id))
    ).all()
    hold = (settled_stakes - returns) / settled_stakes * 100 if settled_stakes else None
    return {
        "date": day.isoformat(),
        "bets": n,
        "stakes": round(float(stakes), 2),
        "settled_stakes": round(settled_stakes, 2),
        "returns": round(returns, 2),
        "hold_percent": None if hold is None else round(hold, 2),
        "customers": customers,
        "anonymous_bets": int(anonymous),
        "shops": shops,
        "top_customers": [
            {"customer_id": i, "external_ref": r, "stake": round(float(s), 2)}
            for i, r, s in top_customers
        ],
        "top_clusters": [
            {"cluster_id": c, "bets": k, "stake": round(float(s), 2)} for c, k, s in top_clusters
        ],
        "alerts_by_rule": {rule: k for rule, k in alerts},
    }


def staff_activity(*, session: Session, day: date) -> list[dict[str, object]]:
    """Who did what: audit entries of the day counted by person and action."""
    start, end = day_bounds(day)
    rows = session.exec(
        select(AuditEntry.actor, AuditEntry.action, func.count())
        .where(AuditEntry.at >= start, AuditEntry.at < end, AuditEntry.actor != "system")
        .group_by(AuditEntry.actor, AuditEntry.action)
        .order_by(col(AuditEntry.actor), col(AuditEntry.action))
    ).all()
    return [{"actor": a, "action": act, "count": k} for a, act, k in rows]


def bets_of_day(*, session: Session, day: date) -> list[Bet]:
    if day < (utcnow() - timedelta(days=BETS_DAYS_KEPT_FOR_REPORTS)).date():
        raise Invalid(f"date: only the last {BETS_DAYS_KEPT_FOR_REPORTS} days are reported")
    start, end = day_bounds(day)
    return list(
        session.exec(
            select(Bet)
            .where(Bet.placed_at >= start, Bet.placed_at < end)
            .order_by(col(Bet.placed_at), col(Bet.id))
        ).all()
    )


BET_CSV_COLUMNS = [
    "id",
    "placed_at",
    "shop_id",
    "customer_id",
    "bet_type",
    "each_way",
    "stake",
    "total_stake",
    "odds",
    "status",
    "returns",
    "sport",
    "description",
]


def bets_csv(bets: list[Bet]) -> str:
    out = io.StringIO()
    writer = csv.writer(out)
    writer.writerow(BET_CSV_COLUMNS)
    for bet in bets:
        writer.writerow(
            ["" if getattr(bet, c) is None else getattr(bet, c) for c in BET_CSV_COLUMNS]
        )
    return out.getvalue()


def _csv(header: list[str], rows: list[list[object]]) -> str:
    out = io.StringIO()
    writer = csv.writer(out)
    writer.writerow(header)
    writer.writerows(["" if v is None else v for v in row] for row in rows)
    return out.getvalue()


def daily_csv(report: dict[str, object]) -> str:
    """``daily_activity`` as one long table (``section,key,value``) that a spreadsheet or
    another system loads without knowing the nesting."""
    rows: list[list[object]] = [
        ["totals", k, v] for k, v in report.items() if not isinstance(v, list | dict)
    ]
    for c in report["top_customers"]:  # type: ignore[attr-defined]
        rows.append(["top_customer_stake", c["external_ref"], c["stake"]])
    for c in report["top_clusters"]:  # type: ignore[attr-defined]
        rows.append(["top_cluster_stake", c["cluster_id"], c["stake"]])
    for rule, n in report["alerts_by_rule"].items():  # type: ignore[attr-defined]
        rows.append(["alerts_by_rule", rule, n])
    return _csv(["section", "key", "value"], rows)


def staff_csv(rows: list[dict[str, object]]) -> str:
    return _csv(["actor", "action", "count"], [[r["actor"], r["action"], r["count"]] for r in rows])
