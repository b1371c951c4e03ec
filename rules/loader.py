"""Rule files: YAML in, validated `Rule` objects out.

A rule file holds one rule (a mapping) or several (``rules: [...]``)::

    id: unidentified_due_diligence        # [a-z0-9_.-], unique across all files
    kind: unidentified_over_threshold     # a module in rules/kinds/
    description: Unidentified customer over the due-diligence threshold
    enabled: true                          # default true
    window: 24h                            # s, m, h, d, w units (e.g. 1d12h); null = none
    scope: {kind: all}                     # all | region (value: region name) | shop (value: code)
    inbox: compliance                      # compliance|safer_gambling|trading|link_verification
    params: {threshold_gbp: 1700}          # keys among the kind's defaults; types checked
    bands:                                 # lower <= value < upper; upper null = unbounded
      - {lower: 1.0, upper: 2.0, severity: high, reason: "... {value} ... {threshold_gbp}"}
      - {lower: 2.0, upper: null, severity: critical, reason: "..."}

``version`` is never written in the file: the store numbers versions (`sync_versions`), a new
one for every change of a rule's content. ``engine.yaml`` in a rules directory holds the
engine's settings (`EngineSettings`), not rules. Every error names the file, rule and field.
"""

from __future__ import annotations

import hashlib
import json
import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from datetime import timedelta
from pathlib import Path
from typing import Any

import yaml

from rules.types import Band, Rule, Scope, Severity

BUILTIN_DIR = Path(__file__).resolve().parent / "builtin"
ENGINE_FILE = "engine.yaml"
INBOXES = ("compliance", "safer_gambling", "trading", "link_verification")
SCOPES = ("all", "region", "shop")
RULE_KEYS = {"id", "kind", "description", "enabled", "window", "scope", "inbox", "params", "bands"}
_ID = re.compile(r"^[a-z0-9][a-z0-9_.-]{0,63}$")
_DURATION = re.compile(r"(\d+(?:\.\d+)?)\s*([smhdw])")
_UNITS = {"s": 1, "m": 60, "h": 3600, "d": 86400, "w": 604800}


class RuleFileError(ValueError):
    """A rule file failed validation; the message names the file, the rule and the field."""

    def __init__(self, source: str, rule_id: str | None, field: str | None, problem: str) -> None:
        self.source, self.rule_id, self.field, self.problem = source, rule_id, field, problem
        where = source
        if rule_id is not None:
            where += f": rule {rule_id!r}"
        if field is not None:
            where += f": {field}"
        super().__init__(f"{where}: {problem}")


@dataclass(frozen=True)
class EngineSettings:
    """Engine-wide settings (``engine.yaml``).

    ``link_confidence_floor``: a finding resting on a handwriting link below this confidence
    drops one severity level and goes to the link-verification inbox.
    ``webhook_min_severity``: alerts at or above it are sent to webhooks.
    """

    link_confidence_floor: float = 0.9
    webhook_min_severity: Severity = Severity.high


def parse_duration(text: object) -> timedelta:
    """``"24h"``, ``"1d12h"``, ``"30d"``, ``"90m"`` or a number of seconds -> timedelta."""
    if isinstance(text, bool):
        raise ValueError("expected a duration such as 24h or 30d")
    if isinstance(text, int | float):
        seconds = float(text)
    elif isinstance(text, str):
        compact = text.strip().lower().replace(" ", "")
        parts = _DURATION.findall(compact)
        if not parts or "".join(n + u for n, u in parts) != compact:
            raise ValueError(f"{text!r} is not a duration such as 24h, 72h or 30d")
        seconds = sum(float(n) * _UNITS[u] for n, u in parts)
    else:
        raise ValueError("expected a duration such as 24h or 30d")
    if seconds <= 0:
        raise ValueError("a duration must be positive")
    return timedelta(seconds=seconds)


def format_duration(value: timedelta | None) -> str | None:
    if value is None:
        return None
    seconds = int(value.total_seconds())
    for unit, size in (("w", 604800), ("d", 86400), ("h", 3600), ("m", 60)):
        if seconds % size == 0:
            return f"{seconds // size}{unit}"
    return f"{seconds}s"


def rule_content(rule: Rule) -> dict[str, Any]:
    """The rule as plain data (everything but version and source): what a version covers."""
    return {
        "id": rule.id,
        "kind": rule.kind,
        "description": rule.description,
        "enabled": rule.enabled,
        "window": format_duration(rule.window),
        "scope": {"kind": rule.scope.kind, "value": rule.scope.value},
        "inbox": rule.inbox,
        "params": _plain(rule.params),
        "bands": [
            {"lower": b.lower, "upper": b.upper, "severity": b.severity.name, "reason": b.reason}
            for b in rule.bands
        ],
    }


def content_hash(rule: Rule) -> str:
    text = json.dumps(rule_content(rule), sort_keys=True, separators=(",", ":"))
    return hashlib.sha256(text.encode()).hexdigest()


def _plain(value: Any) -> Any:
    if isinstance(value, Mapping):
        return {str(k): _plain(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_plain(v) for v in value]
    return value


def rule_files(paths: Iterable[str | Path] | None = None) -> list[Path]:
    """The builtin rule files, then those of ``paths`` (files or directories), sorted by name."""
    found: list[Path] = []
    for entry in [BUILTIN_DIR, *(Path(p) for p in (paths or ()))]:
        if entry.is_dir():
            found.extend(
                p
                for p in sorted(entry.iterdir())
                if p.suffix in (".yaml", ".yml") and p.name != ENGINE_FILE
            )
        elif entry.is_file():
            found.append(entry)
        else:
            raise RuleFileError(str(entry), None, None, "no such file or directory")
    return found


def load_rules(paths: Iterable[str | Path] | None = None) -> list[Rule]:
    """Load and validate the builtin rules plus those in ``paths`` (files or directories).

    ``paths=None`` adds the directory of ``SLIPLINK_RULES_DIR`` when that is set. Versions are
    1 here; `rules.engine.active_rules` numbers them from the store.

    Raises
    ------
    RuleFileError
        Naming the file, the rule id and the field of the first problem found.
    """
    if paths is None:
        import os

        extra = os.environ.get("SLIPLINK_RULES_DIR")
        paths = [extra] if extra else []
    rules: list[Rule] = []
    seen: dict[str, str] = {}
    for path in rule_files(paths):
        for rule in load_file(path):
            if rule.id in seen:
                raise RuleFileError(str(path), rule.id, "id", f"already defined in {seen[rule.id]}")
            seen[rule.id] = str(path)
            rules.append(rule)
    return rules


def load_file(path: str | Path) -> list[Rule]:
    """Parse one rule file (one rule, or ``rules: [...]``)."""
    source = str(path)
    try:
        data = yaml.safe_load(Path(path).read_text(encoding="utf-8"))
    except OSError as exc:
        raise RuleFileError(source, None, None, f"cannot read: {exc.strerror}") from None
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        at = f" at line {mark.line + 1}" if mark is not None else ""
        raise RuleFileError(source, None, None, f"not valid YAML{at}") from None
    if isinstance(data, Mapping) and set(data) == {"rules"}:
        data = data["rules"]
    items = data if isinstance(data, list) else [data]
    if not items or not all(isinstance(item, Mapping) for item in items):
        raise RuleFileError(source, None, None, "expected a rule mapping or 'rules: [...]'")
    return [parse_rule(item, source=source) for item in items]


def parse_rule(data: Mapping[str, Any], *, source: str = "<memory>", version: int = 1) -> Rule:
    """Validate one rule mapping; errors name ``source``, the rule id and the field."""
    from rules.kinds import REGISTRY

    raw_id = data.get("id")
    if not isinstance(raw_id, str) or not _ID.match(raw_id):
        raise RuleFileError(source, None, "id", "required: lower-case letters, digits, _ . -")
    rid = raw_id

    def fail(field: str, problem: str) -> RuleFileError:
        return RuleFileError(source, rid, field, problem)

    unknown = sorted(set(map(str, data)) - RULE_KEYS)
    if unknown:
        raise fail(unknown[0], f"unknown field (known: {', '.join(sorted(RULE_KEYS))})")
    kind_name = data.get("kind")
    if kind_name not in REGISTRY:
        raise fail("kind", f"unknown kind {kind_name!r} (known: {', '.join(sorted(REGISTRY))})")
    kind = REGISTRY[kind_name]
    description = data.get("description", "")
    if not isinstance(description, str):
        raise fail("description", "must be text")
    enabled = data.get("enabled", True)
    if not isinstance(enabled, bool):
        raise fail("enabled", "must be true or false")
    window = None
    if data.get("window") is not None:
        try:
            window = parse_duration(data["window"])
        except ValueError as exc:
            raise fail("window", str(exc)) from None
    inbox = data.get("inbox")
    if inbox not in INBOXES:
        raise fail("inbox", f"must be one of {', '.join(INBOXES)}")
    scope = _parse_scope(data.get("scope", {"kind": "all"}), fail)
    params = _parse_params(data.get("params") or {}, kind.defaults, fail)
    check = getattr(kind, "check_params", None)  # a kind's own rule among its parameters
    problem = check(params) if check is not None else None
    if problem is not None:
        raise fail(f"params.{problem[0]}", problem[1])
    bands = _parse_bands(data.get("bands"), fail)
    return Rule(
        id=rid,
        version=version,
        kind=kind_name,
        description=description,
        params=params,
        window=window,
        bands=bands,
        scope=scope,
        inbox=inbox,
        enabled=enabled,
        source=source,
    )


def _parse_scope(raw: Any, fail: Any) -> Scope:
    if isinstance(raw, str):
        raw = {"kind": raw}
    if not isinstance(raw, Mapping):
        raise fail("scope", "expected {kind: all|region|shop, value: ...}")
    extra = sorted(set(raw) - {"kind", "value"})
    if extra:
        raise fail(f"scope.{extra[0]}", "unknown field (known: kind, value)")
    kind = raw.get("kind", "all")
    if kind not in SCOPES:
        raise fail("scope.kind", f"must be one of {', '.join(SCOPES)}")
    value = raw.get("value")
    if kind == "all":
        if value is not None:
            raise fail("scope.value", "must be empty when scope.kind is all")
        return Scope()
    if not isinstance(value, str) or not value:
        raise fail("scope.value", f"a {kind} scope needs a value (the {kind})")
    return Scope(kind=kind, value=value)


def _same_type(default: Any, value: Any) -> bool:
    if isinstance(default, bool) or isinstance(value, bool):
        return isinstance(default, bool) and isinstance(value, bool)
    if isinstance(default, int | float):
        return isinstance(value, int | float)
    if isinstance(default, Mapping):
        return isinstance(value, Mapping)
    if isinstance(default, list | tuple):
        return isinstance(value, list | tuple)
    if default is None:  # an optional number (unset: the kind decides)
        return value is None or isinstance(value, int | float)
    return isinstance(value, type(default))


def _parse_params(raw: Any, defaults: Mapping[str, Any], fail: Any) -> dict[str, Any]:
    if not isinstance(raw, Mapping):
        raise fail("params", "expected a mapping of parameter names to values")
    params = dict(_plain(defaults))
    for key, value in raw.items():
        if key not in defaults:
            raise fail(f"params.{key}", f"unknown parameter (known: {', '.join(sorted(defaults))})")
        if not _same_type(defaults[key], value):
            raise fail(f"params.{key}", f"expected {type(defaults[key]).__name__}, got {value!r}")
        if isinstance(value, int | float) and not isinstance(value, bool) and value != value:
            raise fail(f"params.{key}", "must be a number")
        params[key] = _plain(value)
    return params


def _parse_bands(raw: Any, fail: Any) -> tuple[Band, ...]:
    if not isinstance(raw, list) or not raw:
        raise fail("bands", "expected a non-empty list of {lower, upper, severity, reason}")
    bands: list[Band] = []
    for i, item in enumerate(raw):
        where = f"bands[{i}]"
        if not isinstance(item, Mapping):
            raise fail(where, "expected {lower, upper, severity, reason}")
        extra = sorted(set(item) - {"lower", "upper", "severity", "reason"})
        if extra:
            raise fail(
                f"{where}.{extra[0]}", "unknown field (known: lower, upper, severity, reason)"
            )
        lower, upper = item.get("lower"), item.get("upper")
        if not _number(lower):
            raise fail(f"{where}.lower", "required number")
        if upper is not None and not _number(upper):
            raise fail(f"{where}.upper", "must be a number or null")
        if upper is not None and upper <= lower:
            raise fail(f"{where}.upper", f"must be greater than lower ({lower})")
        severity = item.get("severity")
        if severity not in Severity.__members__:
            raise fail(f"{where}.severity", f"must be one of {', '.join(Severity.__members__)}")
        reason = item.get("reason")
        if not isinstance(reason, str) or not reason.strip():
            raise fail(f"{where}.reason", "required human-readable text")
        try:
            reason.format_map(_AnyKey())
        except (ValueError, IndexError) as exc:
            raise fail(f"{where}.reason", f"bad format string: {exc}") from None
        top = None if upper is None else float(upper)
        bands.append(Band(float(lower), top, Severity[str(severity)], reason))  # type: ignore[arg-type]
    ordered = sorted(bands, key=lambda b: b.lower)
    for prev, band in zip(ordered, ordered[1:], strict=False):
        if prev.upper is None or prev.upper > band.lower:
            raise fail("bands", f"bands overlap at {band.lower}")
    return tuple(ordered)


def _number(value: Any) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool) and value == value


class _AnyKey(dict):  # type: ignore[type-arg]
    """Lets a reason string be checked for syntax without knowing the figures."""

    def __missing__(self, key: str) -> float:
        return 0.0


def load_engine_settings(paths: Iterable[str | Path] | None = None) -> EngineSettings:
    """``engine.yaml`` from the builtin directory, overridden by one in an extra directory."""
    values: dict[str, Any] = {}
    dirs = [BUILTIN_DIR, *(Path(p) for p in (paths or ()) if Path(p).is_dir())]
    for d in dirs:
        path = d / ENGINE_FILE
        if path.is_file():
            data = yaml.safe_load(path.read_text(encoding="utf-8")) or {}
            if not isinstance(data, Mapping):
                raise RuleFileError(str(path), None, None, "expected a mapping")
            values.update(data)
    source = str(BUILTIN_DIR / ENGINE_FILE)
    unknown = sorted(set(values) - {"link_confidence_floor", "webhook_min_severity"})
    if unknown:
        raise RuleFileError(source, None, unknown[0], "unknown engine setting")
    floor: Any = values.get("link_confidence_floor", 0.9)
    if not _number(floor) or not 0 <= floor <= 1:
        raise RuleFileError(source, None, "link_confidence_floor", "must be a number in 0..1")
    minimum: Any = values.get("webhook_min_severity", "high")
    if minimum not in Severity.__members__:
        raise RuleFileError(source, None, "webhook_min_severity", "must be a severity name")
    return EngineSettings(
        link_confidence_floor=float(floor), webhook_min_severity=Severity[minimum]
    )
