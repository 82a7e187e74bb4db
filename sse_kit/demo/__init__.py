"""The ``make demo`` app: a page whose ``EventSource`` shows sse_kit's routing live.

Run it with ``make demo`` (gunicorn gthread on http://127.0.0.1:8000), or with
``python -m sse_kit.demo`` on werkzeug's development server. The app factory is
:func:`sse_kit.demo.app.create_app`; ``import sse_kit`` never imports this package.
"""
