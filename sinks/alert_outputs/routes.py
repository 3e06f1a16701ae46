"""The alert routing configuration (PW_ALERT_ROUTES): named outputs, and routes to them.

One TOML (or YAML) file, validated with pydantic when the feed starts, so an unknown output
type, a missing secret or a bad URL stops it with a message naming the field instead of failing
on the first alert. Secrets never sit in the file: an output names the environment variable that
holds them (`secret_env`, and `url_env` for chat webhooks whose URL is the credential).

Versions. Every fold of an alert (one more piece of evidence) publishes a new version with the
same `alert_id` and a higher `count`. A route delivers either every version (`versions = "all"`)
or only escalations (`versions = "escalations"`, the default): the first version, and each
version whose count reaches a threshold (`escalate_at`, default 2, 4, 8, 16, ...). The rule
is a function of the record alone, so restarts, rebalances and redeliveries decide the same way.
"""

from __future__ import annotations

import tomllib
import urllib.parse
from collections.abc import Mapping
from pathlib import Path
from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from pipeline.contract import SEVERITIES
from sinks.alert_outputs.alertmanager import AlertmanagerOutput
from sinks.alert_outputs.base import Alert, Output
from sinks.alert_outputs.dingtalk import DingTalkOutput
from sinks.alert_outputs.feishu import FeishuOutput
from sinks.alert_outputs.ocsf import OcsfOutput
from sinks.alert_outputs.slack import SlackOutput
from sinks.alert_outputs.webhook import WebhookOutput
from sinks.alert_outputs.wecom import WeComOutput


class RoutesError(ValueError):
    """The routes file is unreadable or invalid; the message names the file and the field."""


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class RetryPolicy(_Strict):
    """Retry budget of one delivery: whichever of attempts or seconds runs out first parks it."""

    max_attempts: int = Field(default=8, ge=1)
    max_seconds: float = Field(default=300.0, gt=0)
    initial_delay: float = Field(default=0.5, gt=0)
    max_delay: float = Field(default=30.0, gt=0)
    timeout: float = Field(default=10.0, gt=0, description="seconds one HTTP request may take")


class _OutputBase(_Strict):
    url: str | None = None
    url_env: str | None = None
    lang: Literal["en", "zh"] = "en"
    retry: RetryPolicy | None = None

    @model_validator(mode="after")
    def _one_url(self) -> _OutputBase:
        if (self.url is None) == (self.url_env is None):
            raise ValueError(
                "set exactly one of url (in the file) or url_env (an environment variable holding it)"
            )
        if self.url is not None:
            check_url(self.url)
        return self


class WebhookConfig(_OutputBase):
    type: Literal["webhook"]
    secret_env: str
    headers: dict[str, str] = {}


class SlackConfig(_OutputBase):
    type: Literal["slack"]


class FeishuConfig(_OutputBase):
    type: Literal["feishu"]
    secret_env: str | None = None


class DingTalkConfig(_OutputBase):
    type: Literal["dingtalk"]
    secret_env: str | None = None
    style: Literal["markdown", "actionCard"] = "markdown"
    link: str = ""


class WeComConfig(_OutputBase):
    type: Literal["wecom"]


class OcsfConfig(_OutputBase):
    type: Literal["ocsf"]
    secret_env: str | None = None
    headers: dict[str, str] = {}


class AlertmanagerConfig(_OutputBase):
    type: Literal["alertmanager"]
    ends_after: float = Field(default=3600.0, gt=0)
    generator_url: str = ""
    headers: dict[str, str] = {}


OutputConfig = Annotated[
    WebhookConfig
    | SlackConfig
    | FeishuConfig
    | DingTalkConfig
    | WeComConfig
    | OcsfConfig
    | AlertmanagerConfig,
    Field(discriminator="type"),
]


class Route(_Strict):
    name: str
    min_severity: Literal["info", "low", "medium", "high", "critical"] = "info"
    detectors: list[str] = []
    accounts: list[str] = []
    outputs: list[str] = Field(min_length=1)
    versions: Literal["all", "escalations"] = "escalations"
    escalate_at: list[int] = []

    @field_validator("escalate_at")
    @classmethod
    def _positive(cls, value: list[int]) -> list[int]:
        if any(n < 2 for n in value):
            raise ValueError(
                "thresholds are event counts of 2 or more (the first version is always delivered)"
            )
        return value

    def matches(self, alert: Alert) -> bool:
        severity = str(alert.get("severity", "info"))
        if severity not in SEVERITIES or SEVERITIES.index(severity) < SEVERITIES.index(
            self.min_severity
        ):
            return False
        if self.detectors and alert.get("detector") not in self.detectors:
            return False
        return not (self.accounts and alert.get("account_id") not in self.accounts)

    def wants_version(self, alert: Alert) -> bool:
        """Every version, or the first and each whose count reaches a threshold."""
        count = int(alert.get("count", 1))
        if self.versions == "all" or count <= 1:
            return True
        if self.escalate_at:
            return count in self.escalate_at
        return count & (count - 1) == 0  # 2, 4, 8, 16, ...


class RoutesFile(_Strict):
    retry: RetryPolicy = Field(default_factory=RetryPolicy)
    outputs: dict[str, OutputConfig]
    routes: list[Route] = Field(min_length=1)

    @model_validator(mode="after")
    def _known_outputs(self) -> RoutesFile:
        for i, route in enumerate(self.routes):
            for name in route.outputs:
                if name not in self.outputs:
                    known = ", ".join(sorted(self.outputs)) or "none"
                    raise ValueError(
                        f"routes[{i}] ({route.name}) sends to unknown output {name!r} (defined: {known})"
                    )
        return self


def check_url(url: str) -> str:
    parts = urllib.parse.urlsplit(url)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise ValueError(f"{url[:60]!r} is not an http(s) URL with a host")
    return url


class AlertRoutes:
    """The validated file with its secrets resolved: outputs ready to render, and routing."""

    def __init__(self, config: RoutesFile, outputs: dict[str, Output]) -> None:
        self.config = config
        self.outputs = outputs

    def targets(self, alert: Alert) -> list[str]:
        """Names of the outputs this alert version goes to (each once, in route order)."""
        names: list[str] = []
        for route in self.config.routes:
            if route.matches(alert) and route.wants_version(alert):
                names.extend(n for n in route.outputs if n not in names)
        return names

    def lifecycle_targets(self, alert: Alert) -> list[str]:
        """Outputs that are sent a lifecycle action on this alert (ack, resolve, reopen): those of
        the routes that match it, whatever its version, that follow the lifecycle."""
        names: list[str] = []
        for route in self.config.routes:
            if route.matches(alert):
                names.extend(
                    n
                    for n in route.outputs
                    if n not in names and getattr(self.outputs[n], "follows_lifecycle", False)
                )
        return names

    def retry_policy(self, output: str) -> RetryPolicy:
        return self.config.outputs[output].retry or self.config.retry


def _format(error: ValidationError) -> str:
    lines = []
    for e in error.errors():
        where = ".".join(str(part) for part in e["loc"]) or "(file)"
        lines.append(f"{where}: {e['msg']}")
    return "; ".join(lines)


def parse(data: Any, environ: Mapping[str, str], source: str = "routes") -> AlertRoutes:
    """Validate `data` (the parsed file) and resolve its environment variables."""
    try:
        config = RoutesFile.model_validate(data)
    except ValidationError as exc:
        raise RoutesError(f"{source}: {_format(exc)}") from None
    outputs: dict[str, Output] = {}
    for name, cfg in config.outputs.items():
        where = f"{source}: outputs.{name}"
        url = cfg.url or _from_env(cfg, "url_env", True, environ, where)
        if cfg.url_env:
            try:
                check_url(url)
            except ValueError as exc:
                raise RoutesError(f"{where}.url_env: {cfg.url_env} holds {exc}") from None
        try:
            outputs[name] = _build(
                name,
                cfg,
                url,
                lambda field, required, c=cfg, w=where: _from_env(c, field, required, environ, w),
            )
        except RoutesError:
            raise
        except ValueError as exc:  # e.g. a whsec_ secret that is not base64
            raise RoutesError(f"{where}: {exc}") from None
    return AlertRoutes(config, outputs)


def _from_env(cfg: Any, field: str, required: bool, environ: Mapping[str, str], where: str) -> str:
    """The value of the environment variable that `cfg.<field>` names ("" if optional and unset)."""
    var = getattr(cfg, field, None)
    if var is None:
        if required:
            raise RoutesError(f"{where}.{field} is required")
        return ""
    value = environ.get(var, "")
    if not value:
        raise RoutesError(f"{where}.{field}: environment variable {var} is not set")
    return value


def _build(name: str, cfg: Any, url: str, env: Any) -> Output:
    if isinstance(cfg, WebhookConfig):
        return WebhookOutput(name, url, env("secret_env", True), cfg.headers)
    if isinstance(cfg, SlackConfig):
        return SlackOutput(name, url, cfg.lang)
    if isinstance(cfg, FeishuConfig):
        return FeishuOutput(name, url, env("secret_env", False), cfg.lang)
    if isinstance(cfg, DingTalkConfig):
        return DingTalkOutput(name, url, env("secret_env", False), cfg.lang, cfg.style, cfg.link)
    if isinstance(cfg, WeComConfig):
        return WeComOutput(name, url, cfg.lang)
    if isinstance(cfg, OcsfConfig):
        return OcsfOutput(name, url, env("secret_env", False), cfg.headers)
    if not isinstance(cfg, AlertmanagerConfig):
        raise RoutesError(f"output {name}: unknown type {type(cfg).__name__}")
    return AlertmanagerOutput(name, url, cfg.ends_after, cfg.generator_url, cfg.headers)


def load(path: str | Path, environ: Mapping[str, str]) -> AlertRoutes:
    """Read and validate the routes file (`.toml`, or `.yaml`/`.yml`)."""
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as exc:
        raise RoutesError(f"PW_ALERT_ROUTES: cannot read {path}: {exc.strerror}") from None
    try:
        if path.suffix in (".yaml", ".yml"):
            import yaml

            data = yaml.safe_load(text)
        else:
            data = tomllib.loads(text)
    except Exception as exc:  # tomllib.TOMLDecodeError, yaml.YAMLError
        raise RoutesError(
            f"{path}: not valid {'YAML' if path.suffix in ('.yaml', '.yml') else 'TOML'}: {exc}"
        ) from None
    return parse(data, environ, str(path))
