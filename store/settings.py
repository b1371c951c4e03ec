"""One place for configuration: environment variables with the SLIPLINK_ prefix."""

from __future__ import annotations

import os
from functools import lru_cache
from pathlib import Path

from pydantic import Field, field_validator, model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

_DEMO_SECRET = "demo-secret-not-for-production"


def default_data_dir() -> Path:
    """Per-user data directory (XDG on Linux), where the embedded SQLite file lives."""
    base = os.environ.get("XDG_DATA_HOME") or str(Path.home() / ".local" / "share")
    return Path(base) / "sliplink"


class Settings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="SLIPLINK_", extra="ignore")

    environment: str = Field(default="demo", description="demo | production | test")
    data_dir: Path = Field(default_factory=default_data_dir)
    database_url: str | None = None
    broker_url: str | None = Field(
        default=None, description="Celery broker; unset = in-process tasks"
    )
    secret_key: str = _DEMO_SECRET

    max_upload_bytes: int = Field(default=15 * 1024 * 1024, gt=0)
    max_image_pixels: int = Field(default=50_000_000, gt=0)
    retention_days: int = Field(default=400, gt=0)
    recluster_window_days: int = Field(default=30, gt=0)
    in_process_workers: int = Field(default=2, ge=1)

    # rate limits per client (API key or address), per API process
    upload_rate_per_minute: int = Field(default=600, ge=1)
    login_attempts_per_minute: int = Field(default=10, ge=1)

    # pre-acceptance check: house limits before a customer's stake factor
    check_max_stake: float = Field(default=500.0, gt=0)
    check_max_potential_win: float = Field(default=25_000.0, gt=0)
    check_max_open_stake: float = Field(default=2_000.0, gt=0)
    check_max_selection_liability: float = Field(default=10_000.0, gt=0)

    model_path: Path | None = Field(
        default=None, description="embedding model file; default = shipped"
    )

    @field_validator("environment")
    @classmethod
    def _known_environment(cls, value: str) -> str:
        if value not in {"demo", "production", "test"}:
            raise ValueError("environment must be demo, production or test")
        return value

    @model_validator(mode="after")
    def _refuse_insecure_production(self) -> Settings:
        if self.environment == "production":
            if self.secret_key == _DEMO_SECRET or len(self.secret_key) < 32:
                raise ValueError("SLIPLINK_SECRET_KEY must be set (32+ chars) in production")
            if self.database_url is None or self.database_url.startswith("sqlite"):
                raise ValueError("production needs SLIPLINK_DATABASE_URL for PostgreSQL")
        return self

    @property
    def effective_database_url(self) -> str:
        if self.database_url:
            return self.database_url
        return f"sqlite:///{self.data_dir / 'sliplink.db'}"

    @property
    def embedded(self) -> bool:
        """No broker configured: tasks run in process."""
        return not self.broker_url


@lru_cache
def get_settings() -> Settings:
    return Settings()
