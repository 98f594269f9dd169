"""The live side: the policy executor, the paper session (feed client, bar sequencer and
joiner, watchdog, paper broker, journal, alerts) and its Ray actor; exchange adapters in
``venues``, loopback exchange simulators in ``simulators``."""
