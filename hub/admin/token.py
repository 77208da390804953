"""The admin API's bearer token: configured (``admin.token``), or generated once and kept.

The admin API is never open: with no token configured, the first start generates one
(``secrets.token_urlsafe(32)``), keeps it in ``<state_dir>/admin-token`` (mode 0600) and the
ready line shows it once, as Jupyter does; later starts read the same file.
"""

from __future__ import annotations

import os
import secrets
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

from hub.config import HubConfig
from hub.errors import ConfigError

__all__ = ["AdminToken", "admin_token"]

FILE_NAME = "admin-token"


@dataclass(frozen=True)
class AdminToken:
    value: str
    origin: Literal["config", "generated", "file"]
    path: Path | None = None

    def __repr__(self) -> str:  # never the value
        return f"AdminToken(origin={self.origin!r}, path={self.path!r})"

    def describe(self) -> str:
        """For the ready line: the token itself only when it was just generated."""
        if self.origin == "config":
            return "token from admin.token"
        if self.origin == "generated":
            return f"token {self.value} (new; kept in {self.path})"
        return f"token in {self.path}"


def admin_token(config: HubConfig) -> AdminToken:
    """The configured token, else the one kept in ``state_dir``, else a new one (kept)."""
    if config.admin.token is not None:
        return AdminToken(config.admin.token.get_secret_value(), "config")
    path = (config.state_dir / FILE_NAME).resolve()
    try:
        value = path.read_text(encoding="utf-8").strip()
    except FileNotFoundError:
        value = ""
    except OSError as exc:
        raise ConfigError(f"cannot read the admin token {path}: {exc.strerror}",
                          field="state_dir") from None
    if value:
        return AdminToken(value, "file", path)
    value = secrets.token_urlsafe(32)
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "w", encoding="utf-8") as file:
            file.write(value + "\n")
    except OSError as exc:
        raise ConfigError(f"cannot keep a generated admin token in {path}: {exc.strerror}; "
                          f"set admin.token (HUB_ADMIN__TOKEN) or a writable state_dir",
                          field="state_dir") from None
    return AdminToken(value, "generated", path)
