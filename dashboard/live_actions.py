"""The Live page's kill switch: a button press becomes one operator command in the store
(``algos.storage.live_commands``), which every live actor applies within one bar.

A command is written only with a reason, an explicit confirmation and a known viewer
(``context.viewer``: the dashboard login, the proxy's identity header, or on a loopback
dashboard without login the explicit unauthenticated identity); it is recorded as issued
by that viewer, never by the server's OS user. Anything missing refuses the command with
``ConfigError`` saying what, and nothing is written. No Streamlit here: testable alone.
"""

from __future__ import annotations

from raytrade.algos.storage.blobstore import BlobStore
from raytrade.algos.storage.live_commands import LiveCommand, issue_command
from raytrade.envs.errors import ConfigError

EFFECTS = {"halt": "sends no more orders and cancels its open orders; positions stay",
           "flatten": "closes its position, then halts",
           "resume": "trades again after an operator's halt or flatten (a reconciliation "
                     "halt needs `raytrade live reconcile --adopt`)",
           "adopt": "accepts the exchange's state after a reconciliation mismatch"}
"""What each action makes an actor do, as the page explains it."""


def operator_command(blobs: BlobStore, action: str, *, actors: tuple[str, ...], reason: str,
                     confirmed: bool, by: str | None) -> LiveCommand:
    """Write ``action`` for ``actors`` (empty: every live actor) as issued by ``by``;
    ``ConfigError`` (nothing written) without a reason, the confirmation or a viewer."""
    if not reason.strip() or not confirmed:
        raise ConfigError("A reason and the confirmation are both required: nothing was "
                          "sent.")
    if by is None:
        raise ConfigError("Your identity is unknown (the login or the proxy's identity "
                          "header is missing): nothing was sent.")
    return issue_command(blobs, action, by=by, reason=reason.strip(), actors=actors)


def describe(command: LiveCommand) -> str:
    """What a written command does, for the confirmation message."""
    target = ", ".join(command.actors) if command.actors else "every live actor"
    return (f"{command.action} sent to {target} as {command.by} (command {command.id}); "
            f"within one bar each actor {EFFECTS[command.action]}.")
