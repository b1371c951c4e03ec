"""Personal data kept from the ``ml`` role: every JSON answer to it is masked on the way out.

Model work needs bets, slips, clusters and pseudonymous ids, never who the customer is.  The
masking sits in one middleware rather than in each route so a route added later is covered
too: ``api.permissions.admit`` marks the request, and every ``application/json`` body of a
marked request has its personal fields replaced before it leaves the process.  Web pages do
the same with ``customer_label`` (``customer #id``), and customer pages are closed to ml.
"""

from __future__ import annotations

import json
from typing import Any

from starlette.types import ASGIApp, Message, Receive, Scope, Send

REDACTED = "[redacted]"

# Keys that name or identify a person wherever they appear: customers (name, account ref,
# contact details) and staff (who uploaded, decided or wrote a note).
PERSONAL_KEYS = frozenset(
    {
        "customer_name", "customer_ref", "external_ref", "display_name", "username",
        "email", "phone", "address", "postcode", "date_of_birth", "dob",
        "uploaded_by", "actor", "assignee", "assigned_to", "author", "created_by",
        "reviewed_by", "decided_by", "note", "notes",
    }
)  # fmt: skip
# "name" is a shop's or an event's name in most objects; it is personal in a customer's
CUSTOMER_KEYS = frozenset({"customer", "customers"})


def redact(value: Any, *, in_customer: bool = False) -> Any:
    """A copy of a decoded JSON value with personal fields replaced."""
    if isinstance(value, list):
        return [redact(item, in_customer=in_customer) for item in value]
    if not isinstance(value, dict):
        return value
    customer = in_customer or "external_ref" in value
    out: dict[str, Any] = {}
    for key, item in value.items():
        if key in PERSONAL_KEYS or (customer and key == "name"):
            out[key] = _blank(item)
        else:
            out[key] = redact(item, in_customer=key in CUSTOMER_KEYS)
    return out


def _blank(item: Any) -> Any:
    if item is None:
        return None
    return REDACTED if isinstance(item, str) else None


def _is_json(message: Message) -> bool:
    for name, value in message.get("headers", []):
        if name.lower() == b"content-type":
            media = value.split(b";")[0].strip().lower()
            return media == b"application/json" or media.endswith(b"+json")
    return False


class MaskPersonalData:
    """ASGI middleware: JSON bodies of requests marked ``state.mask_personal`` are masked."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        # shared with request.state, which api.permissions.admit writes during routing
        state = scope.setdefault("state", {})
        held: Message | None = None
        chunks: list[bytes] = []

        async def masked_send(message: Message) -> None:
            nonlocal held
            if message["type"] == "http.response.start":
                if state.get("mask_personal") and _is_json(message):
                    held = message  # sent once the whole body is known and masked
                    return
            elif held is not None and message["type"] == "http.response.body":
                chunks.append(message.get("body", b""))
                if message.get("more_body", False):
                    return
                body = _masked_body(b"".join(chunks))
                headers = [(k, v) for k, v in held["headers"] if k.lower() != b"content-length"]
                headers.append((b"content-length", str(len(body)).encode()))
                await send({**held, "headers": headers})
                await send({"type": "http.response.body", "body": body})
                return
            await send(message)

        await self.app(scope, receive, masked_send)


def _masked_body(body: bytes) -> bytes:
    if not body:
        return body
    try:
        decoded = json.loads(body)
    except ValueError:
        # not JSON after all: nothing in it can be masked field by field, so send nothing
        return json.dumps({"detail": "response withheld: it could not be checked"}).encode()
    return json.dumps(redact(decoded), separators=(",", ":")).encode()
