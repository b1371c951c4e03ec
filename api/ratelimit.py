"""Per-client rate limits (login, uploads): a sliding window kept in process memory.

Each API process counts on its own, so N server processes allow up to N times the limit:
enough to stop a script hammering one till or guessing passwords; a shared store (Redis)
is the next step when the API runs on many machines.
"""

from __future__ import annotations

import threading
import time
from collections import defaultdict, deque

from fastapi import Request

from store.errors import DomainError


class TooManyRequests(DomainError):
    status_code = 429


class SlidingWindow:
    def __init__(self, *, limit: int, seconds: float) -> None:
        if limit < 1 or seconds <= 0:
            raise ValueError("limit must be >= 1 and seconds > 0")
        self.limit, self.seconds = limit, seconds
        self._hits: dict[str, deque[float]] = defaultdict(deque)
        self._lock = threading.Lock()

    def hit(self, key: str, *, now: float | None = None) -> float | None:
        """Count one request for ``key``; returns None when allowed, else seconds to wait."""
        now = time.monotonic() if now is None else now
        with self._lock:
            hits = self._hits[key]
            while hits and hits[0] <= now - self.seconds:
                hits.popleft()
            if len(hits) >= self.limit:
                return hits[0] + self.seconds - now
            hits.append(now)
            if len(self._hits) > 100_000:  # forget idle clients rather than grow without bound
                for stale in [k for k, v in self._hits.items() if not v]:
                    del self._hits[stale]
            return None


def client_key(request: Request) -> str:
    """The caller: its API key prefix when it sent one, else its address."""
    key = request.headers.get("x-api-key") or request.headers.get("authorization", "")[7:]
    if key:
        return "key:" + key[:16]
    return "ip:" + (request.client.host if request.client else "unknown")


def enforce(window: SlidingWindow, request: Request, *, what: str) -> None:
    wait = window.hit(client_key(request))
    if wait is not None:
        raise TooManyRequests(
            f"too many {what}: at most {window.limit} per {window.seconds:g} s; "
            f"try again in {max(wait, 0.1):.1f} s"
        )
