"""Where CPU time and memory go: utime+stime of chosen processes from ``/proc``, sampled before and after a
phase, and their peak resident size."""

from __future__ import annotations

import os
import time
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, replace
from pathlib import Path

PROC = Path("/proc")
TICKS_PER_SECOND = os.sysconf("SC_CLK_TCK")
# Fields of /proc/stat's "cpu" line that count busy time (idle and iowait do not).
_BUSY_FIELDS = (0, 1, 2, 5, 6, 7)  # user nice system irq softirq steal


def _process_ticks(pid: int) -> tuple[str, int] | None:
    """``(comm, utime + stime)`` of one process, or None if it is gone."""
    try:
        text = (PROC / str(pid) / "stat").read_text()
    except OSError:
        return None
    # comm may contain spaces and parentheses: it ends at the last ")".
    comm = text[text.index("(") + 1 : text.rindex(")")]
    fields = text[text.rindex(")") + 2 :].split()
    return comm, int(fields[11]) + int(fields[12])


def _all_pids() -> Iterator[int]:
    for entry in PROC.iterdir():
        if entry.name.isdigit():
            yield int(entry.name)


def _machine_busy_ticks() -> int:
    with (PROC / "stat").open() as stat:
        fields = stat.readline().split()[1:]
    return sum(int(fields[index]) for index in _BUSY_FIELDS)


@dataclass(frozen=True)
class CpuSnapshot:
    """Per-group, per-process CPU ticks and the machine's busy ticks at one moment."""

    machine: int
    groups: dict[str, dict[int, int]]


@dataclass(frozen=True)
class CpuUsage:
    """CPU seconds each group used over ``wall_seconds``; ``other`` is the machine's busy time nobody named."""

    wall_seconds: float
    machine_seconds: float
    groups: dict[str, float]

    @property
    def other_seconds(self) -> float:
        """Busy time outside the named groups (kernel threads, other tenants of the machine, ...)."""
        return max(0.0, self.machine_seconds - sum(self.groups.values()))

    def percent_of_core(self, seconds: float) -> float:
        """``seconds`` of CPU as a share of one core over the phase (200 % = both cores of this machine)."""
        return 100.0 * seconds / self.wall_seconds if self.wall_seconds > 0 else 0.0

    def with_group(self, name: str, seconds: float) -> CpuUsage:
        """This usage with one more group measured another way (a child that exited, from its rusage)."""
        return replace(self, groups={**self.groups, name: seconds})

    def to_json(self) -> dict[str, object]:
        """Seconds and % of one core per group, biggest first."""
        ranked = sorted(self.groups.items(), key=lambda item: item[1], reverse=True)
        return {
            "wall_seconds": round(self.wall_seconds, 3),
            "cores": os.cpu_count(),
            "machine_busy_percent_of_core": round(self.percent_of_core(self.machine_seconds), 1),
            "percent_of_core": {name: round(self.percent_of_core(s), 1) for name, s in ranked}
            | {"other": round(self.percent_of_core(self.other_seconds), 1)},
            "cpu_seconds": {name: round(s, 3) for name, s in ranked} | {"other": round(self.other_seconds, 3)},
        }


def machine_busy_percent(seconds: float = 1.0) -> float:
    """How busy the machine is right now, in % of one core, over ``seconds``."""
    before = _machine_busy_ticks()
    time.sleep(seconds)
    return 100.0 * (_machine_busy_ticks() - before) / TICKS_PER_SECOND / seconds


class CpuProbe:
    """Samples named processes (by pid) and every process whose name is one of ``by_comm`` (e.g. postgres)."""

    def __init__(self, pids: Mapping[str, int | None], by_comm: Mapping[str, str]) -> None:
        self._pids = {name: pid for name, pid in pids.items() if pid is not None}
        # comm -> group: Postgres and Redis run one process per connection or several, under one name.
        self._by_comm = {comm: group for group, comm in by_comm.items()}

    def snapshot(self) -> CpuSnapshot:
        """The counters now."""
        groups: dict[str, dict[int, int]] = {name: {} for name in [*self._pids, *self._by_comm.values()]}
        for name, pid in self._pids.items():
            sample = _process_ticks(pid)
            if sample is not None:
                groups[name][pid] = sample[1]
        named = set(self._pids.values())
        if self._by_comm:
            for pid in _all_pids():
                if pid in named:
                    continue
                sample = _process_ticks(pid)
                if sample is not None and sample[0] in self._by_comm:
                    groups[self._by_comm[sample[0]]][pid] = sample[1]
        return CpuSnapshot(machine=_machine_busy_ticks(), groups=groups)


def usage_between(before: CpuSnapshot, after: CpuSnapshot, wall_seconds: float) -> CpuUsage:
    """What each group used between two snapshots.

    A process that appeared in between counts whole; one that exited in between is lost (short-lived
    Postgres backends, for instance), so ``other`` can hold a little of a named group's time.
    """
    groups: dict[str, float] = {}
    for name, now in after.groups.items():
        earlier = before.groups.get(name, {})
        ticks = sum(value - earlier.get(pid, 0) for pid, value in now.items())
        groups[name] = ticks / TICKS_PER_SECOND
    return CpuUsage(
        wall_seconds=wall_seconds,
        machine_seconds=(after.machine - before.machine) / TICKS_PER_SECOND,
        groups=groups,
    )


def peak_resident_mb(pids: Mapping[str, int | None]) -> dict[str, float]:
    """Each named process's peak resident size so far (``VmHWM``), in MB; processes that are gone are left out."""
    peaks: dict[str, float] = {}
    for name, pid in pids.items():
        try:
            status = (PROC / str(pid) / "status").read_text()
        except (OSError, TypeError):
            continue
        for line in status.splitlines():
            if line.startswith("VmHWM:"):
                peaks[name] = round(int(line.split()[1]) / 1024, 1)
    return dict(sorted(peaks.items(), key=lambda item: item[1], reverse=True))
