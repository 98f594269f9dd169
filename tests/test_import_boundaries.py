"""Import boundaries, checked in fresh interpreters through ``sys.modules``.

- The dashboard (every page, run on a seeded store, plus its reader and context) never
  imports torch or RLlib: it only reads the run store.
- The paper actor (``paper_actor`` and the session) never imports RLlib: actors push plain
  numpy transitions, and RLlib episodes are built on the learner side.
- The storage package imports neither torch nor Ray.
"""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
from raytrade.algos.storage.policy_store import PolicyStore

from tests.dashboard_seed import seed_store

VIEWS = Path(__file__).resolve().parents[1] / "dashboard" / "views"

REPORT = textwrap.dedent("""
    import json, sys
    heavy = sorted(m for m in sys.modules
                   if m == "torch" or m.startswith(("torch.", "ray.rllib")) or m == "ray")
    print("MODULES=" + json.dumps(heavy))
""")


def _loaded(code: str, **env: str) -> list[str]:
    """The heavy modules loaded after running ``code`` in a fresh interpreter."""
    import os

    out = subprocess.run([sys.executable, "-c", code + REPORT], check=True, text=True,
                         capture_output=True, env={**os.environ, **env}, timeout=300)
    line = next(x for x in out.stdout.splitlines() if x.startswith("MODULES="))
    loaded: list[str] = json.loads(line.removeprefix("MODULES="))
    return loaded


@pytest.mark.slow
def test_dashboard_pages_on_a_seeded_store_import_no_torch_and_no_rllib(
        tmp_path: Path) -> None:
    uri = (tmp_path / "store").as_uri()
    seed_store(PolicyStore(uri))
    code = textwrap.dedent(f"""
        from streamlit.testing.v1 import AppTest
        import raytrade.dashboard.run_reader, raytrade.dashboard.context
        import raytrade.dashboard.jsonl_tail
        for page in {sorted(p.name for p in VIEWS.glob("*.py") if p.name != "__init__.py")!r}:
            at = AppTest.from_file({str(VIEWS)!r} + "/" + page, default_timeout=120)
            at.run()
            assert not at.exception, (page, [e.value for e in at.exception])
    """)
    loaded = _loaded(code, RAYTRADE_DASHBOARD_STORE=uri, RAYTRADE_DASHBOARD_ACTIONS="1")
    assert not [m for m in loaded if m == "torch" or m.startswith(("torch.", "ray.rllib"))], \
        loaded


def test_paper_actor_and_session_import_no_rllib() -> None:
    loaded = _loaded(textwrap.dedent("""
        import numpy as np
        import raytrade.actors.paper_actor, raytrade.actors.paper_session
        from raytrade.algos.live_experience import TransitionChunk
        TransitionChunk.of(np.zeros((3, 4), np.float32), [0, 1], [0.0, 0.1], "0" * 64)
    """))
    assert "ray" in loaded, "the actor does run on Ray"
    assert not [m for m in loaded if m.startswith("ray.rllib")], loaded


def test_storage_package_imports_neither_torch_nor_ray() -> None:
    loaded = _loaded("import raytrade.algos.storage.keys, raytrade.algos.storage.promotion, "
                     "raytrade.algos.storage.run_store, raytrade.algos.storage.policy_store\n")
    assert loaded == [], loaded
