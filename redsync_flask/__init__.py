"""redsync_flask: Redlock locks for Flask apps, a thin translation onto ``redsync_core``.

::

    from redsync_flask import Redsync

    redsync = Redsync()

    def create_app():
        app = Flask(__name__)
        app.config["REDSYNC_URLS"] = ["redis://10.0.0.1:6379/0", ...]
        redsync.init_app(app)        # app.extensions["redsync"] is the app's core Redsync
        return app

    @bp.post("/pay/<int:order_id>")
    @redsync.locked("pay:{order_id}")   # busy: 409 + Retry-After, the body does not run
    def pay(order_id): ...

Config keys are read in ``redsync_flask.conf``; the ``flask redsync`` commands live in
``redsync_flask.cli``.
"""

from .extension import LockBusy as LockBusy
from .extension import Redsync as Redsync

__all__ = ["LockBusy", "Redsync"]
