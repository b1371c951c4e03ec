"""Tables and their API schemas.  Per resource: Base -> Create / Update -> table -> Public.

Money is stored as NUMERIC(14, 2) and handled as float in Python: stakes and returns are
pounds and pence, never fractions of a penny.
"""

from __future__ import annotations

import enum
import math
from datetime import UTC, datetime

import sqlalchemy as sa
from pydantic import field_validator, model_validator
from sqlalchemy import JSON, Column, LargeBinary, Numeric, UniqueConstraint
from sqlmodel import Field, SQLModel

# Constraint names agree on SQLite and PostgreSQL, so migrations can name them.
SQLModel.metadata.naming_convention = {
    "ix": "ix_%(column_0_label)s",
    "uq": "uq_%(table_name)s_%(column_0_name)s",
    "ck": "ck_%(table_name)s_%(constraint_name)s",
    "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
    "pk": "pk_%(table_name)s",
}


def _finite(value: float | None) -> float | None:
    """Refuse NaN and infinity, which JSON parsers let through and arithmetic spreads."""
    if value is not None and not math.isfinite(value):
        raise ValueError("must be a finite number")
    return value


def utcnow() -> datetime:
    return datetime.now(UTC)


def as_utc(value: datetime) -> datetime:
    """Aware UTC datetimes everywhere; a naive input is taken to be UTC already."""
    if value.tzinfo is None:
        return value.replace(tzinfo=UTC)
    return value.astimezone(UTC)


def _enum(enum_cls: type[enum.Enum]) -> sa.Enum:
    # stored as VARCHAR, not a PostgreSQL enum type, so adding a value needs no type migration
    return sa.Enum(enum_cls, native_enum=False, length=32, validate_strings=True)


def _money() -> Column:  # type: ignore[type-arg]
    return Column(Numeric(14, 2, asdecimal=False), nullable=False)


def _money_nullable() -> Column:  # type: ignore[type-arg]
    return Column(Numeric(14, 2, asdecimal=False), nullable=True)


class CustomerStatus(enum.StrEnum):
    active = "active"
    self_excluded = "self_excluded"
    closed = "closed"


class BetStatus(enum.StrEnum):
    open = "open"
    won = "won"
    lost = "lost"
    placed = "placed"
    void = "void"


class SlipStatus(enum.StrEnum):
    pending = "pending"
    processing = "processing"
    ready = "ready"
    failed = "failed"


# ---------------------------------------------------------------- shops
class ShopBase(SQLModel):
    code: str = Field(min_length=1, max_length=32, index=True, unique=True)
    name: str = Field(min_length=1, max_length=200)
    region: str | None = Field(default=None, max_length=100)


class ShopCreate(ShopBase):
    pass


class ShopUpdate(SQLModel):
    name: str | None = Field(default=None, min_length=1, max_length=200)
    region: str | None = Field(default=None, max_length=100)


class Shop(ShopBase, table=True):
    __tablename__ = "shops"
    id: int | None = Field(default=None, primary_key=True)
    created_at: datetime = Field(default_factory=utcnow, nullable=False)


class ShopPublic(ShopBase):
    id: int
    created_at: datetime


# ---------------------------------------------------------------- customers
class CustomerBase(SQLModel):
    external_ref: str = Field(min_length=1, max_length=64, index=True, unique=True)
    name: str | None = Field(default=None, max_length=200)
    registered_at: datetime | None = None
    status: CustomerStatus = Field(default=CustomerStatus.active, sa_type=_enum(CustomerStatus))
    risk_category: str = Field(default="normal", max_length=32, index=True)
    stake_factor: float = Field(default=1.0, gt=0, le=100)
    restricted_sports: list[str] = Field(default_factory=list, sa_column=Column(JSON))
    restricted_price_types: list[str] = Field(default_factory=list, sa_column=Column(JSON))
    # a customer linked by handwriting takes the strictest factor of its linked accounts,
    # unless an analyst turns this off
    inherit_linked_factor: bool = Field(
        default=True, sa_column_kwargs={"server_default": sa.true()}
    )


class CustomerCreate(CustomerBase):
    _finite = field_validator("stake_factor")(classmethod(lambda cls, v: _finite(v)))


class CustomerUpdate(SQLModel):
    name: str | None = Field(default=None, max_length=200)
    status: CustomerStatus | None = None
    risk_category: str | None = Field(default=None, max_length=32)
    stake_factor: float | None = Field(default=None, gt=0, le=100)
    restricted_sports: list[str] | None = None
    restricted_price_types: list[str] | None = None
    inherit_linked_factor: bool | None = None

    _finite = field_validator("stake_factor")(classmethod(lambda cls, v: _finite(v)))


class Customer(CustomerBase, table=True):
    __tablename__ = "customers"
    id: int | None = Field(default=None, primary_key=True)
    created_at: datetime = Field(default_factory=utcnow, nullable=False)
    updated_at: datetime = Field(default_factory=utcnow, nullable=False)


class CustomerPublic(CustomerBase):
    id: int
    created_at: datetime
    updated_at: datetime


# ---------------------------------------------------------------- bets and legs
class LegBase(SQLModel):
    sport: str = Field(min_length=1, max_length=64)
    event: str = Field(default="", max_length=200)
    event_start: datetime | None = None
    market: str = Field(default="Win", max_length=64)
    selection: str = Field(min_length=1, max_length=200)
    odds: float | None = Field(default=None, gt=1.0, le=100_000)
    # the odds feed's stable event id, when the till has it: settlement links the leg to its
    # event by this id first, by event name + date otherwise
    event_ref: str | None = Field(default=None, max_length=100, index=True)


class LegCreate(LegBase):
    _finite = field_validator("odds")(classmethod(lambda cls, v: _finite(v)))


class Leg(LegBase, table=True):
    __tablename__ = "legs"
    __table_args__ = (
        # one selection within its event (selection_run, liability_limit; migration 0012);
        # its prefix also serves look-ups by selection_key alone (0013 dropped that index)
        sa.Index("ix_legs_selection_event_bet", "selection_key", sa.text("lower(event)"), "bet_id"),
    )
    id: int | None = Field(default=None, primary_key=True)
    bet_id: int = Field(foreign_key="bets.id", index=True, ondelete="CASCADE")
    position: int = Field(default=0)
    selection_key: str = Field(default="", max_length=200)


class LegPublic(LegBase):
    id: int
    position: int


BET_TYPES = (
    "single", "double", "treble", "trixie", "patent", "yankee", "lucky15", "accumulator",
    "forecast", "tricast", "other",
)  # fmt: skip

# Line counts per full-cover bet type: total stake = unit stake x lines (x2 each way).
BET_LINES = {"single": 1, "double": 1, "treble": 1, "accumulator": 1, "trixie": 4,
             "patent": 7, "yankee": 11, "lucky15": 15}  # fmt: skip


def selection_key(selection: str) -> str:
    """Case- and space-insensitive key so 'Golden  arrow' and 'GOLDEN ARROW' are one selection."""
    return " ".join(selection.lower().split())


class BetCreate(SQLModel):
    """A bet as taken at the counter.

    Accepts the full shape and the minimal one of CONTRACTS.md
    (``amount, betType, sport, description, odds, customerId``).
    """

    shop_id: int | None = None
    customer_id: int | None = None
    placed_at: datetime | None = None
    currency: str = Field(default="GBP", min_length=3, max_length=3)
    stake: float = Field(gt=0, le=10_000_000, description="unit stake")
    total_stake: float | None = Field(default=None, gt=0, le=100_000_000)
    bet_type: str = Field(default="single", max_length=32)
    each_way: bool = False
    odds: float | None = Field(default=None, gt=1.0, le=100_000)
    description: str | None = Field(default=None, max_length=500)
    legs: list[LegCreate] = Field(default_factory=list, max_length=20)

    @model_validator(mode="before")
    @classmethod
    def _accept_minimal_shape(cls, data):  # type: ignore[no-untyped-def]
        if not isinstance(data, dict) or "amount" not in data:
            return data
        data = dict(data)
        data.setdefault("stake", data.pop("amount"))
        if "customerId" in data:
            data.setdefault("customer_id", data.pop("customerId"))
        if "shopId" in data:
            data.setdefault("shop_id", data.pop("shopId"))
        market = data.pop("betType", None)
        sport = data.pop("sport", None)
        if not data.get("legs") and sport is not None:
            data["legs"] = [
                {
                    "sport": sport,
                    "event": data.get("description") or "",
                    "market": market or "Win",
                    "selection": data.get("description") or sport,
                    "odds": data.get("odds"),
                }
            ]
        return data

    _finite = field_validator("stake", "total_stake", "odds")(
        classmethod(lambda cls, v: _finite(v))
    )

    @field_validator("bet_type")
    @classmethod
    def _known_bet_type(cls, value: str) -> str:
        value = value.lower().replace(" ", "").replace("_", "")
        if value not in BET_TYPES:
            raise ValueError(f"bet_type must be one of {', '.join(BET_TYPES)}")
        return value

    @field_validator("currency")
    @classmethod
    def _upper_currency(cls, value: str) -> str:
        if not value.isalpha():
            raise ValueError("currency must be a 3-letter ISO code")
        return value.upper()

    @model_validator(mode="after")
    def _needs_a_leg(self) -> BetCreate:
        if not self.legs:
            raise ValueError("a bet needs at least one leg (legs) or a sport (minimal shape)")
        return self


class Bet(SQLModel, table=True):
    __tablename__ = "bets"
    __table_args__ = (
        # only the bets still waiting for their rules: small, and the sweeper's look-up
        sa.Index(
            "ix_bets_rules_pending_since",
            "rules_pending_since",
            postgresql_where=sa.text("rules_pending_since IS NOT NULL"),
            sqlite_where=sa.text("rules_pending_since IS NOT NULL"),
        ),
    )
    id: int | None = Field(default=None, primary_key=True)
    shop_id: int | None = Field(default=None, foreign_key="shops.id", index=True)
    customer_id: int | None = Field(default=None, foreign_key="customers.id", index=True)
    placed_at: datetime = Field(default_factory=utcnow, index=True, nullable=False)
    currency: str = Field(default="GBP", max_length=3)
    stake: float = Field(sa_column=_money())
    total_stake: float = Field(sa_column=_money())
    bet_type: str = Field(max_length=32)
    each_way: bool = False
    odds: float | None = Field(default=None)
    potential_return: float | None = Field(default=None, sa_column=_money_nullable())
    description: str | None = Field(default=None, max_length=500)
    sport: str = Field(default="", max_length=64, index=True)
    status: BetStatus = Field(default=BetStatus.open, index=True, sa_type=_enum(BetStatus))
    returns: float | None = Field(default=None, sa_column=_money_nullable())
    settled_at: datetime | None = None
    created_at: datetime = Field(default_factory=utcnow, nullable=False)
    # set when the bet is stored, cleared (NULL) in the transaction of its bet_placed rules;
    # the sweeper re-sends the rules of a bet still waiting after a grace period and sets it
    # to the time it did (``workers.pipeline.sweep``)
    rules_pending_since: datetime | None = None


class BetPublic(SQLModel):
    id: int
    shop_id: int | None
    customer_id: int | None
    anonymous: bool
    placed_at: datetime
    currency: str
    stake: float
    total_stake: float
    bet_type: str
    each_way: bool
    odds: float | None
    potential_return: float | None
    description: str | None
    sport: str
    status: BetStatus
    returns: float | None
    settled_at: datetime | None
    legs: list[LegPublic]
    slip_id: int | None = None


class BetPage(SQLModel):
    items: list[BetPublic]
    total: int
    limit: int
    offset: int


# ---------------------------------------------------------------- slips
class Slip(SQLModel, table=True):
    __tablename__ = "slips"
    __table_args__ = (UniqueConstraint("bet_id", name="uq_slips_bet_id"),)
    id: int | None = Field(default=None, primary_key=True)
    bet_id: int = Field(foreign_key="bets.id", nullable=False)
    sha256: str = Field(max_length=64, unique=True, index=True)
    width: int
    height: int
    original_type: str = Field(max_length=16)
    uploaded_by: str = Field(default="", max_length=100)
    uploaded_at: datetime = Field(default_factory=utcnow, nullable=False)
    status: SlipStatus = Field(default=SlipStatus.pending, index=True, sa_type=_enum(SlipStatus))
    error: str | None = Field(default=None, max_length=1000)
    attempts: int = 0
    updated_at: datetime = Field(default_factory=utcnow, nullable=False)


class SlipImage(SQLModel, table=True):
    """The stored greyscale PNG, apart from the slip row so listings never load blobs."""

    __tablename__ = "slip_images"
    slip_id: int = Field(foreign_key="slips.id", primary_key=True, ondelete="CASCADE")
    png: bytes = Field(sa_column=Column(LargeBinary, nullable=False))


class SlipPublic(SQLModel):
    id: int
    bet_id: int
    sha256: str
    width: int
    height: int
    original_type: str
    uploaded_by: str
    uploaded_at: datetime
    status: SlipStatus
    error: str | None
    features: dict[str, object] | None = None
    cluster_id: int | None = None
    duplicate: bool = False


# ---------------------------------------------------------------- audit
class AuditEntry(SQLModel, table=True):
    """Append-only: database triggers refuse UPDATE and DELETE (see the first migration)."""

    __tablename__ = "audit_log"
    id: int | None = Field(default=None, primary_key=True)
    at: datetime = Field(default_factory=utcnow, index=True, nullable=False)
    actor: str = Field(max_length=100)
    action: str = Field(max_length=64, index=True)
    entity: str = Field(max_length=64)
    entity_id: str = Field(default="", max_length=64, index=True)
    remote_addr: str | None = Field(default=None, max_length=64)
    before: dict | None = Field(default=None, sa_column=Column(JSON))  # type: ignore[type-arg]
    after: dict | None = Field(default=None, sa_column=Column(JSON))  # type: ignore[type-arg]


class AuditPublic(SQLModel):
    id: int
    at: datetime
    actor: str
    action: str
    entity: str
    entity_id: str
    remote_addr: str | None
    before: dict | None  # type: ignore[type-arg]
    after: dict | None  # type: ignore[type-arg]


# ---------------------------------------------------------------- access
class Role(enum.StrEnum):
    shop = "shop"
    analyst = "analyst"
    ml = "ml"
    admin = "admin"


class ApiKey(SQLModel, table=True):
    """An API key for a shop terminal, a script or a person; only its SHA-256 is stored."""

    __tablename__ = "api_keys"
    id: int | None = Field(default=None, primary_key=True)
    name: str = Field(max_length=100)
    prefix: str = Field(max_length=16)
    key_hash: str = Field(max_length=64, unique=True, index=True)
    role: Role = Field(sa_type=_enum(Role))
    shop_id: int | None = Field(default=None, foreign_key="shops.id")
    created_at: datetime = Field(default_factory=utcnow, nullable=False)
    revoked_at: datetime | None = None
