"""gunicorn config for the security live tests: sse_kit's hooks and its access
logger (no query strings of stream requests in the access log), access log on."""

from sse_kit.gunicorn import post_fork, post_request, post_worker_init, worker_exit

__all__ = [
    "accesslog", "logger_class", "post_fork", "post_request", "post_worker_init", "worker_exit",
]

accesslog = "-"
logger_class = "sse_kit.gunicorn.AccessLogger"
