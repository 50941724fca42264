"""Extension objects, created once and bound to each app by ``create_app``."""

from redsync_flask import Redsync

redsync = Redsync()
