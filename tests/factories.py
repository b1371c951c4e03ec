"""Plain typed factories for test data, written straight to the database."""

from __future__ import annotations

import io
from itertools import count
from typing import Any

import numpy as np
from PIL import Image
from sqlmodel import Session

from store.access import SYSTEM
from store.bets import create_bet
from store.customers import create_customer, create_shop
from store.models import Bet, BetCreate, Customer, CustomerCreate, Shop, ShopCreate

_seq = count(1)


def make_shop(session: Session, **overrides: Any) -> Shop:
    n = next(_seq)
    data = {"code": f"S{n:03d}", "name": f"Shop {n}", "region": "North"} | overrides
    shop = create_shop(session=session, shop_in=ShopCreate(**data), actor=SYSTEM)
    session.commit()
    return shop


def make_customer(session: Session, **overrides: Any) -> Customer:
    n = next(_seq)
    data = {"external_ref": f"C{n:05d}", "name": f"Customer {n}"} | overrides
    customer = create_customer(session=session, customer_in=CustomerCreate(**data), actor=SYSTEM)
    session.commit()
    return customer


def make_bet(session: Session, **overrides: Any) -> Bet:
    data: dict[str, Any] = {
        "stake": 5.0,
        "legs": [{"sport": "Horse Racing", "event": "3.15 Ascot", "selection": "Golden Arrow",
                  "odds": 4.0}],
    } | overrides  # fmt: skip
    bet = create_bet(session=session, bet_in=BetCreate(**data), actor=SYSTEM)
    session.commit()
    return bet


def scan_bytes(*, seed: int = 0, size: tuple[int, int] = (300, 400), fmt: str = "PNG",
               mode: str = "L") -> bytes:  # fmt: skip
    """A small synthetic scan: light paper with a few dark strokes, distinct per seed."""
    rng = np.random.default_rng(seed)
    rows, cols = size
    img = np.full((rows, cols), 235, np.uint8)
    for _ in range(8):
        r, c = rng.integers(10, rows - 10), rng.integers(10, cols - 60)
        img[r : r + 3, c : c + 50] = rng.integers(10, 60)
    pil = Image.fromarray(img, mode="L").convert(mode)
    buf = io.BytesIO()
    pil.save(buf, format=fmt)
    return buf.getvalue()


def make_cluster(
    session: Session, slip_ids: list[int], *, model_version: str, confidence: float = 0.9
) -> int:
    """A writer cluster of these slips (what the clusterer would make), with its created
    event; returns its id."""
    from store.clustering import ClusterEvent, ClusterMember, WriterCluster

    cluster = WriterCluster(model_version=model_version, size=len(slip_ids))
    session.add(cluster)
    session.flush()
    for sid in slip_ids:
        session.add(ClusterMember(slip_id=sid, model_version=model_version,
                                  cluster_id=cluster.id, confidence=confidence))  # fmt: skip
    session.add(ClusterEvent(cluster_id=cluster.id, kind="created", detail={"slip_ids": slip_ids}))
    session.commit()
    return int(cluster.id)  # type: ignore[arg-type]
