"""A child process's own peak memory, for the tests and the benchmarks that bound it.

Read from ``/proc/PID/status``'s ``VmHWM``: the high-water mark of the process's memory
since its exec. The kernel's ``ru_maxrss`` would not do: Linux keeps it across ``exec``, so
a child of a larger process (a long pytest run, a benchmark that built its data) reports its
parent's peak when that is higher.
"""

from __future__ import annotations

from pathlib import Path


def high_water_kb(pid: int) -> int:
    """The peak RSS (KiB) of a running process's memory since its exec; 0 once it is gone."""
    try:
        status = Path(f"/proc/{pid}/status").read_text()
    except OSError:
        return 0
    return next((int(line.split()[1]) for line in status.splitlines() if line.startswith("VmHWM:")), 0)
