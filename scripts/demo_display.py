"""What ``raytrade demo`` shows on the terminal, drawn with ``rich``: one line per stage, a
progress bar while the first policy trains, then a live table of the paper traders and
the learner. On a pipe or a dumb terminal (CI, ``| tee``) the same facts come as plain
lines, the status one line every ``plain_every_s`` seconds.

Everything else (Ray, RLlib, the feed, the dashboard) writes to the run folder's logs.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field

from rich.console import Console, Group
from rich.live import Live
from rich.markup import escape
from rich.progress import BarColumn, Progress, TextColumn, TimeElapsedColumn
from rich.table import Table


@dataclass(frozen=True)
class TraderRow:
    """One paper trader as the status table shows it. Money in quote currency."""

    actor: str
    state: str
    decisions: int
    position: float | None
    equity: float | None
    version: int | None
    last_bar: str = ""
    fed: int | None = None
    """Live transitions this trader has sent to the learner (``None``: not reported)."""


@dataclass(frozen=True)
class DemoStatus:
    """A snapshot of the running loop."""

    traders: list[TraderRow] = field(default_factory=list)
    iteration: int | None = None
    live_ingested: float | None = None
    candidate: int | None = None
    paper: int | None = None
    seconds_left: float | None = None

    def plain(self) -> str:
        """The snapshot as one line."""
        f = fmt_or_dash
        parts = [f"{t.actor} {t.state} decisions={t.decisions} pos={f(t.position, '+.1f')} "
                 f"equity={f(t.equity, ',.0f')} v={f(t.version, 'd')} fed={f(t.fed, 'd')}"
                 for t in self.traders]
        parts.append(f"learner iter={f(self.iteration, 'd')} "
                     f"live_ingested={f(self.live_ingested, '.0f')}")
        parts.append(f"candidate=v{f(self.candidate, 'd')} paper=v{f(self.paper, 'd')}")
        if self.seconds_left is not None:
            parts.append(f"{self.seconds_left:.0f} s left")
        return " | ".join(parts)


def fmt_or_dash(x: float | int | None, spec: str) -> str:
    """``x`` formatted with ``spec``, or ``-`` when it is not known yet."""
    return "-" if x is None else format(x, spec)


class Display:
    """The demo's terminal (module docstring)."""

    def __init__(self, console: Console, plain_every_s: float = 30.0) -> None:
        self.console = console
        self.plain_every_s = plain_every_s
        self._last_plain = 0.0

    @property
    def interactive(self) -> bool:
        """True on a terminal that can redraw."""
        return self.console.is_terminal and not self.console.is_dumb_terminal

    def stage(self, name: str, text: str, *, emphasis: str = "") -> None:
        """A finished step; ``emphasis`` (a URL, say) is printed in bold before ``text``.
        Both are printed as written: a ``[section]`` in them is text, not markup."""
        lead = f"[bold]{escape(emphasis)}[/]  " if emphasis else ""
        self.console.print(f"[bold green]{name:>9}[/] {lead}{escape(text)}", highlight=False)

    def note(self, text: str) -> None:
        """Something the user should read (a URL, how to stop)."""
        self.console.print(f"          {escape(text)}", highlight=False)

    def warn(self, text: str) -> None:
        """Something went wrong but the demo goes on (or is stopping cleanly)."""
        self.console.print(f"[bold yellow]{'warning':>9}[/] {escape(text)}", highlight=False)

    def error(self, text: str) -> None:
        """Why the demo stopped."""
        self.console.print(f"[bold red]{'error':>9}[/] {escape(text)}", highlight=False)

    def _plain_due(self) -> bool:
        now = time.monotonic()
        if now - self._last_plain >= self.plain_every_s:
            self._last_plain = now
            return True
        return False

    @contextmanager
    def training(self, budget_s: float) -> Iterator[TrainingBar]:
        """A progress bar over the first policy's training budget (seconds)."""
        if not self.interactive:
            self._last_plain = 0.0
            yield TrainingBar(self, None, budget_s)
            return
        progress = Progress(TextColumn("[bold blue]{task.fields[stage]:>9}"), BarColumn(),
                            TextColumn("{task.percentage:>3.0f}%"), TimeElapsedColumn(),
                            TextColumn("{task.description}"), console=self.console,
                            redirect_stdout=False, redirect_stderr=False, transient=True)
        with progress:
            task = progress.add_task("", total=budget_s, stage="training")
            yield TrainingBar(self, (progress, task), budget_s)

    @contextmanager
    def live(self) -> Iterator[StatusBoard]:
        """A table redrawn with each ``StatusBoard.update``."""
        if not self.interactive:
            self._last_plain = 0.0
            yield StatusBoard(self, None)
            return
        with Live(console=self.console, refresh_per_second=2, redirect_stdout=False,
                  redirect_stderr=False, transient=False) as live:
            yield StatusBoard(self, live)


class TrainingBar:
    """Updates the training progress (``Display.training``)."""

    def __init__(self, display: Display, bar: tuple[Progress, object] | None,
                 budget_s: float) -> None:
        self.display, self.bar, self.budget_s = display, bar, budget_s

    def update(self, elapsed_s: float, text: str) -> None:
        """``elapsed_s`` of the budget done; ``text`` what the learner reports."""
        if self.bar is None:
            if self.display._plain_due():
                self.display.console.print(f"{'training':>9} {elapsed_s:.0f}/"
                                           f"{self.budget_s:.0f} s {escape(text)}",
                                           highlight=False)
            return
        progress, task = self.bar
        progress.update(task, completed=min(elapsed_s, self.budget_s),  # type: ignore[arg-type]
                        description=text)


class StatusBoard:
    """Updates the paper-trading table (``Display.live``)."""

    def __init__(self, display: Display, live: Live | None) -> None:
        self.display, self.live = display, live

    def update(self, status: DemoStatus) -> None:
        """Show ``status``."""
        if self.live is None:
            if self.display._plain_due():
                self.display.console.print(f"{'status':>9} {escape(status.plain())}",
                                           highlight=False)
            return
        table = Table(title=None, expand=False)
        for column in ("actor", "state", "decisions", "last bar (UTC)", "position", "equity",
                       "policy", "fed to learner"):
            table.add_column(column, justify="left" if column in ("actor", "state")
                             else "right")
        for t in status.traders:
            table.add_row(t.actor, t.state, str(t.decisions), t.last_bar,
                          fmt_or_dash(t.position, "+.2f"), fmt_or_dash(t.equity, ",.2f"),
                          f"v{fmt_or_dash(t.version, 'd')}", fmt_or_dash(t.fed, ",d"))
        footer = (f"learner: iteration {fmt_or_dash(status.iteration, 'd')}, live transitions "
                  f"ingested {fmt_or_dash(status.live_ingested, ',.0f')} | channels: candidate "
                  f"v{fmt_or_dash(status.candidate, 'd')}, paper v{fmt_or_dash(status.paper, 'd')}")
        if status.seconds_left is not None:
            footer += f" | stops in {status.seconds_left:.0f} s"
        self.live.update(Group(table, footer + "  (Ctrl-C stops cleanly)"))
