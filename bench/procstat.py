"""Memory and CPU of another process from /proc (psutil is not a dependency)."""

from __future__ import annotations

import dataclasses
import os
import time

_CLOCK_TICKS = os.sysconf("SC_CLK_TCK")


@dataclasses.dataclass(frozen=True)
class ProcSample:
    """One reading of a process: resident memory, its peak, CPU time used so far."""

    rss_kib: int
    hwm_kib: int
    cpu_seconds: float
    at: float

    @property
    def rss_mib(self) -> float:
        """Resident set size in MiB."""
        return self.rss_kib / 1024

    @property
    def hwm_mib(self) -> float:
        """Peak resident set size in MiB."""
        return self.hwm_kib / 1024


def read_sample(pid: int) -> ProcSample:
    """Read VmRSS/VmHWM from /proc/PID/status and utime+stime from /proc/PID/stat."""
    fields: dict[str, int] = {}
    with open(f"/proc/{pid}/status", encoding="ascii") as status:
        for line in status:
            key, _, value = line.partition(":")
            if key in ("VmRSS", "VmHWM"):
                fields[key] = int(value.split()[0])
    with open(f"/proc/{pid}/stat", encoding="ascii") as stat:
        text = stat.read()
    # The command name (field 2) may contain spaces: split after its closing parenthesis.
    rest = text[text.rindex(")") + 2 :].split()
    utime, stime = int(rest[11]), int(rest[12])
    return ProcSample(
        rss_kib=fields.get("VmRSS", 0),
        hwm_kib=fields.get("VmHWM", 0),
        cpu_seconds=(utime + stime) / _CLOCK_TICKS,
        at=time.time(),
    )
