"""Loopback simulators of exchange protocols, for tests, the demo and replays: a Binance
spot replay server (``replay_server.py``, the ``replay`` venue of ``replay_venue.py``), a
Coinbase Exchange server (``coinbase_server.py``) and a Binance exchange that takes orders
(``binance_exchange.py``, ``raytrade exchange sim``: spot and USD-M futures, filling at a
replay's prices). They serve historical bars and trade the way the exchanges do, faults
included; production adapters are in ``raytrade.actors.venues`` and never import from
here (only the venue registry names the ``replay`` venue, so ``--feed replay`` can reach
these servers)."""
