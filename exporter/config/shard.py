"""`shard`: which part of every query's series this replica scores (`exporter.scoring.shard`).

`count` replicas split the series; `index` says which one this is: a number, or
`from-hostname`, the StatefulSet ordinal at the end of the pod's name (`augur-2` -> 2). The
index is never guessed when it is not given: a Deployment's pod names can end in digits too
(`augur-7c9d-24567`), and two replicas guessing the same index would score the same series
twice and leave another share unscored.
"""

from __future__ import annotations

import os
import re
import socket
from collections.abc import Mapping

from pydantic import Field, PrivateAttr, ValidationInfo, field_validator

from exporter.config.base import Strict

FROM_HOSTNAME = "from-hostname"
HOSTNAME_KEY = "augur_hostname"
"""The validation context's key for the host name (the loader takes it from `HOSTNAME`)."""
_ORDINAL = re.compile(r"-(0|[1-9][0-9]*)$")


def hostname(environ: Mapping[str, str]) -> str:
    """The pod's name: `HOSTNAME` as Kubernetes sets it, else the system's host name."""
    return environ.get("HOSTNAME") or socket.gethostname()


def ordinal(name: str) -> int:
    """The StatefulSet ordinal at the end of a pod name (`augur-2` -> 2); ValueError if none.

    A fully qualified name (a pod with `setHostnameAsFQDN`) is read by its first label.
    """
    found = _ORDINAL.search(name.split(".", 1)[0])
    if found is None:
        raise ValueError(
            f"{FROM_HOSTNAME}: the host name {name!r} does not end in a StatefulSet ordinal "
            "(-0, -1, ...); run augur as a StatefulSet or give the index as a number"
        )
    return int(found.group(1))


class ShardConfig(Strict):
    """Replica `index` of `count`; one replica (the default) scores everything."""

    count: int = Field(1, ge=1, le=1024)
    index: int | str | None = Field(None, validate_default=True)
    _index: int = PrivateAttr(default=0)

    @field_validator("index", mode="before")
    @classmethod
    def _number(cls, value: object) -> object:
        # From a flag or the environment a number comes as a string.
        if isinstance(value, str) and value.strip().isdigit():
            return int(value)
        if isinstance(value, bool) or (isinstance(value, str) and value != FROM_HOSTNAME):
            raise ValueError(f"must be a number or {FROM_HOSTNAME}, got {value!r}")
        return value

    @field_validator("index")
    @classmethod
    def _index_in_range(cls, value: int | str | None, info: ValidationInfo) -> int | str | None:
        count = info.data.get("count")
        if not isinstance(count, int):
            return value  # count itself is invalid, and says so
        if value is None:
            if count > 1:
                raise ValueError(
                    f"required when shard.count is {count}: give this replica's index, 0 to "
                    f"{count - 1}, or {FROM_HOSTNAME} in a StatefulSet"
                )
            return value
        number = value if isinstance(value, int) else ordinal(_context_hostname(info))
        if not 0 <= number < count:
            given = f"{number}" if isinstance(value, int) else f"{number} (from the host name)"
            raise ValueError(
                f"is {given}, but shard.count is {count}: the index must be 0 to {count - 1}"
            )
        return value

    def model_post_init(self, context: object) -> None:
        """Resolve `from-hostname` once, so the index cannot change under a running process."""
        if isinstance(self.index, int):
            self._index = self.index
        elif self.index == FROM_HOSTNAME:
            name = context.get(HOSTNAME_KEY) if isinstance(context, Mapping) else None
            self._index = ordinal(name if isinstance(name, str) else hostname(os.environ))

    def resolved_index(self) -> int:
        """This replica's index, a number (0 with one replica)."""
        return self._index


def _context_hostname(info: ValidationInfo) -> str:
    context = info.context if isinstance(info.context, Mapping) else {}
    name = context.get(HOSTNAME_KEY)
    return name if isinstance(name, str) else hostname(os.environ)
