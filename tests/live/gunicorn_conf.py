"""gunicorn config for the live tests: sse_kit's hooks, as the docs tell users."""

from sse_kit.gunicorn import child_exit, post_fork, post_request, post_worker_init, worker_exit

__all__ = ["child_exit", "post_fork", "post_request", "post_worker_init", "worker_exit"]
