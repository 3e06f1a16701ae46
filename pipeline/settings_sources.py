"""Where a setting's value comes from: the environment, then the file named by `PW_ENV_FILE`.

`LayeredSettings` reads those layers, highest first, under the overrides given in code; the layers
one `Settings.from_env` call reads are set in `_LAYERS` for the duration of the call.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from contextvars import ContextVar
from pathlib import Path

from dotenv import dotenv_values
from pydantic_settings import BaseSettings, EnvSettingsSource, PydanticBaseSettingsSource

from pipeline.kafka_settings import KafkaConnection

PREFIX = "PW_"
DETECT_PREFIX = "PW_DETECT_"
#: Names a file of `PW_*=value` lines read under the environment; itself only read from the environment.
ENV_FILE_VARIABLE = "PW_ENV_FILE"

# The layers one `from_env` call reads (label, variables), highest first; None: the process's own.
_LAYERS: ContextVar[list[tuple[str, Mapping[str, str | None]]] | None] = ContextVar(
    "pw_settings_layers", default=None
)


class _MappingSource(EnvSettingsSource):
    """pydantic-settings' environment source over a given mapping instead of `os.environ`."""

    def __init__(
        self, settings_cls: type[BaseSettings], variables: Mapping[str, str | None]
    ) -> None:
        self._variables = variables
        super().__init__(settings_cls)

    def _load_env_vars(self) -> Mapping[str, str | None]:
        return {k.lower(): v for k, v in self._variables.items()}


def _layers(environ: Mapping[str, str]) -> list[tuple[str, Mapping[str, str | None]]]:
    layers: list[tuple[str, Mapping[str, str | None]]] = [("environment", environ)]
    path = environ.get(ENV_FILE_VARIABLE, "")
    if path:
        if not Path(path).is_file():
            raise ValueError(f"{ENV_FILE_VARIABLE}={path!r}: no such file")
        values = dotenv_values(path)
        values.pop(ENV_FILE_VARIABLE, None)  # names no further file
        layers.append((f"file {path}", values))
    return layers


def _lookup(values: Mapping[str, str | None], env: str) -> str | None:
    if env in values:
        return values[env]
    lowered = env.lower()
    return next((v for k, v in values.items() if k.lower() == lowered), None)


class LayeredSettings(KafkaConnection):
    """Settings read from the layers of `_LAYERS` (else the process's environment and its file)."""

    @classmethod
    def settings_customise_sources(
        cls,
        settings_cls: type[BaseSettings],
        init_settings: PydanticBaseSettingsSource,
        env_settings: PydanticBaseSettingsSource,
        dotenv_settings: PydanticBaseSettingsSource,
        file_secret_settings: PydanticBaseSettingsSource,
    ) -> tuple[PydanticBaseSettingsSource, ...]:
        layers = _LAYERS.get()
        if layers is None:
            layers = _layers(os.environ)
        return (
            init_settings,
            *(_MappingSource(settings_cls, variables) for _, variables in layers),
        )
