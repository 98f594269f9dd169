"""Versioned policy bundles and the channels that point at them.

Layout under the store root (any ``BlobStore``: a folder or S3)::

    claims/vNNNNNN                 version numbers, each created once (create-if-absent)
    policies/vNNNNNN/              immutable bundles; manifest.json written last
    channels/<name>.json           candidate | paper | live: a pointer, moved by CAS
    channels/moves/<ms>-<name>-<id>.json   one record per move: who, when, from, to, why

(key names: ``keys.py``).

Publishing claims the next free number with a create-if-absent write (two publishers can
never get the same number), then writes the bundle with the manifest last; a version is
visible only once its manifest exists, so a trainer that dies mid-upload leaves nothing a
reader would load. Channel moves are compare-and-swap on the pointer's entity tag: of two
writers racing, exactly one wins, the other gets ``PreconditionFailedError``. A channel moves
to an older version only as an explicit rollback (the pointer says so, and executors obey
it only then).

Rollback without an explicit target walks back through the versions the channel served
(newest first) and skips every version that was itself rolled back from: live v1 -> v2
-> v3, a rollback gives v2, a second rollback gives v1 (not v3 again). The pointer carries
that trail (``served``, ``rolled_back_from``), so it moves atomically with the pointer's
compare-and-swap and never depends on the move log being complete. A deliberate move to
a version (promote, publish, force, or a rollback naming it with ``to``) clears it from
``rolled_back_from``: the operator judged it good again.

Retention keeps the newest K versions and every version a channel points to, deleting
the manifest first so a half-deleted version is invisible, never torn.
"""

from __future__ import annotations

import contextlib
import getpass
import json
import os
import re
import socket
import time
import uuid
from collections.abc import Callable, Mapping
from dataclasses import asdict, dataclass, replace
from typing import Any

from raytrade.algos.manifest import MANIFEST, PolicyRejectedError, parse_manifest, verify_bundle
from raytrade.algos.storage import keys
from raytrade.algos.storage.blobstore import (
    BlobStore,
    NotFoundError,
    PreconditionFailedError,
    open_blobstore,
)
from raytrade.algos.storage.keys import version_name as version_name
from raytrade.envs.errors import ConfigError

CHANNELS = ("candidate", "paper", "live")
_VERSION_RE = re.compile(r"^v(\d{6,})$")
MOVE_KINDS = ("publish", "promote", "rollback", "force")
TRAIL = 64
"""Versions a pointer remembers in ``served`` (newest last): how far rollback can walk."""


def parse_version(text: str | int) -> int:
    """42 from ``v000042``, ``v42``, ``42`` or 42; ``ConfigError`` otherwise."""
    if isinstance(text, int):
        return text
    m = re.fullmatch(r"v?(\d+)", text.strip())
    if not m:
        raise ConfigError(f"bad policy version {text!r}: expected vNNNNNN or a number")
    return int(m.group(1))


def default_actor() -> str:
    """``user@host`` of this process, recorded with every channel move."""
    try:
        user = getpass.getuser()
    except (KeyError, OSError):
        user = str(os.getuid())
    return f"{user}@{socket.gethostname()}"


@dataclass(frozen=True)
class ChannelPointer:
    """Where a channel points, and the move that put it there."""

    channel: str
    version: int
    previous: int | None
    kind: str
    by: str
    reason: str
    moved_ms: int
    etag: str = ""
    served: tuple[int, ...] = ()
    """Versions this channel served, each once at its latest position, oldest first (at
    most ``TRAIL``; the current version last)."""
    rolled_back_from: tuple[int, ...] = ()
    """Versions of ``served`` that a rollback moved away from: a default rollback never
    returns to them."""

    def rollback_candidates(self) -> list[int]:
        """Where a rollback without an explicit target may go, best first: the served
        versions, newest first, except the current one and those rolled back from."""
        bad = set(self.rolled_back_from) | {self.version}
        return [v for v in reversed(self.served) if v not in bad]


@dataclass(frozen=True)
class Move:
    """One logged channel move."""

    channel: str
    from_version: int | None
    to_version: int
    kind: str
    by: str
    reason: str
    at_ms: int


class OlderVersionError(ConfigError):
    """A channel was asked to move backwards without an explicit rollback."""


class PolicyStore:
    """Bundles and channels under one store URI (module docstring)."""

    def __init__(self, store: str | BlobStore, *, clock: Callable[[], float] = time.time,
                 actor: str | None = None, endpoint_url: str | None = None) -> None:
        self.blobs = store if isinstance(store, BlobStore) else open_blobstore(
            store, endpoint_url=endpoint_url)
        self.clock = clock
        self.actor = actor or default_actor()

    def acting_as(self, actor: str) -> PolicyStore:
        """The same store, with channel moves recorded as made by ``actor`` (for a server
        acting for a logged-in person, such as the dashboard)."""
        if not actor.strip():
            raise ConfigError("a channel move needs a named actor")
        return PolicyStore(self.blobs, clock=self.clock, actor=actor)

    @property
    def uri(self) -> str:
        return self.blobs.uri

    def _now_ms(self) -> int:
        return int(self.clock() * 1000)

    # -- versions ---------------------------------------------------------------------
    def versions(self) -> list[int]:
        """Complete (manifest present) versions, ascending."""
        out = set()
        for key in self.blobs.list(keys.POLICIES):
            parts = key.split("/")
            if len(parts) == 3 and parts[2] == MANIFEST and (m := _VERSION_RE.match(parts[1])):
                out.add(int(m.group(1)))
        return sorted(out)

    def latest(self) -> int | None:
        """The newest complete version, or None."""
        v = self.versions()
        return v[-1] if v else None

    def _claimed(self) -> list[int]:
        out = []
        for key in self.blobs.list(keys.CLAIMS):
            m = _VERSION_RE.match(key.split("/")[-1])
            if m:
                out.append(int(m.group(1)))
        return out

    def manifest(self, version: int) -> dict[str, Any]:
        """The parsed manifest of ``version``; ``NotFoundError`` if it is not (or no longer)
        complete, ``PolicyRejectedError`` if it does not parse."""
        blob = self.blobs.get(keys.policy_prefix(version) + MANIFEST)
        return parse_manifest(blob.data, version)

    def files(self, version: int) -> dict[str, bytes]:
        """Every file of ``version`` the manifest names, plus the manifest; unverified
        (``verify_bundle`` or ``Policy`` checks them). ``NotFoundError`` if it disappeared."""
        prefix = keys.policy_prefix(version)
        manifest = self.blobs.get(prefix + MANIFEST).data
        out = {MANIFEST: manifest}
        try:
            names = list(json.loads(manifest).get("files", {}))
        except (UnicodeDecodeError, json.JSONDecodeError, AttributeError):
            return out  # the caller's verification rejects it with the reason
        for name in names:
            if "/" in name or name in (MANIFEST, "", ".", ".."):
                raise PolicyRejectedError(f"manifest names a bad file {name!r}", version)
            with contextlib.suppress(NotFoundError):  # verification reports it missing
                out[name] = self.blobs.get(prefix + name).data
        return out

    def publish(self, files: Mapping[str, bytes], *, channel: str | None = "candidate",
                reason: str = "published by training") -> int:
        """Store a bundle as the next version (its manifest gets the number) and, if
        ``channel``, point that channel at it. Returns the version."""
        manifest = verify_bundle(files)  # never publish what a reader would reject
        claimed = set(self._claimed()) | set(self.versions())
        version = max(claimed, default=0) + 1
        while True:
            try:
                self.blobs.put(keys.claim_key(version),
                               json.dumps({"by": self.actor, "at_ms": self._now_ms()}).encode(),
                               if_none_match=True)
                break
            except PreconditionFailedError:
                version += 1  # another publisher took it
        manifest["version"] = version
        out = dict(files)
        out[MANIFEST] = json.dumps(manifest, indent=1, allow_nan=False).encode()
        self.blobs.put_tree(keys.policy_prefix(version), out, last=MANIFEST)
        if channel is not None:
            self.move(channel, version, kind="publish", reason=reason)
        return version

    # -- channels ---------------------------------------------------------------------
    @staticmethod
    def _check_channel(channel: str) -> None:
        if channel not in CHANNELS:
            raise ConfigError(f"unknown channel {channel!r}: one of {', '.join(CHANNELS)}")

    def channel(self, channel: str) -> ChannelPointer | None:
        """The channel's pointer, or None if it was never set."""
        self._check_channel(channel)
        try:
            blob = self.blobs.get(keys.channel_key(channel))
        except NotFoundError:
            return None
        try:
            data = json.loads(blob.data)
            version = int(data["version"])
            previous = None if data.get("previous") is None else int(data["previous"])
            kind = str(data["kind"])
            if "served" in data:
                served = tuple(int(v) for v in data["served"])
                rolled = tuple(int(v) for v in data.get("rolled_back_from", []))
            else:  # a pointer written before the trail existed: what it says is all
                served = tuple(v for v in (previous, version) if v is not None)
                rolled = (previous,) if kind == "rollback" and previous is not None else ()
            if not served or served[-1] != version:
                raise ValueError(f"served {list(served)} does not end at version {version}")
            return ChannelPointer(channel=channel, version=version, previous=previous,
                                  kind=kind, by=str(data["by"]), reason=str(data["reason"]),
                                  moved_ms=int(data["moved_ms"]), etag=blob.etag,
                                  served=served, rolled_back_from=rolled)
        except (UnicodeDecodeError, json.JSONDecodeError, KeyError, TypeError,
                ValueError) as exc:
            raise ConfigError(f"{self.uri}/channels/{channel}.json is malformed: {exc}") \
                from exc

    def move(self, channel: str, version: int, *, kind: str = "promote", reason: str,
             expected: ChannelPointer | str | None = "current",
             explicit: bool = True) -> ChannelPointer:
        """Point ``channel`` at ``version`` by compare-and-swap and log the move.

        ``expected``: the pointer the caller saw (None: the channel must be unset);
        by default the pointer read just now. ``PreconditionFailedError`` if the channel moved
        meanwhile; ``OlderVersionError`` if ``version`` is older than the current one and
        ``kind`` is not ``rollback``; ``NotFoundError`` if the version is not complete.
        ``explicit``: the caller named ``version`` (clears it from ``rolled_back_from``);
        False only for a default rollback target.
        """
        self._check_channel(channel)
        if kind not in MOVE_KINDS:
            raise ConfigError(f"unknown move kind {kind!r}")
        if not reason.strip():
            raise ConfigError("a channel move needs a reason")
        self.manifest(version)  # NotFoundError unless complete
        current = self.channel(channel) if expected == "current" else expected
        assert not isinstance(current, str)
        if current is not None and version < current.version and kind != "rollback":
            raise OlderVersionError(f"{channel} is at {version_name(current.version)}; moving it "
                               f"back to {version_name(version)} needs an explicit rollback")
        served, rolled = _trail(current, version, kind, explicit)
        pointer = ChannelPointer(channel=channel, version=version,
                                 previous=current.version if current else None, kind=kind,
                                 by=self.actor, reason=reason, moved_ms=self._now_ms(),
                                 served=served, rolled_back_from=rolled)
        body = {k: list(v) if isinstance(v, tuple) else v
                for k, v in asdict(pointer).items() if k != "etag"}
        data = json.dumps(body, indent=1).encode()
        key = keys.channel_key(channel)
        if current is None:
            etag = self.blobs.put(key, data, if_none_match=True)
        else:
            etag = self.blobs.put(key, data, if_match=current.etag)
        move = Move(channel=channel, from_version=pointer.previous, to_version=version,
                    kind=kind, by=self.actor, reason=reason, at_ms=pointer.moved_ms)
        self.blobs.put(keys.move_key(pointer.moved_ms, channel, uuid.uuid4().hex[:8]),
                       json.dumps(asdict(move)).encode(), if_none_match=True)
        return replace(pointer, etag=etag)

    def history(self, channel: str | None = None) -> list[Move]:
        """Logged moves, oldest first (all channels, or one)."""
        out = []
        for key in self.blobs.list(keys.MOVES):
            try:
                data = json.loads(self.blobs.get(key).data)
                move = Move(**data)
            except (NotFoundError, json.JSONDecodeError, TypeError):
                continue
            if channel is None or move.channel == channel:
                out.append(move)
        return sorted(out, key=lambda m: m.at_ms)

    def rollback(self, channel: str, *, to: int | None = None, reason: str) -> ChannelPointer:
        """Move ``channel`` back to ``to``; logged as a rollback. Without ``to``: the newest
        version the channel served that is not the current one and was not itself rolled
        back from (``ChannelPointer.rollback_candidates``), so repeated rollbacks keep walking
        back (v3 -> v2 -> v1) instead of bouncing between the last two; versions retention
        deleted are skipped."""
        current = self.channel(channel)
        if current is None:
            raise ConfigError(f"channel {channel} was never set: nothing to roll back")
        complete = set(self.versions())  # retention may have deleted an old one
        target = to if to is not None else next(
            (v for v in current.rollback_candidates() if v in complete), None)
        if target is None:
            served = ", ".join(version_name(v) for v in current.served) or "none"
            bad = ", ".join(version_name(v) for v in current.rolled_back_from) or "none"
            raise ConfigError(f"{channel} has no earlier version to roll back to (served: "
                              f"{served}; rolled back from: {bad}); give --to")
        if target == current.version and current.kind == "rollback":
            raise ConfigError(f"{channel} is already rolled back to {version_name(target)}")
        # (re-pointing at the current version as a rollback makes followers that ignored
        # it as a stale, non-rollback move obey it)
        return self.move(channel, target, kind="rollback", reason=reason, expected=current,
                         explicit=to is not None)

    # -- retention --------------------------------------------------------------------
    def retain(self, keep: int) -> list[int]:
        """Delete all but the newest ``keep`` versions, never one a channel points to.
        Returns the deleted versions. Claims stay, so numbers are never reused."""
        if keep < 1:
            raise ConfigError("retention must keep at least one version")
        versions = self.versions()
        pinned = {p.version for c in CHANNELS if (p := self.channel(c)) is not None}
        doomed = [v for v in versions[:-keep] if v not in pinned]
        for v in doomed:
            prefix = keys.policy_prefix(v)
            self.blobs.delete(prefix + MANIFEST)  # invisible first, then the rest
            for key in self.blobs.list(prefix):
                self.blobs.delete(key)
        return doomed


def _trail(current: ChannelPointer | None, version: int, kind: str,
           explicit: bool) -> tuple[tuple[int, ...], tuple[int, ...]]:
    """``served`` and ``rolled_back_from`` after moving from ``current`` to ``version``."""
    served = [v for v in (current.served if current else ()) if v != version] + [version]
    served = served[-TRAIL:]
    rolled = set(current.rolled_back_from) if current else set()
    if kind == "rollback" and current is not None and current.version != version:
        rolled.add(current.version)
    if explicit:
        rolled.discard(version)
    return tuple(served), tuple(sorted(v for v in rolled if v in served))
