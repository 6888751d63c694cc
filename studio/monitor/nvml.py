"""Reading NVIDIA GPUs through NVML (the `pynvml` module from nvidia-ml-py).

Every call is guarded: a machine with no driver, or a GPU that stops answering, gives a clear
message instead of an exception, because the monitor must never take the studio down.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any


@dataclass(frozen=True)
class GpuInfo:
    index: int
    name: str
    memory_total_mb: float


class Nvml:
    """A started NVML session; `available` is False (with `message`) when there is none."""

    def __init__(self) -> None:
        self.available = False
        self.message = ""
        self._handles: list[Any] = []
        self.gpus: list[GpuInfo] = []
        try:
            import pynvml

            pynvml.nvmlInit()
            self._nv = pynvml
            count = pynvml.nvmlDeviceGetCount()
            for i in range(count):
                h = pynvml.nvmlDeviceGetHandleByIndex(i)
                name = pynvml.nvmlDeviceGetName(h)
                name = name.decode() if isinstance(name, bytes) else name
                mem = pynvml.nvmlDeviceGetMemoryInfo(h)
                self._handles.append(h)
                self.gpus.append(GpuInfo(i, name, mem.total / 2**20))
            self.available = count > 0
            self.message = "" if count else "NVIDIA driver found, but no GPU."
        except Exception as exc:  # ImportError, NVMLError_LibraryNotFound, DriverNotLoaded...
            self.message = f"No NVIDIA GPU found ({type(exc).__name__}): GPU charts are off; CPU workers are shown."

    def sample(self, index: int) -> dict[str, float | None]:
        """One reading of GPU `index`: utilization %, memory used MiB, temperature °C, power W, SM clock."""
        nv, h = self._nv, self._handles[index]

        def read(fn, *args, scale: float = 1.0):
            try:
                return fn(h, *args) / scale if scale != 1.0 else fn(h, *args)
            except Exception:
                return None

        util = None
        try:
            util = float(nv.nvmlDeviceGetUtilizationRates(h).gpu)
        except Exception:
            pass
        mem = None
        try:
            mem = nv.nvmlDeviceGetMemoryInfo(h).used / 2**20
        except Exception:
            pass
        return {
            "util": util,
            "mem_used_mb": mem,
            "temp_c": read(nv.nvmlDeviceGetTemperature, nv.NVML_TEMPERATURE_GPU),
            "power_w": read(nv.nvmlDeviceGetPowerUsage, scale=1000.0),
            "sm_clock_mhz": read(nv.nvmlDeviceGetClockInfo, nv.NVML_CLOCK_SM),
        }

    def close(self) -> None:
        if self.available:
            try:
                self._nv.nvmlShutdown()
            except Exception:
                pass
        self.available = False
