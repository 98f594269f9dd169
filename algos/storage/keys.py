"""Every key and path of the run-store layout, in one place.

A run store is a ``file://`` folder or an ``s3://`` prefix; keys are ``/``-separated and
relative to its root. Writers (training, evaluation, walk-forward, the paper actors) and
readers (the dashboard, the promotion gates, the CLIs) name keys only through this module,
so the two sides cannot drift::

    claims/vNNNNNN                         version numbers, each created once
    policies/vNNNNNN/                      immutable policy bundles; manifest.json last
    channels/<channel>.json                candidate | paper | live pointer (CAS)
    channels/moves/<ms>-<channel>-<id>.json   audit log: one record per channel move
    metrics/train.jsonl                    one line per training iteration
    metrics/eval.jsonl                     one line per evaluation
    metrics/eval_curves/<iter>_<split>.json   equity curves of one evaluation
    metrics/selection.jsonl                validation scores and publication decisions
    checkpoints/<name>/                    RLlib checkpoints (``iter_NNNNNN``)
    checkpoints/latest                     the newest checkpoint's name (one line)
    paper/<actor>/equity.jsonl             the actor's equity per decided bar
    paper/<actor>/trades.jsonl             its fills
    paper/<actor>/health.json              feed, trader and executor state, faults
    paper/<actor>/record.json              length of the exported record (shrink guard)
    paper/<actor>/performance.json         metrics and costs of the record, per version
    paper/<actor>/journal.sqlite.gz        snapshot of its SQLite journal (survives a move)
    live/commands/<ms>-<id>.json           operator commands to the live actors (halt,
                                           flatten, resume, adopt), one object each
    live/<actor>/health.json               a live actor's state: halts, position, faults
    live/<actor>/orders.jsonl              its orders, each in its latest state
    live/<actor>/fills.jsonl               its fills, with paper's fill price on the bar
    live/<actor>/equity.jsonl              its allocation's equity and position per bar
    live/<actor>/events.jsonl              reconciliations, halts, operator actions
    reports/walk_forward/<name>.json       walk-forward reports
    tune/trials.json                       the last hyperparameter search: its trials,
                                           winner and the winner's test result
    tune/experiment/...                    Ray Tune's results folder of that search
                                           (mirrored from the run folder; for --resume)

Pure string functions: no I/O, importable anywhere (no torch, no Ray).
"""

from __future__ import annotations

import re

from raytrade.envs.errors import ConfigError

# ---- policy store
CLAIMS = "claims/"
POLICIES = "policies/"
CHANNELS_DIR = "channels/"
MOVES = "channels/moves/"

# ---- training run
METRICS_DIR = "metrics/"
TRAIN_METRICS = "metrics/train.jsonl"
EVAL_METRICS = "metrics/eval.jsonl"
SELECTION_METRICS = "metrics/selection.jsonl"
EVAL_CURVES = "metrics/eval_curves/"
CHECKPOINTS = "checkpoints/"
LATEST_CHECKPOINT = "checkpoints/latest"
REPORTS = "reports/"
WALK_FORWARD_REPORTS = "reports/walk_forward/"

# ---- hyperparameter search (``algos/tune.py``)
TUNE_DIR = "tune/"
TUNE_TRIALS = "tune/trials.json"
TUNE_EXPERIMENT = "tune/experiment/"
"""Ray Tune's experiment folder (``RunConfig(storage_path=<run>/tune, name="experiment")``)."""

# ---- paper trading (file names under ``paper/<actor>/``)
PAPER = "paper/"
EQUITY = "equity.jsonl"
TRADES = "trades.jsonl"
HEALTH = "health.json"
RECORD = "record.json"
PERFORMANCE = "performance.json"
JOURNAL_SNAPSHOT = "journal.sqlite.gz"

_CHECKPOINT_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.-]{0,127}")
_ACTOR = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.-]{0,127}")


def version_name(version: int) -> str:
    """``v000042`` for 42: the folder name of a policy version."""
    return f"v{version:06d}"


def claim_key(version: int) -> str:
    """The create-once claim of a version number."""
    return f"{CLAIMS}{version_name(version)}"


def policy_prefix(version: int) -> str:
    """The folder of a policy bundle (ends in ``/``)."""
    return f"{POLICIES}{version_name(version)}/"


def channel_key(channel: str) -> str:
    """A channel's pointer."""
    return f"{CHANNELS_DIR}{channel}.json"


def move_key(moved_ms: int, channel: str, token: str) -> str:
    """One audit record of a channel move (sorted by time, unique by ``token``)."""
    return f"{MOVES}{moved_ms:013d}-{channel}-{token}.json"


def eval_curve_key(iteration: int, split: str) -> str:
    """The equity curves of the evaluation at ``iteration`` on ``split``."""
    return f"{EVAL_CURVES}{iteration:06d}_{split}.json"


def checkpoint_dir_name(iteration: int) -> str:
    """The checkpoint folder name written at ``iteration``."""
    return f"iter_{iteration:06d}"


def checkpoint_name(text: str, *, source: str = LATEST_CHECKPOINT) -> str:
    """A checkpoint name read from ``checkpoints/latest``, validated.

    The name must be one plain path component (letters, digits, ``_ . -``; not starting
    with a dot), so ``checkpoints/<name>/`` can never reach outside the run's
    ``checkpoints/`` folder: an absolute path, ``..`` or a ``/`` is refused with
    ``ConfigError`` naming ``source`` and the rule.
    """
    name = text.strip()
    if not _CHECKPOINT_NAME.fullmatch(name) or name in (".", ".."):
        raise ConfigError(f"{source} names checkpoint {name[:200]!r}: a checkpoint name must "
                          "be one path component of letters, digits, '_', '.' or '-' "
                          "(no '/', no '..', no absolute path), so it stays inside the "
                          "run's checkpoints/ folder")
    return name


def checkpoint_prefix(name: str) -> str:
    """The folder of checkpoint ``name`` (validated; ends in ``/``)."""
    return f"{CHECKPOINTS}{checkpoint_name(name, source='checkpoint name')}/"


def paper_prefix(actor: str) -> str:
    """The folder of one paper actor's record (ends in ``/``)."""
    if not _ACTOR.fullmatch(actor):
        raise ConfigError(f"paper actor name {actor!r}: use letters, digits, '_', '.' or "
                          "'-' (it names the store folder paper/<actor>/)")
    return f"{PAPER}{actor}/"


def paper_key(actor: str, name: str) -> str:
    """``paper/<actor>/<name>``; ``name`` one of ``EQUITY``, ``TRADES``, ``HEALTH``,
    ``RECORD``, ``PERFORMANCE``, ``JOURNAL_SNAPSHOT``."""
    return paper_prefix(actor) + name


# ---- live trading
LIVE = "live/"
LIVE_COMMANDS = "live/commands/"
LIVE_HEALTH = "health.json"
LIVE_ORDERS = "orders.jsonl"
LIVE_FILLS = "fills.jsonl"
LIVE_EQUITY = "equity.jsonl"
LIVE_EVENTS = "events.jsonl"


def live_prefix(actor: str) -> str:
    """The folder of one live actor's record (ends in ``/``)."""
    if not _ACTOR.fullmatch(actor) or actor == "commands":
        raise ConfigError(f"live actor name {actor!r}: use letters, digits, '_', '.' or "
                          "'-' (it names the store folder live/<actor>/; not 'commands')")
    return f"{LIVE}{actor}/"


def live_key(actor: str, name: str) -> str:
    """``live/<actor>/<name>``; ``name`` one of the ``LIVE_*`` file names."""
    return live_prefix(actor) + name


def live_command_key(at_ms: int, token: str) -> str:
    """One operator command; keys sort by time."""
    return f"{LIVE_COMMANDS}{at_ms:013d}-{token}.json"


def walk_forward_report_key(name: str) -> str:
    """A walk-forward report."""
    return f"{WALK_FORWARD_REPORTS}{name}.json"
