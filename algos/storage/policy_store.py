"""Versioned policy bundles and the channels that point at them.

Layout under the store root (any ``BlobStore``: a folder or S3)::

    claims/vNNNNNN                 version numbers, each created once (create-if-absent)
    policies/vNNNNNN/              immutable bundles; manifest.json written last
    channels/<name>.json           candidate | paper | live: a pointer, moved by CAS
    channels/moves/<ms>-<name>-<id>.json   one record per move: who, when, from, to, why

Publishing claims the next free number with a create-if-absent write (two publishers can
never get the same number), then writes the bundle with the manifest last; a version is
visible only once its manifest exists, so a trainer that dies mid-upload leaves nothing a
reader would load. Channel moves are compare-and-swap on the pointer's entity tag: of two
writers racing, exactly one wins, the other gets ``PreconditionFailedError``. A channel moves
to an older version only as an explicit rollback (the pointer says so, and executors obey
it only then). Retention keeps the newest K versions and every version a channel points
to, deleting the manifest first so a half-deleted version is invisible, never torn.
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
from dataclasses import asdict, dataclass
from typing import Any

from raytrade.algos.manifest import MANIFEST, PolicyRejectedError, parse_manifest, verify_bundle
from raytrade.algos.storage.blobstore import (
    BlobStore,
    NotFoundError,
    PreconditionFailedError,
    open_blobstore,
)
from raytrade.envs.errors import ConfigError

CHANNELS = ("candidate", "paper", "live")
_VERSION_RE = re.compile(r"^v(\d{6,})$")
MOVE_KINDS = ("publish", "promote", "rollback", "force")


def version_name(version: int) -> str:
    """``v000042`` for 42."""
    return f"v{version:06d}"


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

    @property
    def uri(self) -> str:
        return self.blobs.uri

    def _now_ms(self) -> int:
        return int(self.clock() * 1000)

    # -- versions ---------------------------------------------------------------------
    def versions(self) -> list[int]:
        """Complete (manifest present) versions, ascending."""
        out = set()
        for key in self.blobs.list("policies/"):
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
        for key in self.blobs.list("claims/"):
            m = _VERSION_RE.match(key.split("/")[-1])
            if m:
                out.append(int(m.group(1)))
        return out

    def manifest(self, version: int) -> dict[str, Any]:
        """The parsed manifest of ``version``; ``NotFoundError`` if it is not (or no longer)
        complete, ``PolicyRejectedError`` if it does not parse."""
        blob = self.blobs.get(f"policies/{version_name(version)}/{MANIFEST}")
        return parse_manifest(blob.data, version)

    def files(self, version: int) -> dict[str, bytes]:
        """Every file of ``version`` the manifest names, plus the manifest; unverified
        (``verify_bundle`` or ``Policy`` checks them). ``NotFoundError`` if it disappeared."""
        prefix = f"policies/{version_name(version)}/"
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
                self.blobs.put(f"claims/{version_name(version)}",
                               json.dumps({"by": self.actor, "at_ms": self._now_ms()}).encode(),
                               if_none_match=True)
                break
            except PreconditionFailedError:
                version += 1  # another publisher took it
        manifest["version"] = version
        out = dict(files)
        out[MANIFEST] = json.dumps(manifest, indent=1, allow_nan=False).encode()
        self.blobs.put_tree(f"policies/{version_name(version)}/", out, last=MANIFEST)
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
            blob = self.blobs.get(f"channels/{channel}.json")
        except NotFoundError:
            return None
        try:
            data = json.loads(blob.data)
            return ChannelPointer(channel=channel, version=int(data["version"]),
                                  previous=None if data.get("previous") is None
                                  else int(data["previous"]), kind=str(data["kind"]),
                                  by=str(data["by"]), reason=str(data["reason"]),
                                  moved_ms=int(data["moved_ms"]), etag=blob.etag)
        except (UnicodeDecodeError, json.JSONDecodeError, KeyError, TypeError,
                ValueError) as exc:
            raise ConfigError(f"{self.uri}/channels/{channel}.json is malformed: {exc}") \
                from exc

    def move(self, channel: str, version: int, *, kind: str = "promote", reason: str,
             expected: ChannelPointer | str | None = "current") -> ChannelPointer:
        """Point ``channel`` at ``version`` by compare-and-swap and log the move.

        ``expected``: the pointer the caller saw (None: the channel must be unset);
        by default the pointer read just now. ``PreconditionFailedError`` if the channel moved
        meanwhile; ``OlderVersionError`` if ``version`` is older than the current one and
        ``kind`` is not ``rollback``; ``NotFoundError`` if the version is not complete.
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
        pointer = ChannelPointer(channel=channel, version=version,
                                 previous=current.version if current else None, kind=kind,
                                 by=self.actor, reason=reason, moved_ms=self._now_ms())
        body = {k: v for k, v in asdict(pointer).items() if k != "etag"}
        data = json.dumps(body, indent=1).encode()
        key = f"channels/{channel}.json"
        if current is None:
            etag = self.blobs.put(key, data, if_none_match=True)
        else:
            etag = self.blobs.put(key, data, if_match=current.etag)
        move = Move(channel=channel, from_version=pointer.previous, to_version=version,
                    kind=kind, by=self.actor, reason=reason, at_ms=pointer.moved_ms)
        self.blobs.put(f"channels/moves/{pointer.moved_ms:013d}-{channel}-"
                       f"{uuid.uuid4().hex[:8]}.json", json.dumps(asdict(move)).encode(),
                       if_none_match=True)
        return ChannelPointer(**{**body, "etag": etag})

    def history(self, channel: str | None = None) -> list[Move]:
        """Logged moves, oldest first (all channels, or one)."""
        out = []
        for key in self.blobs.list("channels/moves/"):
            try:
                data = json.loads(self.blobs.get(key).data)
                move = Move(**data)
            except (NotFoundError, json.JSONDecodeError, TypeError):
                continue
            if channel is None or move.channel == channel:
                out.append(move)
        return sorted(out, key=lambda m: m.at_ms)

    def rollback(self, channel: str, *, to: int | None = None, reason: str) -> ChannelPointer:
        """Move ``channel`` back to ``to`` (default: the version before the current one,
        from the pointer's ``previous``); logged as a rollback."""
        current = self.channel(channel)
        if current is None:
            raise ConfigError(f"channel {channel} was never set: nothing to roll back")
        target = to if to is not None else current.previous
        if target is None:
            raise ConfigError(f"{channel} has no previous version; give --to")
        if target == current.version and current.kind == "rollback":
            raise ConfigError(f"{channel} is already rolled back to {version_name(target)}")
        # (re-pointing at the current version as a rollback makes followers that ignored
        # it as a stale, non-rollback move obey it)
        return self.move(channel, target, kind="rollback", reason=reason, expected=current)

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
            prefix = f"policies/{version_name(v)}/"
            self.blobs.delete(prefix + MANIFEST)  # invisible first, then the rest
            for key in self.blobs.list(prefix):
                self.blobs.delete(key)
        return doomed
