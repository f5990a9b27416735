"""Peak resident memory of the current process. `python -m edgecifar.benchmark.rss` prints it for a
bare interpreter: the baseline the report subtracts. Imports nothing heavy on purpose."""

from __future__ import annotations

import json
import resource


def peak_rss_kb() -> tuple[int, str]:
    """Peak resident memory of this process so far, in KiB, and how it was read.

    Linux's ru_maxrss of a child starts from the *parent's* peak (the high-water mark of the
    address space forked before exec), so a big parent would inflate every child. VmHWM is the
    peak of this process's own address space since exec: the number ru_maxrss is meant to be.
    """
    try:
        with open("/proc/self/status") as f:
            for line in f:
                if line.startswith("VmHWM:"):
                    return int(line.split()[1]), "VmHWM"
    except OSError:
        pass
    return int(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss), "ru_maxrss"  # KiB on Linux, bytes on macOS


if __name__ == "__main__":
    kb, source = peak_rss_kb()
    print(json.dumps({"rss_kb": kb, "rss_source": source}))
