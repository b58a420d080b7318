"""Running a plan: the one runner loop, the backends (inline, thread, process), workers, values."""
