"""What every section of the configuration shares: the strict base model and `ConfigError`.

A pydantic error is written the one way a user reads it, `path: message`
(`queries[2].detectors: unknown detector "arma"`), by `located`: the configuration, backtest's
query file, an ensemble's members and the webhook's payloads all report through it.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any

from pydantic import BaseModel, ConfigDict


class Strict(BaseModel):
    """Base model: unknown keys are errors, a loaded setting never changes, and a number is
    finite (YAML's `.nan` and `.inf` are floats, and no setting means anything by them)."""

    model_config = ConfigDict(extra="forbid", frozen=True, allow_inf_nan=False)


class ConfigError(Exception):
    """The configuration is invalid; `problems` lists each one with its path."""

    def __init__(self, problems: list[str], source: str = "") -> None:
        self.problems = problems
        self.source = source
        where = f"{source}: " if source else ""
        super().__init__(where + "invalid configuration:\n  " + "\n  ".join(problems))


def error_path(loc: Iterable[int | str], top: str = "(top level)") -> str:
    """A pydantic error location as the file writes it: `queries[2].detectors`; `top` if empty."""
    out = ""
    for part in loc:
        if isinstance(part, int):
            out += f"[{part}]"
        elif str(part).startswith(("function-", "dict[", "list[")):
            continue  # pydantic's names for validators and containers, not the user's keys
        else:
            out += f".{part}" if out else str(part)
    return out or top


def error_message(error: Mapping[str, Any], noun: str = "setting") -> str:
    """A pydantic error's message in the user's terms (`noun`: what a key is, setting or field)."""
    kind = error.get("type")
    if kind == "extra_forbidden":
        return f"unknown {noun} (check the spelling; see the configuration reference)"
    if kind == "missing":
        return f"required {noun} is missing"
    msg = str(error.get("msg", ""))
    return msg.removeprefix("Value error, ")


def located(
    errors: Iterable[Mapping[str, Any]],
    prefix: str = "",
    *,
    noun: str = "setting",
    top: str = "(top level)",
) -> list[str]:
    """Each pydantic error as `path: message`, its path under `prefix` if one is given.

    `noun` names a key in the message (a payload has fields, not settings); `top` stands for
    an empty path.
    """
    out = []
    for error in errors:
        path = error_path(error["loc"], top="")
        if prefix:
            path = prefix + (f".{path}" if path and not path.startswith("[") else path)
        out.append(f"{path or top}: {error_message(error, noun)}")
    return out
