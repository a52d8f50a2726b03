"""What every section of the configuration shares: the strict base model and `ConfigError`.

A pydantic error is written the one way a user reads it, `path: message`
(`queries[2].detectors: unknown detector "arma"`), by `located`.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any

from pydantic import BaseModel, ConfigDict


class Strict(BaseModel):
    """Base model: unknown keys are errors, and a loaded setting never changes."""

    model_config = ConfigDict(extra="forbid", frozen=True)


class ConfigError(Exception):
    """The configuration is invalid; `problems` lists each one with its path."""

    def __init__(self, problems: list[str], source: str = "") -> None:
        self.problems = problems
        self.source = source
        where = f"{source}: " if source else ""
        super().__init__(where + "invalid configuration:\n  " + "\n  ".join(problems))


def error_path(loc: Iterable[int | str]) -> str:
    """A pydantic error location as the file writes it: `queries[2].detectors`."""
    out = ""
    for part in loc:
        if isinstance(part, int):
            out += f"[{part}]"
        elif str(part).startswith(("function-", "dict[", "list[")):
            continue  # pydantic's names for validators and containers, not the user's keys
        else:
            out += f".{part}" if out else str(part)
    return out or "(top level)"


def error_message(error: Mapping[str, Any]) -> str:
    """A pydantic error's message in the user's terms."""
    kind = error.get("type")
    if kind == "extra_forbidden":
        return "unknown setting (check the spelling; see the configuration reference)"
    if kind == "missing":
        return "required setting is missing"
    msg = str(error.get("msg", ""))
    return msg.removeprefix("Value error, ")


def located(errors: Iterable[Mapping[str, Any]], prefix: str = "") -> list[str]:
    """Each pydantic error as `path: message`, its path under `prefix` if one is given."""
    lead = f"{prefix}." if prefix else ""
    return [f"{lead}{error_path(e['loc'])}: {error_message(e)}" for e in errors]
