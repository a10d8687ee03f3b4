"""Budget governor: keep the device inside a temperature and memory budget.

Readings: the hottest ``thermal_zone*/temp`` (millidegrees C) under ``/sys/class/thermal`` (Pi and
Jetson both expose it), the process RSS (``/proc/self/statm``) and, when the process runs in a
memory-limited cgroup, its usage against ``memory.max`` (v2) or ``memory.limit_in_bytes`` (v1).

Policy: a ladder of steps applied in order while over budget, one step per ``dwell`` seconds, and
undone in reverse once back under budget by the hysteresis margin: lower the saliency rate (map
every k-th frame, prediction on every frame), switch to the next cheaper method, halve the
resolution, pause inference. Every change is a :class:`Decision` with its reason, logged and kept.
"""

from __future__ import annotations

import glob
import logging
import os
import resource
from collections import deque
from dataclasses import asdict, dataclass, replace
from pathlib import Path

log = logging.getLogger("edgesal.runtimes.governor")
POLICIES = ("rate", "method", "resolution", "pause")


@dataclass(frozen=True)
class Budget:
    """Limits (None: not watched) and how the governor reacts to them."""

    temp_limit: float | None = None  # degrees C
    mem_limit: int | None = None  # bytes of RSS
    temp_hysteresis: float = 5.0  # degrees C below the limit before stepping back
    mem_hysteresis: float = 0.1  # fraction below the limit before stepping back
    cgroup_fraction: float = 0.9  # cgroup usage / cgroup limit counted as over budget
    dwell: float = 2.0  # seconds between two decisions
    rate_steps: tuple[int, ...] = (2, 4)
    low_scale: float = 0.5
    policies: tuple[str, ...] = POLICIES


@dataclass(frozen=True)
class Reading:
    temp_c: float | None
    rss: int
    cgroup_used: int | None
    cgroup_limit: int | None


@dataclass(frozen=True)
class State:
    """What the pipeline does at the current level."""

    level: int = 0
    saliency_every: int = 1
    method_index: int = 0
    scale: float = 1.0
    paused: bool = False


@dataclass(frozen=True)
class Decision:
    time: float
    frame: int
    from_level: int
    to_level: int
    action: str
    reason: str


class Sensors:
    """Reads temperature and memory; folders are overridable so tests can fake them."""

    def __init__(self, thermal_dir: str = "/sys/class/thermal", cgroup_root: str | None = None):
        self.thermal_dir = thermal_dir
        self.cgroup_dir = Path(cgroup_root) if cgroup_root else _own_cgroup()

    def temperature(self) -> float | None:
        values = []
        for path in glob.glob(os.path.join(self.thermal_dir, "thermal_zone*", "temp")):
            try:
                raw = float(Path(path).read_text().strip())
            except (OSError, ValueError):
                continue
            values.append(raw / 1000.0 if abs(raw) > 200 else raw)
        return max(values) if values else None

    def cgroup(self) -> tuple[int | None, int | None]:
        """(usage, limit) in bytes of this process's cgroup; None where unknown or unlimited."""
        if self.cgroup_dir is None:
            return None, None
        for used_name, limit_name in (
            ("memory.current", "memory.max"),
            ("memory.usage_in_bytes", "memory.limit_in_bytes"),
        ):
            limit = _read_int(self.cgroup_dir / limit_name)
            if limit is not None or (self.cgroup_dir / used_name).exists():
                if limit is not None and limit >= 1 << 60:
                    limit = None
                return _read_int(self.cgroup_dir / used_name), limit
        return None, None

    def read(self) -> Reading:
        used, limit = self.cgroup()
        return Reading(self.temperature(), rss_bytes(), used, limit)


def rss_bytes() -> int:
    """Resident set size of this process now."""
    try:
        pages = int(Path("/proc/self/statm").read_text().split()[1])
        return pages * os.sysconf("SC_PAGE_SIZE")
    except (OSError, ValueError, IndexError):
        return peak_rss_bytes()


def peak_rss_bytes() -> int:
    """Peak resident set size of this process (Linux reports kilobytes)."""
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024


def _read_int(path: Path) -> int | None:
    try:
        text = path.read_text().strip()
    except OSError:
        return None
    return None if text == "max" or not text.isdigit() else int(text)


def _own_cgroup() -> Path | None:
    """The cgroup v2 folder of this process, or the v1 memory controller folder."""
    try:
        lines = Path("/proc/self/cgroup").read_text().splitlines()
    except OSError:
        return None
    for line in lines:
        parts = line.split(":", 2)
        if len(parts) != 3:
            continue
        if parts[0] == "0" and parts[1] == "":
            return Path("/sys/fs/cgroup") / parts[2].lstrip("/")
        if "memory" in parts[1].split(","):
            return Path("/sys/fs/cgroup/memory") / parts[2].lstrip("/")
    return None


@dataclass(frozen=True)
class Step:
    policy: str
    action: str
    apply: dict


def ladder(budget: Budget, methods: list[str]) -> list[Step]:
    """The ordered steps for these policies and these methods (index 0 = preferred method)."""
    steps: list[Step] = []
    for policy in budget.policies:
        if policy == "rate":
            steps += [
                Step("rate", f"saliency every {k} frames", {"saliency_every": k})
                for k in budget.rate_steps
            ]
        elif policy == "method":
            steps += [
                Step("method", f"switch to method {m}", {"method_index": i})
                for i, m in enumerate(methods)
                if i > 0
            ]
        elif policy == "resolution":
            steps.append(
                Step("resolution", f"resolution x{budget.low_scale:g}", {"scale": budget.low_scale})
            )
        elif policy == "pause":
            steps.append(Step("pause", "pause inference", {"paused": True}))
        else:
            raise ValueError(f"--policies: unknown policy '{policy}' (choose from {POLICIES})")
    return steps


class Governor:
    """Moves one step up the ladder while over budget, one down when back under with margin."""

    def __init__(self, budget: Budget, sensors: Sensors, methods: list[str], history: int = 200):
        self.budget, self.sensors = budget, sensors
        self.steps = ladder(budget, methods)
        self.state = State()
        self.reading: Reading | None = None
        self.decisions: deque[Decision] = deque(maxlen=history)
        self._last_change = float("-inf")

    def state_at(self, level: int) -> State:
        state = State(level=level)
        for step in self.steps[:level]:
            state = replace(state, **step.apply)
        return state

    def over(self, r: Reading) -> str | None:
        """Why the reading is over budget, or None."""
        b = self.budget
        if b.temp_limit is not None and r.temp_c is not None and r.temp_c >= b.temp_limit:
            return f"temperature {r.temp_c:.1f} C >= limit {b.temp_limit:g} C"
        if b.mem_limit is not None and r.rss >= b.mem_limit:
            return f"RSS {r.rss / 2**20:.0f} MB >= limit {b.mem_limit / 2**20:.0f} MB"
        if r.cgroup_limit and r.cgroup_used is not None:
            if r.cgroup_used >= b.cgroup_fraction * r.cgroup_limit:
                return (
                    f"cgroup memory {r.cgroup_used / 2**20:.0f} MB >= "
                    f"{b.cgroup_fraction:.0%} of {r.cgroup_limit / 2**20:.0f} MB"
                )
        return None

    def under(self, r: Reading) -> str | None:
        """Why the reading is under budget by the hysteresis margins, or None."""
        b = self.budget
        reasons = []
        if b.temp_limit is not None and r.temp_c is not None:
            cool = b.temp_limit - b.temp_hysteresis
            if r.temp_c > cool:
                return None
            reasons.append(f"temperature {r.temp_c:.1f} C <= {cool:g} C")
        if b.mem_limit is not None:
            low = b.mem_limit * (1 - b.mem_hysteresis)
            if r.rss > low:
                return None
            reasons.append(f"RSS {r.rss / 2**20:.0f} MB <= {low / 2**20:.0f} MB")
        if r.cgroup_limit and r.cgroup_used is not None:
            low = (b.cgroup_fraction - b.mem_hysteresis) * r.cgroup_limit
            if r.cgroup_used > low:
                return None
            reasons.append(f"cgroup memory {r.cgroup_used / 2**20:.0f} MB <= {low / 2**20:.0f} MB")
        return "; ".join(reasons) or "no limit exceeded"

    def update(self, now: float, frame: int) -> Decision | None:
        """Read the sensors and maybe move one step; returns the decision when one was made."""
        self.reading = reading = self.sensors.read()
        if now - self._last_change < self.budget.dwell:
            return None
        level = self.state.level
        hot = self.over(reading)
        if hot and level < len(self.steps):
            return self._move(now, frame, level + 1, self.steps[level].action, hot)
        if not hot and level > 0:
            cool = self.under(reading)
            if cool:
                return self._move(
                    now, frame, level - 1, "undo " + self.steps[level - 1].action, cool
                )
        return None

    def _move(self, now: float, frame: int, level: int, action: str, reason: str) -> Decision:
        decision = Decision(now, frame, self.state.level, level, action, reason)
        self.state = self.state_at(level)
        self._last_change = now
        self.decisions.append(decision)
        log.warning("governor: level %d -> %d: %s (%s)", decision.from_level, level, action, reason)
        return decision

    def snapshot(self) -> dict:
        """State, last reading and recent decisions, for the status page and the records."""
        r = self.reading
        return {
            "state": asdict(self.state),
            "levels": len(self.steps),
            "temperature_c": r.temp_c if r else None,
            "rss_bytes": r.rss if r else None,
            "cgroup_used_bytes": r.cgroup_used if r else None,
            "cgroup_limit_bytes": r.cgroup_limit if r else None,
            "decisions": [asdict(d) for d in list(self.decisions)[-20:]],
        }
