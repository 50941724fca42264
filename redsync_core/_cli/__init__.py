"""The parts of the ``redsync`` command that do not fit in ``redsync_core/cli.py``."""
