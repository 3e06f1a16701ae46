"""Where the code runs from and where its data lives by default."""

from __future__ import annotations

import os
from pathlib import Path

#: The folder that holds the packages: the repository in a source checkout (or an editable
#: install), site-packages in an installed wheel. Code that needs the repository (bench, tests,
#: the local worker's working directory) asks `checkout()` first.
REPO_ROOT = Path(__file__).resolve().parent.parent


def checkout() -> Path | None:
    """The source checkout these packages run from, or None when installed (e.g. from a wheel)."""
    return REPO_ROOT if (REPO_ROOT / "pyproject.toml").is_file() else None


#: How the docs show PW_DATA_DIR's default (`default_data_dir`), which depends on where the code runs.
DATA_DIR_DEFAULT_TEXT = "data/ of the checkout; installed: $XDG_DATA_HOME/partnerwatch"


def default_data_dir() -> Path:
    """PW_DATA_DIR's default, the same whatever folder a command runs from: the checkout's `data/`
    when the code runs from a source checkout (or an editable install), else the user's data folder
    (`$XDG_DATA_HOME/partnerwatch`, by default `~/.local/share/partnerwatch`)."""
    root = checkout()
    if root is not None:
        return root / "data"
    base = os.environ.get("XDG_DATA_HOME") or str(Path.home() / ".local" / "share")
    return Path(base) / "partnerwatch"
