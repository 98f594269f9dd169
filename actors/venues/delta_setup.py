"""Building the ``delta-futures`` order side from an ``ExecutionSetup``: Delta Exchange
India's endpoints per network, the account's keys, and the venue's own settings file.

Endpoints (Delta's API documentation, "Rest Api" and "Websocket Feed",
https://docs.delta.exchange): ``testnet`` is Delta's demo environment (its own accounts
and keys, play money), ``mainnet`` real money; orders go over REST, order updates come
from the private websocket.

Settings file (``raytrade live --venue-config FILE``, TOML, optional): the order leverage
set on each product before the first order, as a default and per Delta symbol::

    [leverage]
    default = 1      # every symbol not named below
    BTCUSD = 3

Without a file the leverage is 1 (no borrowed exposure beyond what the live trader's
capital and limits allow). Anything else in the file is refused with its name.
"""

from __future__ import annotations

import math
import tomllib
from collections.abc import Mapping
from pathlib import Path
from typing import TYPE_CHECKING

from raytrade.actors.venues.api_keys import install_redaction
from raytrade.actors.venues.delta_auth import DEFAULT_PREFIX, load_keys
from raytrade.actors.venues.delta_orders import DeltaExecution
from raytrade.envs.errors import ConfigError

if TYPE_CHECKING:  # the registry imports this module
    from raytrade.actors.venues.execution_registry import ExecutionSetup

ENDPOINTS: Mapping[str, tuple[str, str]] = {
    "mainnet": ("https://api.india.delta.exchange", "wss://socket.india.delta.exchange"),
    "testnet": ("https://cdn-ind.testnet.deltaex.org", "wss://socket-ind.testnet.deltaex.org"),
}
"""Network -> (REST base URL, private websocket URL), Delta Exchange India."""


def load_settings(path: str | Path | None) -> tuple[dict[str, float], float]:
    """(symbol -> leverage, default leverage) from the settings file (module docstring);
    ``ConfigError`` naming the file and the entry otherwise."""
    if path is None:
        return {}, 1.0
    try:
        data = tomllib.loads(Path(path).read_text())
    except OSError as exc:
        raise ConfigError(f"{path}: cannot read the Delta settings file ({exc.strerror})") \
            from None
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"{path}: not valid TOML ({exc})") from None
    unknown = sorted(set(data) - {"leverage"})
    if unknown:
        raise ConfigError(f"{path}: unknown settings {unknown}; a Delta settings file holds "
                          "[leverage] only")
    table = data.get("leverage", {})
    if not isinstance(table, dict):
        raise ConfigError(f"{path}: 'leverage' must be a table ([leverage])")
    out: dict[str, float] = {}
    for name, value in table.items():
        if isinstance(value, bool) or not isinstance(value, (int, float)) or \
                not math.isfinite(value) or value < 1:
            raise ConfigError(f"{path}: leverage.{name} is {value!r}: a number >= 1")
        out[name] = float(value)
    default = out.pop("default", 1.0)
    return out, default


def build_delta_execution(setup: ExecutionSetup) -> DeltaExecution:
    """The order side (the registry's builder): settings read, keys loaded with their
    redaction installed before anything can log them, endpoints resolved (URLs in the
    setup: the loopback simulator's)."""
    rest_url, ws_url = setup.rest_url, setup.ws_url
    if rest_url is None or ws_url is None:
        if setup.network not in ENDPOINTS:
            raise ConfigError(f"Delta network {setup.network!r} needs its URLs")
        rest_url, ws_url = ENDPOINTS[setup.network]
    leverage, default = load_settings(setup.venue_config)
    keys = load_keys(prefix=setup.key_env_prefix or DEFAULT_PREFIX, path=setup.key_file)
    install_redaction(keys)
    return DeltaExecution(rest_url, ws_url, keys, timeout_s=setup.timeout_s,
                          recv_window_ms=setup.recv_window_ms, leverage=leverage,
                          default_leverage=default)
