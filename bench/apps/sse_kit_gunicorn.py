"""gunicorn config for sse_kit with ``-k gthread``: its hooks and a small thread
stack, as the docstring of :mod:`sse_kit.gunicorn` documents them."""

from sse_kit.gunicorn import (
    child_exit,
    post_fork,
    post_request,
    post_worker_init,
    set_thread_stack_size,
    worker_exit,
)

__all__ = ["child_exit", "post_fork", "post_request", "post_worker_init", "worker_exit"]

set_thread_stack_size(256 * 1024)
