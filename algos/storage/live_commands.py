"""The kill switch's transport: operator commands to the live actors, through the store.

``raytrade live halt|flatten|resume`` and ``raytrade live reconcile --adopt``, and the
dashboard's Live page behind its login, write one immutable object per command under
``live/commands/`` (``keys.live_command_key``: the keys sort by issue time). Every live
actor polls the folder about once a second and before every bar's orders, and applies
each command whose id its journal has not recorded yet (by id, not by time, so a command
from a machine whose clock is behind is applied too), journaling who issued it; so a
command acts within one bar on every actor, whichever machine issued it, and survives an
actor's restart. A fresh journal takes over only the standing halt of the history. The
store is the one thing every actor, the command line and the dashboard already share, so
no extra service has to be running for the kill switch to work.

Actions:
- ``halt``: send no more orders (open orders are cancelled); positions stay.
- ``flatten``: close the positions, then halt.
- ``resume``: lift an operator's halt or flatten, a ban's halt or the daily loss halt
  (not a reconciliation halt: that one needs ``adopt``).
- ``adopt``: accept the exchange's position as the journal's after a reconciliation
  mismatch, and lift that halt only (an operator's halt stays). Only for named actors.
"""

from __future__ import annotations

import json
import secrets
import time
from collections.abc import Collection
from dataclasses import asdict, dataclass
from typing import Literal, cast, get_args

from raytrade.algos.storage import keys
from raytrade.algos.storage.blobstore import BlobStore, NotFoundError
from raytrade.envs.errors import ConfigError

LiveAction = Literal["halt", "flatten", "resume", "adopt"]
ACTIONS: tuple[str, ...] = get_args(LiveAction)


@dataclass(frozen=True)
class LiveCommand:
    """One operator command (module docstring)."""

    id: str
    """``<ms>-<token>``: orders commands by issue time."""
    action: LiveAction
    actors: tuple[str, ...]
    """The actors it is for; empty: every live actor (not allowed for ``adopt``)."""
    by: str
    """Who issued it (a person, never a key)."""
    reason: str
    at_ms: int
    """When it was issued (ms UTC)."""

    def applies_to(self, actor: str) -> bool:
        """Whether ``actor`` must apply it."""
        return not self.actors or actor in self.actors

    def to_json(self) -> bytes:
        """The stored object."""
        return json.dumps(asdict(self), sort_keys=True).encode()

    @classmethod
    def from_json(cls, data: bytes, source: str) -> LiveCommand:
        """Parse a stored command; ``ConfigError`` naming ``source`` and the field."""
        try:
            raw = json.loads(data)
        except (json.JSONDecodeError, UnicodeDecodeError) as exc:
            raise ConfigError(f"{source}: not JSON ({exc})") from None
        if not isinstance(raw, dict):
            raise ConfigError(f"{source}: a command is a JSON object")
        expected = {"id": str, "action": str, "actors": list, "by": str, "reason": str,
                    "at_ms": int}
        for name, kind in expected.items():
            if not isinstance(raw.get(name), kind):
                raise ConfigError(f"{source}: field {name!r} must be a "
                                  f"{kind.__name__}, got {raw.get(name)!r}")
        extra = set(raw) - set(expected)
        if extra:
            raise ConfigError(f"{source}: unknown fields {sorted(extra)}")
        return _checked(raw["id"], raw["action"], tuple(raw["actors"]), raw["by"],
                        raw["reason"], raw["at_ms"], source)


def _checked(cid: str, action: str, actors: tuple[str, ...], by: str, reason: str,
             at_ms: int, source: str) -> LiveCommand:
    if action not in ACTIONS:
        raise ConfigError(f"{source}: action {action!r} is not one of {', '.join(ACTIONS)}")
    for actor in actors:
        if not isinstance(actor, str):
            raise ConfigError(f"{source}: actor names are strings, got {actor!r}")
        keys.live_prefix(actor)
    if action == "adopt" and not actors:
        raise ConfigError(f"{source}: adopt accepts one actor's exchange state: name the "
                          "actors (--actor)")
    if not by.strip():
        raise ConfigError(f"{source}: a command says who issued it (by)")
    return LiveCommand(cid, cast(LiveAction, action), actors, by, reason, at_ms)


def issue_command(blobs: BlobStore, action: str, *, by: str, reason: str = "",
                  actors: tuple[str, ...] = (), at_ms: int | None = None) -> LiveCommand:
    """Write one command (validated first) and return it."""
    at = int(time.time() * 1000) if at_ms is None else at_ms
    token = secrets.token_hex(4)
    command = _checked(f"{at:013d}-{token}", action, actors, by, reason, at,
                       f"{action} command")
    blobs.put(keys.live_command_key(at, token), command.to_json(), if_none_match=True)
    return command


def read_commands(blobs: BlobStore, after: str | None = None, *,
                  skip: Collection[str] = ()) -> tuple[list[LiveCommand], list[str]]:
    """Commands issued after the command id ``after`` (all if None), oldest first, less
    those whose id is in ``skip`` (not even fetched: an actor polling every second reads
    only what is new to it), and an error for each stored object that is not a valid
    command (named by key: it is skipped, and the caller reports it)."""
    commands: list[LiveCommand] = []
    errors: list[str] = []
    for key in blobs.list(keys.LIVE_COMMANDS):
        name = key.rsplit("/", 1)[-1].removesuffix(".json")
        if (after is not None and name <= after) or name in skip:
            continue
        try:
            command = LiveCommand.from_json(blobs.get(key).data, key)
        except NotFoundError:
            continue
        except ConfigError as exc:
            errors.append(str(exc))
            continue
        if command.id != name:
            errors.append(f"{key}: id {command.id!r} does not match its key")
            continue
        commands.append(command)
    return commands, errors
