"""The dashboard's pages, in menu order: ``app.py`` builds Streamlit's navigation from this
list, and the tests visit every entry (so a new page is tested once it is listed here).

Each page is ``views/<name>.py``; its URL path is ``name`` (the default page is served at
the root). A page's ``st.title`` is its ``title``.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

VIEWS = Path(__file__).parent / "views"


@dataclass(frozen=True)
class PageSpec:
    """One page: ``name`` of its file in ``views/`` (no ``.py``), the menu ``title``, and
    whether it is the ``default`` page (served at ``/``)."""

    name: str
    title: str
    default: bool = False

    @property
    def path(self) -> Path:
        """The page's script."""
        return VIEWS / f"{self.name}.py"

    @property
    def url_path(self) -> str:
        """The page's URL path below the dashboard's base URL (empty for the default)."""
        return "" if self.default else self.name


PAGES = (
    PageSpec("overview", "Overview", default=True),
    PageSpec("training", "Training"),
    PageSpec("evaluation", "Evaluation"),
    PageSpec("paper", "Paper trading"),
    PageSpec("live", "Live trading"),
    PageSpec("models", "Models"),
    PageSpec("walk_forward", "Walk-forward"),
    PageSpec("tune", "Hyperparameter search"),
)
