"""What a worker reports about its own resources in each heartbeat: CPU use of its process since
the last heartbeat, and per GPU its utilisation and memory through NVML when a GPU is present
(nothing otherwise: NVML is not even initialised on a machine without /dev/nvidia*)."""

import glob
import logging
import os
import time
from typing import Any

logger = logging.getLogger(__name__)


class CpuMeter:
    """Percent of one core used by this process between two readings."""

    def __init__(self) -> None:
        self.last = (time.monotonic(), self._cpu_seconds())

    @staticmethod
    def _cpu_seconds() -> float:
        times = os.times()
        return times.user + times.system

    def percent(self) -> float:
        """This process's CPU use since the last call, in percent of one core."""
        now, cpu = time.monotonic(), self._cpu_seconds()
        wall = now - self.last[0]
        used = cpu - self.last[1]
        self.last = (now, cpu)
        return round(100 * used / wall, 1) if wall > 0 else 0.0


class GpuMeter:
    """GPU utilisation and memory through NVML, when a GPU and NVML are present."""

    def __init__(self) -> None:
        self.nvml: Any = None
        if not glob.glob("/dev/nvidia[0-9]*"):
            return
        try:
            import pynvml

            pynvml.nvmlInit()
            self.nvml = pynvml
        except Exception as exc:  # noqa: BLE001 - no NVML: report no GPU figures, never fail
            logger.warning("GPU present but NVML unavailable: %s", exc)

    def read(self) -> list[dict[str, Any]]:
        """Each GPU's utilisation and memory, or nothing without NVML."""
        if self.nvml is None:
            return []
        nvml = self.nvml
        gpus = []
        try:
            for index in range(nvml.nvmlDeviceGetCount()):
                handle = nvml.nvmlDeviceGetHandleByIndex(index)
                rates = nvml.nvmlDeviceGetUtilizationRates(handle)
                memory = nvml.nvmlDeviceGetMemoryInfo(handle)
                gpus.append({"index": index, "name": str(nvml.nvmlDeviceGetName(handle)), "util": rates.gpu,
                             "memory_used": memory.used, "memory_total": memory.total})
        except Exception as exc:  # noqa: BLE001
            logger.warning("NVML read failed: %s", exc)
        return gpus


def resident_bytes() -> int:
    """Current resident memory of this process (Linux), 0 where /proc is not there."""
    try:
        with open("/proc/self/statm") as statm:
            return int(statm.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")
    except (OSError, ValueError, IndexError):
        return 0


def process_alive(pid: Any) -> bool:
    """Whether a process of this host runs under `pid` (a zombie counts as gone only once reaped;
    not knowing counts as alive)."""
    if not isinstance(pid, int) or pid <= 0:
        return True
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except OSError:
        return True
    return True
