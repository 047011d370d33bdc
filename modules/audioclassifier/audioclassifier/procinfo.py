"""Facts about this process for status and benchmarks: its start time and peak memory."""

from __future__ import annotations

import os
import resource
import sys
import time

__all__ = ["peak_rss_mb", "process_start_time", "seconds_since_start"]

_IMPORTED = time.time()


def process_start_time() -> float:
    """POSIX time at which this process started (Linux: /proc; elsewhere: when this was imported)."""
    try:
        with open("/proc/self/stat", "rb") as fh:
            fields = fh.read().rsplit(b")", 1)[1].split()
        ticks = int(fields[19])  # field 22 of stat(5), counted after the ")" that ends the name
        with open("/proc/uptime", "rb") as fh:
            uptime = float(fh.read().split()[0])
        return time.time() - uptime + ticks / os.sysconf("SC_CLK_TCK")
    except (OSError, ValueError, IndexError):
        return _IMPORTED


def seconds_since_start() -> float:
    """Seconds since this process started."""
    return time.time() - process_start_time()


def peak_rss_mb() -> float:
    """Peak resident set size of this program in MiB.

    Linux: ``VmHWM`` of /proc/self/status, which counts this program only; ``ru_maxrss`` also
    counts the parent's memory copied at fork, before this program was exec'd.
    """
    try:
        with open("/proc/self/status", "rb") as fh:
            for line in fh:
                if line.startswith(b"VmHWM:"):
                    return int(line.split()[1]) / 1024
    except (OSError, ValueError, IndexError):
        pass
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return peak / (1024 * 1024) if sys.platform == "darwin" else peak / 1024
