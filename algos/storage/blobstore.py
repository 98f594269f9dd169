"""Key-value blob storage under a store URI, with the conditional writes the store needs.

Two backends behind one small interface, chosen by URI:

- ``file:///path``: a folder. Writes go to a temporary file, are fsynced and renamed into
  place, so a reader never sees half an object. Compare-and-swap holds an ``fcntl`` lock
  on the key's lock file while it compares and replaces; create-if-absent uses
  ``os.link``, which fails when the name exists.
- ``s3://bucket/prefix``: boto3 with the standard credential chain and an optional
  endpoint URL (any S3-compatible server). Compare-and-swap and create-if-absent are S3
  conditional writes (``IfMatch`` / ``IfNoneMatch="*"``); the server answers 412 to the
  loser.

Throttling and transient S3 errors (``503 SlowDown``, 500/502/504, timeouts) are retried
by botocore's ``standard`` retry mode, which this module configures and does not
duplicate: up to ``max_attempts`` attempts in all (default ``DEFAULT_S3_ATTEMPTS``, or
``$RAYTRADE_S3_MAX_ATTEMPTS``), sleeping ``rand(0, 1) * min(2 ** i, 20)`` seconds before
retry ``i`` for throttling (bounded exponential backoff with full jitter; 50 ms base for
other transient errors), and drawing on a client-wide retry quota, so a throttled store is
not hammered. Past that budget the operation raises ``StoreUnavailableError`` naming the
key, the S3 code and the attempts made; callers treat it as transient (the paper export
tries again at its next export, the dashboard at its next refresh).

Entity tags are opaque strings: the sha256 of the content locally, S3's ETag remotely.
Errors: ``NotFoundError`` (no such key), ``PreconditionFailedError`` (a conditional write lost),
``StoreUnavailableError`` (the backend could not be reached or refused; transient, retry).
"""

from __future__ import annotations

import contextlib
import errno
import fcntl
import hashlib
import os
import shutil
import uuid
from abc import ABC, abstractmethod
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import urlparse

from raytrade.envs.errors import ConfigError, RaytradeError, TemporaryError


class StoreError(RaytradeError):
    """A store operation failed."""


class NotFoundError(StoreError):
    """The key does not exist (or was deleted meanwhile)."""


class PreconditionFailedError(StoreError):
    """A conditional write lost: the object changed, or already exists."""


class StoreUnavailableError(StoreError, TemporaryError):
    """The backend could not be reached, throttled us or failed; retry later."""


@dataclass(frozen=True)
class Blob:
    """An object's bytes and its entity tag."""

    data: bytes
    etag: str


class BlobStore(ABC):
    """Bytes under ``/``-separated keys relative to the store root."""

    uri: str

    @abstractmethod
    def get(self, key: str) -> Blob:
        """The object's bytes and entity tag; ``NotFoundError`` if absent."""

    @abstractmethod
    def put(self, key: str, data: bytes, *, if_match: str | None = None,
            if_none_match: bool = False) -> str:
        """Write ``data`` (atomically: readers see the old or the new object) and return
        the new entity tag. ``if_match``: only if the current tag equals it;
        ``if_none_match``: only if the key is absent. ``PreconditionFailedError`` otherwise."""

    @abstractmethod
    def list(self, prefix: str) -> list[str]:
        """Every key under ``prefix`` (a folder-like prefix ending in ``/``), sorted."""

    @abstractmethod
    def delete(self, key: str) -> None:
        """Remove the key; absent keys are not an error."""

    def put_tree(self, prefix: str, files: Mapping[str, bytes], last: str) -> None:
        """Write a folder of objects with ``last`` written after all the others, so its
        presence means the rest is complete. Backends may do better (local: rename)."""
        for name, data in files.items():
            if name != last:
                self.put(f"{prefix}{name}", data)
        self.put(f"{prefix}{last}", files[last])

    def exists(self, key: str) -> bool:
        """Whether the key exists now."""
        try:
            self.get(key)
        except NotFoundError:
            return False
        return True


def _sha(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def _check_key(key: str) -> None:
    parts = key.split("/")
    if not key or key.startswith("/") or any(p in ("", ".", "..") for p in parts[:-1]) \
            or parts[-1] in (".", ".."):
        raise ConfigError(f"bad store key {key!r}")


class LocalBlobStore(BlobStore):
    """A folder (``file:///path``); see the module docstring for the guarantees."""

    def __init__(self, root: str | Path) -> None:
        self.root = Path(root).resolve()
        self.root.mkdir(parents=True, exist_ok=True)
        self.uri = self.root.as_uri()

    def _path(self, key: str) -> Path:
        _check_key(key)
        return self.root / key

    def get(self, key: str) -> Blob:
        try:
            data = self._path(key).read_bytes()
        except (FileNotFoundError, NotADirectoryError, IsADirectoryError) as exc:
            raise NotFoundError(f"{self.uri}/{key}: not found") from exc
        return Blob(data, _sha(data))

    def _staged(self, path: Path, data: bytes) -> Path:
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_name(f".{path.name}.tmp-{uuid.uuid4().hex}")
        with open(tmp, "wb") as fh:
            fh.write(data)
            fh.flush()
            os.fsync(fh.fileno())
        return tmp

    @contextlib.contextmanager
    def _locked(self, path: Path) -> Iterator[None]:
        path.parent.mkdir(parents=True, exist_ok=True)
        with open(path.with_name(f".{path.name}.lock"), "a") as lock:
            fcntl.flock(lock.fileno(), fcntl.LOCK_EX)
            try:
                yield
            finally:
                fcntl.flock(lock.fileno(), fcntl.LOCK_UN)

    def put(self, key: str, data: bytes, *, if_match: str | None = None,
            if_none_match: bool = False) -> str:
        path = self._path(key)
        tmp = self._staged(path, data)
        try:
            if if_none_match:
                try:
                    os.link(tmp, path)  # atomic create-if-absent
                except FileExistsError as exc:
                    raise PreconditionFailedError(f"{self.uri}/{key} already exists") from exc
            elif if_match is not None:
                with self._locked(path):
                    try:
                        current = _sha(path.read_bytes())
                    except FileNotFoundError as exc:
                        raise PreconditionFailedError(f"{self.uri}/{key} does not exist") from exc
                    if current != if_match:
                        raise PreconditionFailedError(f"{self.uri}/{key} changed meanwhile")
                    os.replace(tmp, path)
            else:
                os.replace(tmp, path)
            _fsync_dir(path.parent)
        finally:
            tmp.unlink(missing_ok=True)
        return _sha(data)

    def list(self, prefix: str) -> list[str]:
        base = self.root / prefix if prefix else self.root
        if not base.is_dir():
            return []
        out = []
        for dirpath, dirnames, filenames in os.walk(base):
            dirnames[:] = [d for d in dirnames if not d.startswith(".")]
            for name in filenames:
                if not name.startswith("."):
                    out.append(str(Path(dirpath, name).relative_to(self.root)))
        return sorted(out)

    def delete(self, key: str) -> None:
        with contextlib.suppress(FileNotFoundError):
            self._path(key).unlink()

    def put_tree(self, prefix: str, files: Mapping[str, bytes], last: str) -> None:
        """Assemble the folder under a temporary name, fsync it, rename it into place;
        ``PreconditionFailedError`` if the folder exists already."""
        target = self._path(prefix.rstrip("/"))
        tmp = target.with_name(f".{target.name}.tmp-{uuid.uuid4().hex}")
        tmp.mkdir(parents=True)
        try:
            for name in [n for n in files if n != last] + [last]:
                (tmp / name).parent.mkdir(parents=True, exist_ok=True)
                with open(tmp / name, "wb") as fh:
                    fh.write(files[name])
                    fh.flush()
                    os.fsync(fh.fileno())
            _fsync_dir(tmp)
            try:
                os.rename(tmp, target)  # fails if target exists and is not empty
            except OSError as exc:
                if exc.errno in (errno.EEXIST, errno.ENOTEMPTY) or target.exists():
                    raise PreconditionFailedError(f"{self.uri}/{prefix} already exists") from exc
                raise
            _fsync_dir(target.parent)
        finally:
            shutil.rmtree(tmp, ignore_errors=True)


def _fsync_dir(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


DEFAULT_S3_ATTEMPTS = 6
"""Attempts per S3 request (1 + 5 retries: at most 1 + 2 + 4 + 8 + 16 = 31 s of backoff
when throttled, about half that on average)."""
ATTEMPTS_ENV = "RAYTRADE_S3_MAX_ATTEMPTS"


def s3_attempts(max_attempts: int | None = None) -> int:
    """The attempt budget: ``max_attempts``, else ``$RAYTRADE_S3_MAX_ATTEMPTS``, else
    ``DEFAULT_S3_ATTEMPTS``; ``ConfigError`` unless a whole number from 1 to 20."""
    raw: int | str = max_attempts if max_attempts is not None else os.environ.get(
        ATTEMPTS_ENV, str(DEFAULT_S3_ATTEMPTS))
    try:
        attempts = int(raw)
    except ValueError:
        attempts = 0
    if not 1 <= attempts <= 20:
        raise ConfigError(f"S3 max attempts {raw!r} (argument or ${ATTEMPTS_ENV}): "
                          "a whole number from 1 to 20")
    return attempts


class S3BlobStore(BlobStore):
    """``s3://bucket/prefix`` through boto3 (standard credential chain)."""

    def __init__(self, bucket: str, prefix: str = "", *, endpoint_url: str | None = None,
                 client: Any = None, connect_timeout_s: float = 5.0,
                 read_timeout_s: float = 30.0, max_attempts: int | None = None) -> None:
        import boto3
        from botocore.config import Config

        self.max_attempts = s3_attempts(max_attempts)
        self.bucket = bucket
        self.prefix = prefix.strip("/") + "/" if prefix.strip("/") else ""
        self.uri = f"s3://{bucket}/{self.prefix}".rstrip("/")
        self.client = client or boto3.client(
            "s3", endpoint_url=endpoint_url or os.environ.get("RAYTRADE_S3_ENDPOINT_URL"),
            config=Config(connect_timeout=connect_timeout_s, read_timeout=read_timeout_s,
                          retries={"total_max_attempts": self.max_attempts,
                                   "mode": "standard"}))

    def _key(self, key: str) -> str:
        _check_key(key)
        return self.prefix + key

    @contextlib.contextmanager
    def _errors(self, key: str) -> Iterator[None]:
        from botocore.exceptions import BotoCoreError, ClientError

        try:
            yield
        except ClientError as exc:
            err = exc.response.get("Error", {})
            code = str(err.get("Code", ""))
            status = exc.response.get("ResponseMetadata", {}).get("HTTPStatusCode")
            where = f"{self.uri}/{key}"
            if code in ("NoSuchKey", "404", "NotFoundError"):
                raise NotFoundError(f"{where}: not found") from exc
            if code in ("PreconditionFailed", "ConditionalRequestConflict") or status in (
                    409, 412):
                raise PreconditionFailedError(f"{where}: conditional write lost ({code})") from exc
            if code == "NoSuchBucket":
                raise StoreUnavailableError(f"{self.uri}: bucket {self.bucket} does not exist") \
                    from exc
            spent = exc.response.get("ResponseMetadata", {}).get("MaxAttemptsReached")
            after = f" after {self.max_attempts} attempts" if spent else ""
            raise StoreUnavailableError(f"{where}: S3 error {code or status}{after}: "
                                        f"{err.get('Message', exc)}") from exc
        except BotoCoreError as exc:
            raise StoreUnavailableError(f"{self.uri}/{key}: S3 unreachable: {exc}") from exc

    def get(self, key: str) -> Blob:
        with self._errors(key):
            resp = self.client.get_object(Bucket=self.bucket, Key=self._key(key))
            return Blob(resp["Body"].read(), str(resp["ETag"]))
        raise AssertionError("unreachable")  # pragma: no cover (mypy: _errors re-raises)

    def put(self, key: str, data: bytes, *, if_match: str | None = None,
            if_none_match: bool = False) -> str:
        kwargs: dict[str, Any] = {}
        if if_match is not None:
            kwargs["IfMatch"] = if_match
        if if_none_match:
            kwargs["IfNoneMatch"] = "*"
        with self._errors(key):
            resp = self.client.put_object(Bucket=self.bucket, Key=self._key(key), Body=data,
                                          **kwargs)
            return str(resp["ETag"])
        raise AssertionError("unreachable")  # pragma: no cover

    def list(self, prefix: str) -> list[str]:
        out: list[str] = []
        with self._errors(prefix):
            pages = self.client.get_paginator("list_objects_v2").paginate(
                Bucket=self.bucket, Prefix=self.prefix + prefix)
            for page in pages:
                out.extend(obj["Key"][len(self.prefix):] for obj in page.get("Contents", []))
        return sorted(out)

    def delete(self, key: str) -> None:
        with self._errors(key):
            self.client.delete_object(Bucket=self.bucket, Key=self._key(key))

    def put_tree(self, prefix: str, files: Mapping[str, bytes], last: str) -> None:
        """Objects first, ``last`` (the manifest) created only if absent."""
        for name, data in files.items():
            if name != last:
                self.put(f"{prefix}{name}", data)
        self.put(f"{prefix}{last}", files[last], if_none_match=True)


def open_blobstore(uri: str, *, endpoint_url: str | None = None) -> BlobStore:
    """The backend for ``file:///path``, a plain path, or ``s3://bucket[/prefix]``."""
    parsed = urlparse(uri)
    if parsed.scheme == "s3":
        if not parsed.netloc:
            raise ConfigError(f"store URI {uri!r} names no bucket")
        return S3BlobStore(parsed.netloc, parsed.path, endpoint_url=endpoint_url)
    if parsed.scheme == "file":
        if parsed.netloc not in ("", "localhost"):
            raise ConfigError(f"store URI {uri!r}: file URIs need an absolute path "
                              "(file:///path)")
        return LocalBlobStore(parsed.path)
    if parsed.scheme == "":
        return LocalBlobStore(uri)
    raise ConfigError(f"unsupported store URI {uri!r}: use file:///path or s3://bucket/prefix")
