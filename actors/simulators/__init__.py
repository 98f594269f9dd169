"""Loopback simulators of exchange protocols, for tests, the demo and replays: a Binance
spot replay server (``replay_server.py``, the ``replay`` venue of ``replay_venue.py``) and
a Coinbase Exchange server (``coinbase_server.py``). They serve historical bars the way
the exchanges serve live ones, faults included; production adapters are in
``raytrade.actors.venues`` and never import from here (only the venue registry names the
``replay`` venue, so ``--feed replay`` can reach these servers)."""
