"""The rules engine: findings from kinds -> severities from bands -> deduplicated alerts.

Per finding: the value is mapped through the rule's bands (no band, no alert); the rule's
scope is checked against the shops in the evidence; a finding resting on a handwriting link
below the engine's confidence floor drops one level and goes to the link-verification inbox;
a staff observation on the same pivot raises it one level (kind ``staff_observation``); an
open alert of the same rule, pivot and window collects the new evidence (its severity rises
when a higher band is crossed); a snoozed rule + pivot still counts, suppressed.

Entry points: `run_event_rules` (the pipeline, after a bet or a slip changes),
`run_screening` (daily), `backtest` (no writes), `apply_observation` (after a staff
observation is logged), `active_rules` (loaded, validated and versioned).
"""

from __future__ import annotations

import logging
import string
import threading
import time
from collections import Counter
from dataclasses import dataclass, field, replace
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

from sqlalchemy.exc import IntegrityError, SQLAlchemyError
from sqlmodel import Session, col, select

from rules import context
from rules.kinds import REGISTRY
from rules.loader import (
    BUILTIN_DIR,
    ENGINE_FILE,
    EngineSettings,
    content_hash,
    load_engine_settings,
    load_rules,
    rule_content,
    rule_files,
)
from rules.types import Band, Finding, Rule, Severity, Trigger
from store import audit
from store.alerts import (
    Alert,
    AlertStatus,
    RuleVersion,
    StaffObservation,
    active_snooze,
    add_event,
    deliver_after_commit,
)
from store.models import as_utc, utcnow

__all__ = [
    "BacktestResult",
    "Decision",
    "active_rules",
    "apply_observation",
    "backtest",
    "decide",
    "raise_system_alert",
    "record_milestone",
    "run_event_rules",
    "run_screening",
    "sync_versions",
]

log = logging.getLogger("sliplink.rules")
LINK_INBOX = "link_verification"

_cache_lock = threading.Lock()
_loaded: dict[tuple[str, ...], tuple[tuple[tuple[str, float, int], ...], list[Rule]]] = {}


# ---------------------------------------------------------------- rules and versions
def _signature(paths: tuple[str, ...]) -> tuple[tuple[str, float, int], ...]:
    files = rule_files(paths) + [
        p
        for p in (BUILTIN_DIR / ENGINE_FILE, *(Path(d) / ENGINE_FILE for d in paths))
        if p.is_file()
    ]
    return tuple((str(p), p.stat().st_mtime, p.stat().st_size) for p in files)


# how often the rule files are looked at again (stat) for changes
RECHECK_SECONDS = 1.0
_checked: dict[tuple[str, ...], float] = {}


def loaded_rules(paths: list[str] | None = None) -> list[Rule]:
    """`load_rules`, cached until a rule file changes (mtime or size; the files are looked
    at again at most every `RECHECK_SECONDS`)."""
    if paths is None:
        import os

        extra = os.environ.get("SLIPLINK_RULES_DIR")
        paths = [extra] if extra else []
    key = tuple(paths)
    with _cache_lock:
        cached = _loaded.get(key)
        if cached is not None and time.monotonic() - _checked.get(key, 0.0) < RECHECK_SECONDS:
            return cached[1]
    signature = _signature(key)
    with _cache_lock:
        _checked[key] = time.monotonic()
        if cached is not None and cached[0] == signature:
            return cached[1]
    rules = load_rules(list(key))
    with _cache_lock:
        _loaded[key] = (signature, rules)
    return rules


# the latest (version, content hash) per rule id as last read, per database, with the stamp of
# ``rule_versions`` it was read under (`rules.context.start`): while an engine run finds the
# same stamp the table has not changed and the read is skipped
_versions_read: dict[str, tuple[tuple[int, Any], dict[str, tuple[int, str]]]] = {}


def sync_versions(*, session: Session, rules: list[Rule]) -> list[Rule]:
    """Number each rule from ``rule_versions``: the content of its latest version keeps that
    number, any other content gets the next one (inserted here, inside the caller's
    transaction).  One query for all rules, none when the table is as last read."""
    stamp = session.info.get("rules_versions_stamp")
    where = str(session.get_bind().engine.url)
    cached = _versions_read.get(where)
    if stamp is not None and cached is not None and cached[0] == stamp:
        latest = dict(cached[1])
    else:
        latest = {}
        for rule_id, version, digest in session.exec(
            select(RuleVersion.rule_id, RuleVersion.version, RuleVersion.content_hash)
        ).all():
            if rule_id not in latest or version > latest[rule_id][0]:
                latest[rule_id] = (version, digest)
        if stamp is not None:
            with _cache_lock:
                _versions_read[where] = (stamp, dict(latest))
    out = []
    for rule in rules:
        digest = _digest(rule)
        found = latest.get(rule.id)
        if found is not None and found[1] == digest:
            version = found[0]
        else:
            version = _version_for(session, rule, digest)
            latest[rule.id] = (version, digest)
        out.append(rule if rule.version == version else _numbered(rule, version))
    return out


# loaded rules are cached objects: their digests and numbered copies are kept with them (the
# hash of a rule's content costs more than the rest of an event run's bookkeeping)
_digests: dict[int, tuple[Rule, str]] = {}
_numbered_rules: dict[tuple[int, int], tuple[Rule, Rule]] = {}


def _digest(rule: Rule) -> str:
    found = _digests.get(id(rule))
    if found is None or found[0] is not rule:
        if len(_digests) > 10_000:
            _digests.clear()
        found = _digests[id(rule)] = (rule, content_hash(rule))
    return found[1]


def _numbered(rule: Rule, version: int) -> Rule:
    found = _numbered_rules.get((id(rule), version))
    if found is None or found[0] is not rule:
        if len(_numbered_rules) > 10_000:
            _numbered_rules.clear()
        found = _numbered_rules[(id(rule), version)] = (rule, replace(rule, version=version))
    return found[1]


def _version_for(session: Session, rule: Rule, digest: str) -> int:
    for _ in range(3):
        latest = session.exec(
            select(RuleVersion)
            .where(RuleVersion.rule_id == rule.id)
            .order_by(col(RuleVersion.version).desc())
        ).first()
        if latest is not None and latest.content_hash == digest:
            return latest.version
        version = (latest.version if latest else 0) + 1
        row = RuleVersion(
            rule_id=rule.id,
            version=version,
            content_hash=digest,
            content=rule_content(rule),
            source=rule.source,
        )
        try:
            with session.begin_nested():
                session.add(row)
                session.flush()
        except IntegrityError:  # another process numbered it first: read again
            continue
        audit.record(
            session,
            actor="system",
            action="rule.version",
            entity="rule",
            entity_id=rule.id,
            after={"version": version, "hash": digest, "source": rule.source},
        )
        return version
    raise RuntimeError(f"could not number a version of rule {rule.id}")


def active_rules(*, session: Session, paths: list[str] | None = None) -> list[Rule]:
    """Every loaded rule (enabled or not) with its stored version."""
    return sync_versions(session=session, rules=loaded_rules(paths))


_settings_cache: dict[tuple[tuple[str, float, int], ...], EngineSettings] = {}
_last_settings: dict[tuple[str, ...], tuple[tuple[str, float, int], ...]] = {}


def engine_settings(paths: list[str] | None = None) -> EngineSettings:
    """``engine.yaml`` (builtin, overridden by one in ``SLIPLINK_RULES_DIR``), cached."""
    if paths is None:
        import os

        extra = os.environ.get("SLIPLINK_RULES_DIR")
        paths = [extra] if extra else []
    key = ("settings", *paths)
    with _cache_lock:  # look at the files again at most every RECHECK_SECONDS, as the rules
        recent = time.monotonic() - _checked.get(key, 0.0) < RECHECK_SECONDS
        signature = _last_settings.get(key)
    if not recent or signature is None:
        signature = _signature(tuple(paths))
        with _cache_lock:
            _checked[key], _last_settings[key] = time.monotonic(), signature
    found = _settings_cache.get(signature)
    if found is None:
        found = _settings_cache[signature] = load_engine_settings(paths)
    return found


# ---------------------------------------------------------------- deciding severities
@dataclass(frozen=True)
class Decision:
    """What the engine makes of one finding: severity, inbox and the reason text."""

    severity: Severity
    base_severity: Severity
    inbox: str
    reason: str
    adjustments: tuple[str, ...] = ()
    boost: str | None = None


class _Figures(string.Formatter):
    def get_value(self, key, args, kwargs):  # type: ignore[no-untyped-def]
        if isinstance(key, str) and key not in kwargs:
            return "{" + key + "}"
        return super().get_value(key, args, kwargs)

    def format_field(self, value, format_spec):  # type: ignore[no-untyped-def]
        if isinstance(value, float) and not format_spec:
            return f"{value:,.2f}".rstrip("0").rstrip(".") if value % 1 else f"{value:,.0f}"
        return super().format_field(value, format_spec)


def band_for(bands: tuple[Band, ...], value: float) -> Band | None:
    """The highest-severity band with ``lower <= value < upper``."""
    hits = [b for b in bands if value >= b.lower and (b.upper is None or value < b.upper)]
    return max(hits, key=lambda b: b.severity) if hits else None


def format_reason(template: str, finding: Finding) -> str:
    values: dict[str, Any] = dict(finding.figures)
    values["value"] = finding.value
    if finding.link_confidence is not None:
        values.setdefault("link_confidence", finding.link_confidence)
    try:
        return _Figures().vformat(template, (), values)
    except (ValueError, IndexError, KeyError):
        return template


def decide(
    rule: Rule, finding: Finding, *, settings: EngineSettings, boost: str | None = None
) -> Decision | None:
    """Map a finding through the rule's bands; None when it falls in no band."""
    band = band_for(rule.bands, finding.value)
    if band is None:
        return None
    severity = band.severity
    inbox = rule.inbox
    reason = format_reason(band.reason, finding)
    notes: list[str] = []
    conf = finding.link_confidence
    if conf is not None and conf < settings.link_confidence_floor:
        severity = Severity(max(1, severity - 1))
        inbox = LINK_INBOX
        notes.append(
            f"handwriting link confidence {conf:.2f} is below {settings.link_confidence_floor:.2f}:"
            " one level down, for link verification"
        )
    if boost:
        severity = Severity(min(4, severity + 1))
        notes.append(f"one level up: {boost}")
    if notes:
        reason = reason + " (" + "; ".join(notes) + ")"
    return Decision(severity, band.severity, inbox, reason, tuple(notes), boost)


# ---------------------------------------------------------------- evaluation
def _evaluate(session: Session, rule: Rule, trigger: Trigger) -> list[Finding]:
    kind = REGISTRY[rule.kind]
    try:
        findings = kind.evaluate(session=session, rule=rule, trigger=trigger)
    except SQLAlchemyError:
        raise
    except Exception:  # one broken kind must not silence the others (rule 1 above all)
        log.exception("rule %s (kind %s) failed on %s", rule.id, rule.kind, trigger)
        return []
    out = []
    for f in findings:
        if f.window_start is None and f.window_end is None and rule.window is not None:
            f.window_start, f.window_end = trigger.at - rule.window, trigger.at
        if rule.scope.kind != "all":
            shops = f.evidence.get("shops", [])
            if not context.shop_matches(
                session=session, shop_ids=shops, scope_kind=rule.scope.kind, value=rule.scope.value
            ):
                continue
        out.append(f)
    return out


def _boosters(rules: list[Rule]) -> list[tuple[Rule, Any]]:
    return [
        (r, REGISTRY[r.kind]) for r in rules if r.enabled and hasattr(REGISTRY[r.kind], "boost")
    ]


def _boost_for(
    session: Session, boosters: list[tuple[Rule, Any]], rule: Rule, finding: Finding, at: datetime
) -> str | None:
    for brule, kind in boosters:
        if brule.id == rule.id:
            continue
        text = kind.boost(
            session=session,
            rule=brule,
            pivot_kind=finding.pivot_kind,
            pivot_id=finding.pivot_id,
            at=at,
        )
        if text:
            return str(text)
    return None


def run_event_rules(
    *, session: Session, trigger: Trigger, now: datetime | None = None
) -> list[Alert]:
    """Evaluate every enabled rule whose kind reacts to ``trigger.kind``; store the alerts
    (new or updated) and return them.  Adds/flushes only: the caller commits."""
    now = as_utc(now) if now else utcnow()
    context.start(session, trigger.bet_id)
    rules = [r for r in active_rules(session=session) if r.enabled]
    changed = join_changes(session=session, trigger=trigger)
    if changed is not None:  # a join: the rules whose reads it changed (and those that say not)
        rules = [r for r in rules if _reads(r) is None or _reads(r) & changed]  # type: ignore[operator]
    return _run(session, rules, trigger, now, started=True)


def _reads(rule: Rule) -> frozenset[str] | None:
    """What a kind's findings on a join read (``join_reads``; None: not said, always run)."""
    return getattr(REGISTRY[rule.kind], "join_reads", None)


def join_changes(*, session: Session, trigger: Trigger) -> frozenset[str] | None:
    """What a slip joining a cluster that existed before (``Trigger.grown``) changed for the
    rules, None when unknown (other triggers, a re-cluster, a new cluster: every rule runs).

    Only the slip's membership changed, so: an anonymous bet's slip changes the cluster's
    ``"anonymous"`` bets; a customer's slip changes ``"accounts"`` (which customers the
    cluster holds, and the bets behind that customer) unless every other slip in the cluster
    is already that customer's, when it changes nothing a rule reads: the customer's bets
    and clusters are those the bet's ``bet_placed`` rules saw.  A kind's ``join_reads`` say
    which of the two its findings on a join depend on; a kind is left out of the run when
    the join changed neither."""
    if trigger.kind != "slip_clustered" or not trigger.grown:
        return None
    if trigger.bet_id is None or trigger.slip_id is None or trigger.cluster_id is None:
        return None
    bet = context.bet(session=session, bet_id=trigger.bet_id)
    if bet is None:
        return None
    if bet.customer_id is None:
        return frozenset({"anonymous"})
    own = context.only_customers_slips(
        session=session,
        cluster_id=trigger.cluster_id,
        slip_id=trigger.slip_id,
        customer_id=bet.customer_id,
    )
    return frozenset() if own else frozenset({"accounts"})


def run_screening(*, session: Session, now: datetime | None = None) -> list[Alert]:
    """The scheduled (daily) screening: every enabled rule whose kind reacts to
    ``"schedule"``, evaluated at ``now``."""
    now = as_utc(now) if now else utcnow()
    rules = [r for r in active_rules(session=session) if r.enabled]
    return _run(session, rules, Trigger(kind="schedule", at=now), now)


def _run(
    session: Session, rules: list[Rule], trigger: Trigger, now: datetime, started: bool = False
) -> list[Alert]:
    """Evaluate ``rules`` on ``trigger``; ``started``: `rules.context.start` has just run."""
    if not started:
        context.start(session, trigger.bet_id)
    if trigger.kind == "schedule":
        record_milestone(session=session, now=now)
    settings = engine_settings()
    boosters = _boosters(rules)
    rules = [r for r in rules if trigger.kind in REGISTRY[r.kind].triggers]
    if trigger.kind != "schedule":
        _set_event_horizon(session, rules, trigger)
    alerts: dict[int, Alert] = {}
    for rule in rules:
        for finding in _evaluate(session, rule, trigger):
            boost = _boost_for(session, boosters, rule, finding, trigger.at)
            decision = decide(rule, finding, settings=settings, boost=boost)
            if decision is None:
                continue
            alert = store_finding(
                session=session,
                rule=rule,
                finding=finding,
                decision=decision,
                now=now,
                settings=settings,
            )
            alerts[alert.id] = alert  # type: ignore[index]
    return list(alerts.values())


def lookback(rule: Rule) -> timedelta:
    """How much history before its trigger a rule reads: the kind's own answer (kinds with
    several windows in their params) or the rule's window."""
    kind = REGISTRY[rule.kind]
    if hasattr(kind, "lookback"):
        return kind.lookback(rule)  # type: ignore[no-any-return]
    return rule.window or timedelta(0)


def _set_event_horizon(session: Session, rules: list[Rule], trigger: Trigger) -> None:
    """The span of history the event rules read, from the longest look-back up to the trigger
    (and the trigger's bet): each pivot's bets are then read once for all rules."""
    span = max((lookback(r) for r in rules), default=timedelta(0))
    if span <= timedelta(0):
        return
    start = end = as_utc(trigger.at)
    pivot = None
    if trigger.bet_id is not None:
        bet = context.bet(session=session, bet_id=trigger.bet_id)
        if bet is not None:
            placed = as_utc(bet.placed_at)
            start, end = min(start, placed), max(end, placed)
            pivot = context.pivot_of_bet(session=session, bet_id=trigger.bet_id)
    context.set_horizon(session, start - span, end)
    if pivot is not None:  # read now, whichever rule asks first and for whatever window
        context.bet_rows_of_pivot(
            session=session, pivot_kind=pivot[0], pivot_id=pivot[1], since=start - span, until=end
        )


def _open_alert(session: Session, rule: Rule, finding: Finding) -> Alert | None:
    rows = session.exec(
        select(Alert)
        .where(
            Alert.rule_id == rule.id,
            Alert.pivot_kind == finding.pivot_kind,
            Alert.pivot_id == finding.pivot_id,
            Alert.status != AlertStatus.closed,
        )
        .order_by(col(Alert.id).desc())
    ).all()
    for alert in rows:
        # the same window: the open alert's window reaches the new finding's start
        if (
            alert.window_end is None
            or finding.window_start is None
            or as_utc(alert.window_end) >= as_utc(finding.window_start)
        ):
            return alert
    return None


def store_finding(
    *,
    session: Session,
    rule: Rule,
    finding: Finding,
    decision: Decision,
    now: datetime,
    settings: EngineSettings,
) -> Alert:
    """Create the alert, or add the finding to the open one of this rule + pivot + window."""
    snoozed = (
        active_snooze(
            session=session,
            rule_id=rule.id,
            pivot_kind=finding.pivot_kind,
            pivot_id=finding.pivot_id,
            at=now,
        )
        is not None
    )
    figures = _jsonable_figures(finding.figures)
    if decision.boost:
        figures["staff_observation"] = decision.boost
    alert = _open_alert(session, rule, finding)
    if alert is None:
        alert = Alert(
            rule_id=rule.id,
            rule_version=rule.version,
            kind=rule.kind,
            severity=int(decision.severity),
            base_severity=int(decision.base_severity),
            inbox=decision.inbox,
            pivot_kind=finding.pivot_kind,
            pivot_id=finding.pivot_id,
            reason=decision.reason[:2000],
            value=float(finding.value),
            figures=figures,
            evidence={k: sorted(set(v)) for k, v in finding.evidence.items()},
            link_confidence=finding.link_confidence,
            window_start=finding.window_start,
            window_end=finding.window_end,
            suppressed=snoozed,
            created_at=now,
            updated_at=now,
        )
        session.add(alert)
        session.flush()
        add_event(
            session,
            alert=alert,
            actor="system",
            action="raised",
            detail={
                "rule_version": rule.version,
                "severity": decision.severity.name,
                "value": finding.value,
                "figures": figures,
                "suppressed": snoozed,
            },
        )
        audit.record(
            session,
            actor="system",
            action="alert.raise",
            entity="alert",
            entity_id=alert.id,
            after={
                "rule_id": rule.id,
                "rule_version": rule.version,
                "severity": decision.severity.name,
                "pivot": f"{finding.pivot_kind}:{finding.pivot_id}",
                "suppressed": snoozed,
            },
        )
        _maybe_send(session, alert, settings)
        return alert
    merged = {
        k: sorted(set(alert.evidence.get(k, [])) | set(v))
        for k, v in {**alert.evidence, **finding.evidence}.items()
    }
    new_ids = {k: sorted(set(merged[k]) - set(alert.evidence.get(k, []))) for k in merged}
    new_ids = {k: v for k, v in new_ids.items() if v}
    changed = False
    if new_ids:
        alert.evidence = merged
        alert.hits += 1
        add_event(
            session,
            alert=alert,
            actor="system",
            action="evidence",
            detail={"added": new_ids, "value": finding.value, "figures": figures},
        )
        changed = True
    if finding.value >= alert.value or new_ids:
        alert.value, alert.figures = float(finding.value), figures
        if finding.link_confidence is not None:
            alert.link_confidence = finding.link_confidence
        changed = True
    if finding.window_end is not None and (
        alert.window_end is None or as_utc(finding.window_end) > as_utc(alert.window_end)
    ):
        alert.window_end = finding.window_end
    raised = int(decision.severity) > alert.severity
    if raised:
        add_event(
            session,
            alert=alert,
            actor="system",
            action="severity",
            detail={
                "from": alert.severity,
                "to": int(decision.severity),
                "reason": decision.reason,
            },
        )
        alert.severity = int(decision.severity)
        alert.base_severity = max(alert.base_severity, int(decision.base_severity))
        alert.inbox, alert.reason = decision.inbox, decision.reason[:2000]
        changed = True
    if alert.suppressed != snoozed:
        alert.suppressed = snoozed
        changed = True
    if changed:
        alert.updated_at = now
        session.add(alert)
        session.flush()
    if raised:
        _maybe_send(session, alert, settings)
    return alert


def _jsonable_figures(figures: dict[str, Any]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for k, v in figures.items():
        if isinstance(v, float):
            out[k] = round(v, 4)
        elif isinstance(v, int | str | bool) or v is None:
            out[k] = v
        else:
            out[k] = str(v)
    return out


def _maybe_send(session: Session, alert: Alert, settings: EngineSettings) -> None:
    """Queue webhook delivery for after the commit (never for suppressed alerts)."""
    deliver_after_commit(session, alert, min_severity=int(settings.webhook_min_severity))


def record_milestone(*, session: Session, now: datetime) -> None:
    """The daily milestone in the staff feed for the day before ``now`` (once per day)."""
    from store.alerts import Notification, daily_milestones

    day = (as_utc(now) - timedelta(days=1)).replace(hour=0, minute=0, second=0, microsecond=0)
    done = session.exec(
        select(Notification.id).where(
            Notification.kind == "milestone", Notification.entity_id == day.date().isoformat()
        )
    ).first()
    if done is None:
        daily_milestones(session=session, day=day)


def raise_system_alert(
    *,
    session: Session,
    kind: str,
    reason: str,
    figures: dict[str, Any],
    now: datetime | None = None,
) -> Alert:
    """An operational alert (e.g. the slip flow stopped): rule ``system.<kind>``, high, in the
    ``operations`` inbox; one open alert per kind collects repeats as hits."""
    now = as_utc(now) if now else utcnow()
    rule_id = f"system.{kind}"[:64]
    alert = session.exec(
        select(Alert).where(Alert.rule_id == rule_id, Alert.status != AlertStatus.closed)
    ).first()
    if alert is not None:
        alert.hits += 1
        alert.figures, alert.reason, alert.updated_at = _jsonable_figures(figures), reason, now
        session.add(alert)
        session.flush()
        return alert
    alert = Alert(
        rule_id=rule_id,
        rule_version=1,
        kind="system",
        severity=int(Severity.high),
        base_severity=int(Severity.high),
        inbox="operations",
        pivot_kind="system",
        pivot_id=0,
        reason=reason[:2000],
        value=1.0,
        figures=_jsonable_figures(figures),
        evidence={},
        created_at=now,
        updated_at=now,
    )
    session.add(alert)
    session.flush()
    add_event(session, alert=alert, actor="system", action="raised", detail={"reason": reason})
    audit.record(
        session,
        actor="system",
        action="alert.raise",
        entity="alert",
        entity_id=alert.id,
        after={"rule_id": rule_id, "reason": reason},
    )
    deliver_after_commit(session, alert)
    return alert


# ---------------------------------------------------------------- staff observations
def apply_observation(
    *, session: Session, observation: StaffObservation, now: datetime | None = None
) -> list[Alert]:
    """Raise open alerts on the observation's pivot by one level (kind ``staff_observation``:
    alerts raised within its window before the observation)."""
    now = as_utc(now) if now else utcnow()
    context.reset(session)
    rules = [r for r in active_rules(session=session) if r.enabled]
    raised: list[Alert] = []
    for rule, kind in _boosters(rules):
        if not kind.applies(rule, observation):
            continue
        pivots = kind.pivots_of_observation(session=session, observation=observation)
        since = as_utc(observation.at) - (rule.window or timedelta(days=30))
        for pivot_kind, pivot_id in pivots:
            rows = session.exec(
                select(Alert).where(
                    Alert.pivot_kind == pivot_kind,
                    Alert.pivot_id == pivot_id,
                    Alert.status != AlertStatus.closed,
                    Alert.rule_id != rule.id,
                    Alert.created_at >= since,
                )
            ).all()
            for alert in rows:
                if "staff_observation" in alert.figures:  # one level per alert, not per note
                    continue
                text = kind.describe(observation)
                before = alert.severity
                alert.severity = min(4, alert.severity + 1)
                alert.figures = {**alert.figures, "staff_observation": text}
                alert.reason = f"{alert.reason} (one level up: {text})"[:2000]
                alert.updated_at = now
                session.add(alert)
                add_event(
                    session,
                    alert=alert,
                    actor=observation.actor,
                    action="severity",
                    detail={
                        "from": before,
                        "to": alert.severity,
                        "rule": rule.id,
                        "observation_id": observation.id,
                        "reason": text,
                    },
                )
                raised.append(alert)
    session.flush()
    return raised


# ---------------------------------------------------------------- back-testing
def _odds_triggers(session: Session, start: datetime, end: datetime) -> list[Trigger]:
    """One ``odds_snapshot`` per selection (and event id) and time with stored prices in
    ``[start, end)``, as the odds feed would have sent them."""
    from sqlalchemy import func

    from store.trading import PriceSnapshot

    rows = session.exec(
        select(  # type: ignore[call-overload]
            PriceSnapshot.selection_key,
            PriceSnapshot.event_ref,
            PriceSnapshot.at,
            func.min(PriceSnapshot.selection),
        )
        .where(col(PriceSnapshot.at) >= start, col(PriceSnapshot.at) < end)
        .group_by(
            col(PriceSnapshot.selection_key), col(PriceSnapshot.event_ref), col(PriceSnapshot.at)
        )
        .order_by(col(PriceSnapshot.at), col(PriceSnapshot.selection_key))
    ).all()
    return [
        Trigger(kind="odds_snapshot", at=as_utc(at), selection=name, event_ref=ref)
        for _key, ref, at, name in rows
    ]


@dataclass
class BacktestResult:
    """What a rule would have raised over ``[start, end)``; nothing is written."""

    rule_id: str
    rule_version: int
    start: datetime
    end: datetime
    triggers: int = 0
    alerts: int = 0
    by_severity: dict[str, int] = field(default_factory=dict)
    by_inbox: dict[str, int] = field(default_factory=dict)
    pivots: list[dict[str, Any]] = field(default_factory=list)
    precision: float | None = None
    closed_cases: int = 0

    def to_json(self) -> dict[str, Any]:
        return {
            "rule_id": self.rule_id,
            "rule_version": self.rule_version,
            "start": self.start.isoformat(),
            "end": self.end.isoformat(),
            "triggers": self.triggers,
            "alerts": self.alerts,
            "by_severity": self.by_severity,
            "by_inbox": self.by_inbox,
            "pivots": self.pivots,
            "precision": self.precision,
            "closed_cases": self.closed_cases,
        }


def backtest(*, session: Session, rule: Rule, start: datetime, end: datetime) -> BacktestResult:
    """Replay stored history through one rule (or a draft of it) without raising alerts.

    Scheduled kinds run once per day at each midnight in ``(start, end]``; event kinds replay
    ``bet_placed`` / ``bet_settled`` / ``slip_clustered`` for every bet placed (settled) in the
    range, and ``odds_snapshot`` for every stored price time of a selection (and event).
    Findings are deduplicated per pivot and window as the engine would.  Cluster
    memberships are today's, not those at the time.
    """
    from store.alerts import rule_precision
    from store.models import Bet, Slip

    start, end = as_utc(start), as_utc(end)
    if end <= start:
        raise ValueError("end: must be after start")
    kind = REGISTRY[rule.kind]
    settings = engine_settings()
    context.reset(session)
    triggers: list[Trigger] = []
    if "schedule" in kind.triggers:
        day = start.replace(hour=0, minute=0, second=0, microsecond=0) + timedelta(days=1)
        while day <= end:
            triggers.append(Trigger(kind="schedule", at=day))
            day += timedelta(days=1)
    event_kinds = kind.triggers & {"bet_placed", "slip_clustered", "bet_settled"}
    if event_kinds and "schedule" not in kind.triggers:
        rows = session.exec(
            select(Bet.id, Bet.placed_at, Bet.customer_id, Bet.settled_at, Slip.id)  # type: ignore[call-overload]
            .outerjoin(Slip, col(Slip.bet_id) == col(Bet.id))
            .where(Bet.placed_at >= start, Bet.placed_at < end)
            .order_by(col(Bet.placed_at), col(Bet.id))
        ).all()
        for bet_id, placed, customer_id, settled, slip_id in rows:
            at = as_utc(placed)
            if "bet_placed" in event_kinds:
                triggers.append(
                    Trigger(kind="bet_placed", at=at, bet_id=bet_id, customer_id=customer_id)
                )
            if "slip_clustered" in event_kinds and slip_id is not None:
                found = context.membership(session=session, slip_id=slip_id)
                if found is not None:
                    triggers.append(
                        Trigger(
                            kind="slip_clustered",
                            at=at,
                            bet_id=bet_id,
                            slip_id=slip_id,
                            cluster_id=found[0],
                            customer_id=customer_id,
                        )
                    )
            if "bet_settled" in event_kinds and settled is not None and as_utc(settled) < end:
                triggers.append(
                    Trigger(
                        kind="bet_settled",
                        at=as_utc(settled),
                        bet_id=bet_id,
                        customer_id=customer_id,
                    )
                )
    if "odds_snapshot" in kind.triggers:
        triggers += _odds_triggers(session, start, end)
        triggers.sort(key=lambda t: t.at)
    result = BacktestResult(rule_id=rule.id, rule_version=rule.version, start=start, end=end)
    result.triggers = len(triggers)
    open_: dict[tuple[str, int], dict[str, Any]] = {}
    raised: list[dict[str, Any]] = []
    for trigger in triggers:
        context.reset(session)
        for finding in _evaluate(session, rule, trigger):
            decision = decide(rule, finding, settings=settings)
            if decision is None:
                continue
            key = (finding.pivot_kind, finding.pivot_id)
            current = open_.get(key)
            if current is not None and (
                current["window_end"] is None
                or finding.window_start is None
                or current["window_end"] >= finding.window_start
            ):
                current["severity"] = max(current["severity"], decision.severity)
                current["window_end"] = finding.window_end
                current["hits"] += 1
                continue
            entry = {
                "pivot_kind": finding.pivot_kind,
                "pivot_id": finding.pivot_id,
                "first_at": trigger.at,
                "severity": decision.severity,
                "inbox": decision.inbox,
                "value": finding.value,
                "window_end": finding.window_end,
                "hits": 1,
            }
            open_[key] = entry
            raised.append(entry)
    result.alerts = len(raised)
    result.by_severity = dict(Counter(Severity(e["severity"]).name for e in raised))
    result.by_inbox = dict(Counter(e["inbox"] for e in raised))
    result.pivots = [
        {
            "pivot_kind": e["pivot_kind"],
            "pivot_id": e["pivot_id"],
            "first_at": e["first_at"].isoformat(),
            "severity": Severity(e["severity"]).name,
            "inbox": e["inbox"],
            "value": e["value"],
            "hits": e["hits"],
        }
        for e in raised
    ]
    stats = rule_precision(session=session).get(rule.id)
    if stats:
        result.precision, result.closed_cases = stats["precision"], stats["closed"]
    return result
