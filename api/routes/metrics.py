"""Prometheus ``/metrics``: slips by status, bets awaiting rules, queue depth, task durations,
pipeline lag."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import timedelta

import numpy as np
from fastapi import APIRouter, Request, Response
from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, generate_latest
from prometheus_client.core import GaugeMetricFamily, Metric
from sqlalchemy import func
from sqlmodel import Session, col, select

from store.clustering import ClusterMember
from store.models import Bet, Slip, SlipStatus, as_utc, utcnow

router = APIRouter(tags=["health"])

_LATENCY_WINDOW = timedelta(minutes=15)


class _PipelineCollector:
    """Gauges computed from the database (and the pipeline) at scrape time, so they hold for
    any number of worker machines."""

    def __init__(self, request: Request) -> None:
        self.request = request

    def collect(self) -> Iterator[Metric]:
        from workers.pipeline import flow_status

        app = self.request.app
        with Session(app.state.engine) as s:
            by_status = dict(s.exec(select(Slip.status, func.count()).group_by(Slip.status)).all())
            flow = flow_status(session=s)
            # the partial index ix_bets_rules_pending_since holds exactly these rows
            awaiting_rules = s.exec(
                select(func.count()).where(col(Bet.rules_pending_since).is_not(None))
            ).one()
            since = utcnow() - _LATENCY_WINDOW
            rows = s.exec(
                select(Slip.uploaded_at, func.min(ClusterMember.joined_at))
                .join(ClusterMember, col(ClusterMember.slip_id) == col(Slip.id))
                .where(col(Slip.uploaded_at) >= since)
                .group_by(col(Slip.id), col(Slip.uploaded_at))
            ).all()
        g = GaugeMetricFamily("sliplink_slips", "Slips by processing status", labels=["status"])
        for status in SlipStatus:
            g.add_metric([status.value], float(by_status.get(status, 0)))
        yield g
        yield GaugeMetricFamily(
            "sliplink_oldest_pending_slip_age_seconds",
            "Age of the oldest slip not yet processed (pending or processing)",
            value=float(flow["oldest_pending_age_s"] or 0.0),
        )
        yield GaugeMetricFamily(
            "sliplink_bets_awaiting_rules",
            "Bets whose bet_placed rules have not run yet (in flight, or lost and left to the "
            "sweeper)",
            value=float(awaiting_rules),
        )
        if flow["since_last_upload_s"] is not None:
            yield GaugeMetricFamily(
                "sliplink_seconds_since_last_upload",
                "Seconds since the last slip upload",
                value=float(flow["since_last_upload_s"]),
            )
        lat = GaugeMetricFamily(
            "sliplink_upload_to_cluster_seconds",
            "Upload-to-assignment latency of slips uploaded in the last 15 minutes",
            labels=["quantile"],
        )
        waits = [(as_utc(j) - as_utc(u)).total_seconds() for u, j in rows if j is not None]
        if waits:
            for q in (0.5, 0.95, 0.99):
                lat.add_metric([str(q)], float(np.quantile(waits, q)))
        yield lat
        pipeline = getattr(app.state, "pipeline", None)
        depth = GaugeMetricFamily(
            "sliplink_queue_depth", "Tasks waiting per queue", labels=["queue"]
        )
        if pipeline is not None and hasattr(pipeline, "queue_depths"):
            for queue, n in pipeline.queue_depths().items():
                depth.add_metric([queue], float(n))
        yield depth


@router.get("/metrics", response_class=Response, include_in_schema=False)
def metrics(request: Request) -> Response:
    from workers.metrics import REGISTRY as TASKS

    registry = CollectorRegistry(auto_describe=False)
    registry.register(_PipelineCollector(request))  # type: ignore[arg-type]
    body = generate_latest(registry) + generate_latest(TASKS)
    return Response(body, media_type=CONTENT_TYPE_LATEST)
