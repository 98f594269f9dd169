"""Exchange API keys, for every venue that signs requests with an HMAC secret: loading,
signing and log redaction (a neutral module: ``binance_auth.py`` and ``delta_auth.py``
give it their defaults; venues never import each other).

Keys come from environment variables or from a file only its owner can read:

- environment: ``<prefix>_API_KEY`` and ``<prefix>_API_SECRET`` (the prefix is the
  venue's, ``RAYTRADE_BINANCE`` or ``RAYTRADE_DELTA``, and a parameter, so a testnet and a
  mainnet account, or spot and futures keys, can live side by side:
  ``RAYTRADE_BINANCE_TESTNET_API_KEY`` ...); ``<prefix>_KEYS_FILE`` names a keys file
  instead;
- a file (JSON ``{"api_key": "...", "api_secret": "..."}`` or TOML ``api_key = "..."``,
  by suffix) whose mode grants nothing to group or others (``chmod 600``): anything else is
  refused, because a secret another user can read is already leaked.

An ``ApiKeys`` never prints its values (``repr``/``str`` show a fingerprint, the first 8
hex digits of the key's SHA-256, enough to tell two accounts apart in a log). The API key
travels only in a header (Binance ``X-MBX-APIKEY``, Delta ``api-key``) and the secret only
into ``sign``; every error here names the variable, file or field, never a value.
``install_redaction`` is the last line of defence: a logging filter that replaces the key,
the secret, any signature (``signature=...`` in a query, ``"signature": "..."`` in a JSON
frame or a header listing) and ``listenKey=`` value in every record before a handler
writes it.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import logging
import os
import re
import stat
import tomllib
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from raytrade.envs.errors import ConfigError

FILE_FIELDS = ("api_key", "api_secret")
REDACTED = "<redacted>"
_TOKEN = re.compile(r"^[\x21-\x7e]+$")
"""Printable ASCII without spaces: anything else could not travel in a header unharmed."""


@dataclass(frozen=True, repr=False)
class ApiKeys:
    """One account's API key and secret (never printable: module docstring)."""

    api_key: str = field(repr=False)
    api_secret: str = field(repr=False)

    def __post_init__(self) -> None:
        for name in FILE_FIELDS:
            value = getattr(self, name)
            if not isinstance(value, str) or not _TOKEN.match(value):
                raise ConfigError(f"{name} must be a non-empty string of printable ASCII "
                                  "characters without spaces")

    @property
    def fingerprint(self) -> str:
        """First 8 hex digits of the key's SHA-256: identifies the account in logs."""
        return hashlib.sha256(self.api_key.encode()).hexdigest()[:8]

    def sign(self, payload: str) -> str:
        """Hex HMAC-SHA256 of ``payload`` with the secret: Binance's ``signature``
        parameter (over the query string), Delta's ``signature`` header (over method,
        timestamp, path, query and body)."""
        return hmac.new(self.api_secret.encode(), payload.encode(), hashlib.sha256).hexdigest()

    def __repr__(self) -> str:
        return f"ApiKeys(fingerprint={self.fingerprint}, values {REDACTED})"

    __str__ = __repr__

    def __reduce__(self) -> str | tuple[Any, ...]:
        raise TypeError("ApiKeys cannot be pickled: load the keys where they are used "
                        "(load_keys), do not ship them between processes")


def load_keys(*, venue: str, prefix: str, path: Path | str | None = None,
              environ: Mapping[str, str] | None = None) -> ApiKeys:
    """The keys from ``path`` if given, else from ``<prefix>_API_KEY`` and
    ``<prefix>_API_SECRET``, else from the file named by ``<prefix>_KEYS_FILE``. ``venue``
    names the exchange in errors (``Binance``, ``Delta``).

    ``ConfigError`` naming what is missing or wrong (never a value): a lone key without
    its secret, a file readable by group or others (its mode shown), a missing field."""
    env = os.environ if environ is None else environ
    if path is not None:
        return _from_file(Path(path), venue)
    key_var, secret_var, file_var = (f"{prefix}_API_KEY", f"{prefix}_API_SECRET",
                                     f"{prefix}_KEYS_FILE")
    key, secret = env.get(key_var), env.get(secret_var)
    if key is not None or secret is not None:
        missing = [v for v, x in ((key_var, key), (secret_var, secret)) if not x]
        if missing:
            raise ConfigError(f"{venue} keys: environment variable {' and '.join(missing)} "
                              f"is not set or empty (both {key_var} and {secret_var} are "
                              "needed)")
        assert key is not None and secret is not None
        return _build(key, secret, f"environment variables {key_var}/{secret_var}")
    file = env.get(file_var)
    if file:
        return _from_file(Path(file), venue)
    raise ConfigError(f"{venue} keys not configured: set {key_var} and {secret_var}, or "
                      f"{file_var} to a file only its owner can read (chmod 600) holding "
                      f"{' and '.join(FILE_FIELDS)}")


def _build(key: str, secret: str, source: str) -> ApiKeys:
    try:
        return ApiKeys(key, secret)
    except ConfigError as exc:
        raise ConfigError(f"{source}: {exc}") from None


def _from_file(path: Path, venue: str) -> ApiKeys:
    """Keys from a JSON or TOML file; the mode is checked on the open descriptor, so the
    file checked is the file read."""
    if path.suffix not in (".json", ".toml"):
        raise ConfigError(f"{path}: a {venue} keys file must be .json or .toml")
    try:
        fd = os.open(path, os.O_RDONLY)
    except OSError as exc:
        raise ConfigError(f"{path}: cannot open the {venue} keys file ({exc.strerror})") \
            from None
    with os.fdopen(fd, "rb") as fh:
        st = os.fstat(fh.fileno())
        if not stat.S_ISREG(st.st_mode):
            raise ConfigError(f"{path}: the {venue} keys file is not a regular file")
        mode = stat.S_IMODE(st.st_mode)
        if mode & 0o077:
            raise ConfigError(f"{path}: the {venue} keys file has mode {mode:04o}, readable "
                              "or writable by group or others; refused (chmod 600 it)")
        if hasattr(os, "getuid") and st.st_uid != os.getuid():
            raise ConfigError(f"{path}: the {venue} keys file belongs to uid {st.st_uid}, "
                              f"not to this user (uid {os.getuid()}); refused")
        raw = fh.read()
    try:
        data = json.loads(raw) if path.suffix == ".json" else tomllib.loads(raw.decode())
    except (ValueError, UnicodeDecodeError) as exc:
        # JSON and TOML errors give a position, never the text around it
        raise ConfigError(f"{path}: not valid {path.suffix[1:].upper()} "
                          f"({exc.__class__.__name__} at {_position(exc)})") from None
    if not isinstance(data, dict):
        raise ConfigError(f"{path}: expected an object with fields {list(FILE_FIELDS)}")
    unknown = sorted(set(data) - set(FILE_FIELDS))
    if unknown:
        raise ConfigError(f"{path}: unknown fields {unknown}; allowed: {list(FILE_FIELDS)}")
    missing = [f for f in FILE_FIELDS if not data.get(f)]
    if missing:
        raise ConfigError(f"{path}: missing or empty field {' and '.join(missing)}")
    key, secret = data["api_key"], data["api_secret"]
    if not isinstance(key, str) or not isinstance(secret, str):
        raise ConfigError(f"{path}: api_key and api_secret must be strings")
    return _build(key, secret, str(path))


def _position(exc: Exception) -> str:
    if isinstance(exc, json.JSONDecodeError):
        return f"line {exc.lineno} column {exc.colno}"
    match = re.search(r"line \d+, column \d+", str(exc))
    return match.group(0) if match else "an unknown position"


# ---- log redaction

_SIGNATURE = re.compile(r"(signature=)[0-9A-Za-z%]+")
_SIGNATURE_FIELD = re.compile(r"""(["']signature["']\s*:\s*["'])[0-9A-Za-z%]+""")
"""A signature as a JSON or Python mapping shows it (a websocket auth frame, headers)."""
_LISTEN_KEY = re.compile(r"(listenKey=|/ws/)[0-9A-Za-z]{16,}")


class RedactionFilter(logging.Filter):
    """Replaces registered secrets, ``signature=`` and ``listenKey=`` values in a log
    record's message, arguments and exception text (the record is rewritten in place and
    always passed on)."""

    def __init__(self) -> None:
        super().__init__("raytrade-redaction")
        self._secrets: tuple[str, ...] = ()

    def add(self, keys: ApiKeys) -> None:
        """Redact ``keys`` from now on."""
        found = set(self._secrets) | {keys.api_key, keys.api_secret}
        # longest first: a secret that contains another is replaced whole
        self._secrets = tuple(sorted(found, key=len, reverse=True))

    def redact(self, text: str) -> str:
        """``text`` with every secret and signature replaced."""
        for secret in self._secrets:
            if secret in text:
                text = text.replace(secret, REDACTED)
        text = _SIGNATURE.sub(rf"\1{REDACTED}", text)
        text = _SIGNATURE_FIELD.sub(rf"\1{REDACTED}", text)
        return _LISTEN_KEY.sub(rf"\1{REDACTED}", text)

    def filter(self, record: logging.LogRecord) -> bool:
        try:
            message = record.getMessage()
        except Exception:  # a broken format string: keep its parts, redacted
            message = f"{record.msg} {record.args}"
        record.msg, record.args = self.redact(message), None
        if record.exc_info and not record.exc_text:
            record.exc_text = logging.Formatter().formatException(record.exc_info)
        if record.exc_text:
            record.exc_text = self.redact(record.exc_text)
            record.exc_info = None  # formatters would otherwise format it again, unredacted
        if record.stack_info:
            record.stack_info = self.redact(record.stack_info)
        return True


_FILTER = RedactionFilter()
_factory_installed = False


def install_redaction(keys: ApiKeys) -> RedactionFilter:
    """Redact ``keys`` from every log record, from now on. Idempotent; several key pairs
    accumulate.

    Three layers, because each alone has a gap: the record factory redacts every record
    as it is made (``logging.setLogRecordFactory``; records below a logger's level are
    never made, so this costs nothing for them), which also covers handlers added later;
    the filter goes on the root logger and on every handler that exists now, in case
    other code replaces the factory; and it is returned for handlers built later."""
    global _factory_installed
    _FILTER.add(keys)
    if not _factory_installed:
        previous = logging.getLogRecordFactory()

        def factory(*args: Any, **kwargs: Any) -> logging.LogRecord:
            record = previous(*args, **kwargs)
            _FILTER.filter(record)
            return record

        logging.setLogRecordFactory(factory)
        _factory_installed = True
    loggers: list[logging.Logger] = [logging.getLogger()]
    loggers += [lg for lg in logging.Logger.manager.loggerDict.values()
                if isinstance(lg, logging.Logger)]
    for lg in loggers:
        if lg is loggers[0] and _FILTER not in lg.filters:
            lg.addFilter(_FILTER)
        for handler in lg.handlers:
            if _FILTER not in handler.filters:
                handler.addFilter(_FILTER)
    return _FILTER
