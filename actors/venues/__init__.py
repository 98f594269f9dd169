"""The venue wing: production exchange adapters behind one protocol (``protocol.py``),
found by name in ``registry.py``. The loopback simulators used by tests, the demo and
replays live apart, in ``raytrade.actors.simulators``."""
