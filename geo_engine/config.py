"""Settings: one object, built from ``GEO_ENGINE_*`` variables and overridden by CLI flags.

Nothing else in geo-engine reads ``os.environ``. Every setting has a name, a default and a help
line (as datasette's ``SETTINGS``); the README lists them all (a test checks that it does).
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass, fields, replace
from typing import Any

from .errors import InvalidInput

__all__ = ["SETTINGS", "Setting", "Settings"]


@dataclass(frozen=True)
class Setting:
    name: str
    default: Any
    help: str

    @property
    def env(self) -> str:
        return f"GEO_ENGINE_{self.name.upper()}"


SETTINGS: tuple[Setting, ...] = (
    Setting("db", "geo-engine.db", "path of the SQLite database file (created if missing)"),
    Setting("default_k", 1, "how many stores `nearest` returns when -k is not given"),
)


@dataclass(frozen=True)
class Settings:
    """geo-engine's settings; see :data:`SETTINGS` for each one's meaning and default."""

    db: str = "geo-engine.db"
    default_k: int = 1

    @classmethod
    def from_env(cls, environ: Mapping[str, str] | None = None, **overrides: Any) -> Settings:
        """Return settings from ``GEO_ENGINE_*`` variables, then ``overrides`` (None skipped)."""
        environ = os.environ if environ is None else environ
        values: dict[str, Any] = {}
        types = {f.name: type(f.default) for f in fields(cls)}
        for setting in SETTINGS:
            raw = environ.get(setting.env)
            if raw is None:
                continue
            try:
                values[setting.name] = types[setting.name](raw)
            except ValueError:
                raise InvalidInput(f"{setting.env}={raw!r} is not a valid "
                                   f"{types[setting.name].__name__}: {setting.help}") from None
        values.update({k: v for k, v in overrides.items() if v is not None})
        return replace(cls(), **values)
