"""The ``raytrade`` command line and benchmark scripts: argument parsing and wiring only."""
