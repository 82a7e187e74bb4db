"""gunicorn config for sse_kit: its hooks and a small thread stack, as documented."""

from sse_kit.gunicorn import post_fork, post_worker_init, set_thread_stack_size, worker_exit

__all__ = ["post_fork", "post_worker_init", "worker_exit"]

set_thread_stack_size(256 * 1024)
