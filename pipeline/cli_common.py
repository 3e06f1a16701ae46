"""What every command module shares: the settings, or a clear error, and whether a worker answers."""

from __future__ import annotations

import urllib.error
import urllib.request

import typer
from rich.console import Console

from pipeline.config import Settings

err = Console(stderr=True)


def load_settings() -> Settings:
    """`Settings.from_env()`; a bad PW_* value exits 2 with the variable named."""
    try:
        return Settings.from_env()
    except ValueError as exc:
        err.print(f"[red]configuration error:[/] {exc}")
        raise typer.Exit(2) from None


def worker_running(settings: Settings) -> bool:
    """The worker answers on its web port (it then owns the embedded warehouse)."""
    try:
        with urllib.request.urlopen(f"{settings.web_url}/v1/health", timeout=2):
            return True
    except (urllib.error.URLError, ConnectionError, TimeoutError):
        return False
