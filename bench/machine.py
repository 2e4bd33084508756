"""What every benchmark prints first: the machine its numbers came from (imported by the scripts beside it)."""

from __future__ import annotations

import os
import platform
from pathlib import Path


def cpu_model() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def describe(**extra: object) -> str:
    """CPU model, cores, load average (other work inflates timings), Python and OS, then ``extra`` as ``name value``."""
    load = ", ".join(f"{x:.2f}" for x in os.getloadavg())
    parts = [
        f"{cpu_model()} ({platform.machine()})",
        f"{os.cpu_count()} cores",
        f"load average {load}",
        f"Python {platform.python_version()}",
        f"{platform.system()} {platform.release()}",
        *(f"{name} {value}" for name, value in extra.items()),
    ]
    return ", ".join(parts)
