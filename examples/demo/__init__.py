"""The ``make demo`` app: a page whose ``EventSource`` shows sse_kit's routing live.

It lives in ``examples/``, outside the installed package: run it from a checkout with
``make demo`` (gunicorn gthread on http://127.0.0.1:8000), or with ``python -m demo``
from ``examples/`` on werkzeug's development server. The app factory is
:func:`demo.app.create_app`.
"""
