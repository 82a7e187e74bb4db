"""gunicorn settings for ``make demo``: the demo's ticker thread, per worker.

``make demo`` runs::

    gunicorn -k sse_kit.gunicorn.ThreadWorker --threads 8 -w 1 \\
        -c examples/demo/gunicorn_conf.py -b 127.0.0.1:8000 'demo.app:create_app()'

The worker class starts the hub (see docs/deployment.md); this file only adds the
demo's ticker to ``post_worker_init`` and stops it in ``worker_exit``. It also
works with ``-k gthread``: sse_kit's hooks, called here, then start the hub (they
do nothing under the worker class, which has done it already).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from sse_kit.gunicorn import post_fork, post_request
from sse_kit.gunicorn import post_worker_init as _start_hubs
from sse_kit.gunicorn import worker_exit as _stop_hubs

__all__ = ["post_fork", "post_request", "post_worker_init", "worker_exit"]

# One process: without a backplane a hub reaches only its own worker's clients.
workers = 1
# examples/, where the ``demo`` package is (it is not installed): gunicorn puts it on
# sys.path before it loads 'demo.app:create_app()', whatever the working directory.
pythonpath = str(Path(__file__).resolve().parent.parent)


def post_worker_init(worker: Any) -> None:
    """Start the app's hub (sse_kit's hook), then the demo's ticker, in this worker."""
    from demo.app import demo_of  # importable once gunicorn has applied `pythonpath`

    _start_hubs(worker)
    demo = demo_of(getattr(worker, "wsgi", None))
    if demo is not None:
        demo.start()


def worker_exit(server: Any, worker: Any) -> None:
    """Stop the demo's threads, then the hubs (sse_kit's hook)."""
    from demo.app import demo_of

    demo = demo_of(getattr(worker, "wsgi", None))
    if demo is not None:
        demo.stop()
    _stop_hubs(server, worker)
