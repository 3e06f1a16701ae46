"""The catalog of `PW_*` variables: each variable's name, field and default, how `partnerwatch
config` shows a value, one-line errors, and the generated tables of docs/operations.md and
docs/detectors.md (`partnerwatch config --markdown`, `--detectors --markdown`)."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from pydantic import BaseModel, ValidationError
from pydantic.fields import FieldInfo

from pipeline.detection_config import DetectionConfig, is_secret
from pipeline.locations import DATA_DIR_DEFAULT_TEXT
from pipeline.redaction import redact_url
from pipeline.settings_sources import DETECT_PREFIX, ENV_FILE_VARIABLE, PREFIX, _lookup

if TYPE_CHECKING:
    from pipeline.config import Settings


@dataclass(frozen=True)
class Variable:
    """One `PW_*` variable: its name, where it lives on Settings, and its field."""

    env: str
    path: tuple[str, ...]
    info: FieldInfo

    @property
    def secret(self) -> bool:
        return is_secret(self.info)

    @property
    def default(self) -> Any:
        return self.info.get_default(call_default_factory=True)


def shown_value(settings: Settings, var: Variable) -> str:
    """A variable's value as `partnerwatch config` prints it: secrets as ***, URL passwords hidden,
    severities as `detector=level,...` (the variable's own form)."""
    value = settings.value(var)
    if var.secret and value:
        return "***"
    if isinstance(value, dict):
        value = ",".join(f"{k}={v}" for k, v in value.items())
    if isinstance(value, Path):
        value = str(value)
    return repr(redact_url(value)) if isinstance(value, str) else str(value)


def variables_of(settings_model: type[BaseModel]) -> list[Variable]:
    """Every `PW_*` variable the settings model reads, in declaration order (detection last);
    `pipeline.config.variables()` is this for `Settings`."""
    out = [
        Variable(PREFIX + name.upper(), (name,), info)
        for name, info in settings_model.model_fields.items()
        if name != "detect"
    ]
    out += [
        Variable(DETECT_PREFIX + name.upper(), ("detect", name), info)
        for name, info in DetectionConfig.model_fields.items()
    ]
    return out


def _env_name(loc: tuple[int | str, ...]) -> str:
    if loc and loc[0] == "detect" and len(loc) > 1:
        return DETECT_PREFIX + str(loc[1]).upper()
    return PREFIX + str(loc[0]).upper() if loc else "PW_*"


def one_line(
    exc: ValidationError,
    layers: list[tuple[str, Mapping[str, str | None]]],
    overrides: Mapping[str, Any],
    catalog: list[Variable],
) -> str:
    """pydantic's report -> `PW_X='bad': what is wrong` (one line; secrets never shown)."""
    secret = {v.env for v in catalog if v.secret}
    parts = []
    for error in exc.errors(include_url=False):
        env = _env_name(error["loc"])
        message = error["msg"].removeprefix("Value error, ")
        message = message[:1].lower() + message[1:]
        if error["type"] == "extra_forbidden":
            parts.append(f"{env} is not a detector setting (see `partnerwatch config --detectors`)")
            continue
        raw: Any = error["input"]
        where: str | None = "override" if error["loc"][0] in overrides else None
        if where is None:
            raw, where = next(
                ((r, label) for label, values in layers if (r := _lookup(values, env)) is not None),
                (raw, None),
            )
        shown = "***" if env in secret else repr(raw)
        parts.append(
            f"{env}={shown}{f' ({where})' if where and where != 'environment' else ''}: {message}"
        )
    return "; ".join(parts)


def _default_text(var: Variable) -> str:
    return "(empty)" if var.path == ("detect", "severities") else f"`{var.default}`"


def markdown_table(catalog: list[Variable]) -> str:
    """The configuration table of docs/operations.md."""
    lines = ["| variable | default | meaning |", "|---|---|---|"]
    for var in catalog:
        if var.path[0] != "detect":
            default = (
                DATA_DIR_DEFAULT_TEXT
                if var.path == ("data_dir",)
                else var.default
                if var.default != ""
                else "(empty)"
            )
            lines.append(f"| `{var.env}` | `{default}` | {var.info.description} |")
    lines.append(
        f"| `{ENV_FILE_VARIABLE}` | `(empty)` | a file of `PW_*=value` lines read under the environment (a variable set in the environment wins) |"
    )
    return "\n".join(lines)


def detector_markdown_table(catalog: list[Variable]) -> str:
    """The detector settings table of docs/detectors.md (`PW_DETECT_*`)."""
    lines = ["| variable | default | meaning |", "|---|---|---|"]
    for var in catalog:
        if var.path[0] == "detect":
            lines.append(f"| `{var.env}` | {_default_text(var)} | {var.info.description} |")
    return "\n".join(lines)
