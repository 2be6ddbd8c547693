"""Gunicorn hooks only (read from the working directory /app by default); the
flags stay on the command line in start_production.sh, exactly as in the guide."""

from prometheus_client import multiprocess


def child_exit(server, worker):
    """Let prometheus_client drop the live gauges of a worker that exited."""
    multiprocess.mark_process_dead(worker.pid)
