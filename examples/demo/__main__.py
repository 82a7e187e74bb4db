"""``python -m demo [port]``, from ``examples/``: the demo on werkzeug's development server.

For a quick look without gunicorn; ``make demo`` is the real thing.
"""

from __future__ import annotations

import sys

from demo.app import create_app, demo_of


def main(argv: list[str]) -> None:
    """Serve the demo on 127.0.0.1 (port 8000 unless given) until Ctrl-C."""
    port = int(argv[0]) if argv else 8000
    app = create_app()
    demo = demo_of(app)
    assert demo is not None
    demo.start()
    try:
        app.run(host="127.0.0.1", port=port, threaded=True)
    finally:
        demo.stop()


if __name__ == "__main__":
    main(sys.argv[1:])
