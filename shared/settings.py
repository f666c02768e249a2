"""Settings from the environment (LYNCHPIN_*), built in `__main__` and passed in: nothing at import."""

from __future__ import annotations

from pathlib import Path
from typing import Literal

from pydantic import Field
from pydantic_settings import BaseSettings, SettingsConfigDict

SERVICES = ("intake", "triage", "comms", "analytics")
DEFAULT_PORTS = {"intake": 8001, "triage": 8002, "comms": 8003, "analytics": 8004}


class Settings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="LYNCHPIN_", extra="ignore")

    data_dir: Path = Path("data")
    host: str = "127.0.0.1"
    intake_port: int = 8001
    triage_port: int = 8002
    comms_port: int = 8003
    analytics_port: int = 8004

    store_url: str | None = Field(
        default=None, description="One database for every service (PostgreSQL); each keeps its own tables."
    )
    intake_store_url: str | None = None
    triage_store_url: str | None = None
    comms_store_url: str | None = None
    analytics_store_url: str | None = None

    kafka_bootstrap: str | None = Field(default=None, description="Distributed mode: the Kafka brokers.")
    kafka_partitions: int = 6
    kafka_namespace: str = Field(default="lynchpin", description="Prefix of topic and consumer-group names.")

    admin_token: str | None = None
    integration_key: str | None = None
    secret: str | None = Field(default=None, description="Signs bearer tokens; the same in every service.")

    policy: Path | None = Field(
        default=None, description="The policy file (YAML or TOML); defaults built in."
    )
    webhook_url: str | None = Field(default=None, description="Where comms posts responder notifications.")
    webhook_secret: str = "lynchpin-webhook"
    max_body_bytes: int = 512 * 1024
    body_read_timeout: float = Field(
        default=10.0, gt=0, description="Seconds a client may pause mid-body (408)"
    )
    analytics_results_seconds: float = Field(
        default=5.0,
        ge=0,
        description="How long analytics may serve a computed metrics or dashboard answer again while no "
        "event has been applied since (0: compute every request).",
    )
    log_level: str = "INFO"
    log_format: Literal["text", "json"] = Field(
        default="text",
        description="`json`: one JSON object per log line, with the incident's correlation id.",
    )

    def port(self, service: str) -> int:
        return int(getattr(self, f"{service}_port"))

    def store_url_for(self, service: str) -> str:
        own: str | None = getattr(self, f"{service}_store_url")
        if own is not None:
            return own
        if self.store_url is not None and service != "analytics":
            return self.store_url
        return f"sqlite://{(self.data_dir / f'{service}.db').absolute()}"

    @property
    def distributed(self) -> bool:
        return self.kafka_bootstrap is not None

    def mode(self) -> Literal["embedded", "distributed"]:
        return "distributed" if self.distributed else "embedded"
