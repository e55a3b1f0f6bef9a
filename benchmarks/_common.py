"""Shared helpers for the benchmarks: timing a child process with its peak memory, the
machine's description, and writing one section of BENCHMARKS.md."""

from __future__ import annotations

import json
import os
import platform
import re
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
DATA = ROOT / "benchmarks" / ".data"
BENCHMARKS_MD = ROOT / "BENCHMARKS.md"


def machine() -> str:
    """One line describing this machine (CPU model, cores, memory, Python)."""
    cpu = platform.processor() or platform.machine()
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    mem_gib = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") / 2**30
    return (
        f"{cpu}, {os.cpu_count()} cores, {mem_gib:.0f} GiB RAM, "
        f"Python {platform.python_version()}, {platform.system()} {platform.release()}"
    )


def shared_note(*loads: float) -> str:
    """' (other work shared the cores)' when any load average reached the core count, else ''."""
    cores = os.cpu_count() or 1
    return " (other work shared the cores)" if max(loads, default=0.0) >= cores else ""


def run_measured(args: list[str], env: dict | None = None) -> dict:
    """Run ``args`` in a child process; return wall seconds, its peak RSS (MiB) and stdout.

    The child's last stdout line, if it is JSON, is parsed into ``result``.
    """
    import tempfile

    # A child forked from this (large) process starts with this process's peak RSS on its
    # books; GNU time forks the measured command from a small process, so its figure is the
    # command's own.
    gnu_time = Path("/usr/bin/time")
    wrapped = [str(gnu_time), "-f", "__maxrss_kib=%M", *args] if gnu_time.exists() else args
    with tempfile.TemporaryFile("w+") as out, tempfile.TemporaryFile("w+") as err:
        t0 = time.perf_counter()
        proc = subprocess.Popen(wrapped, stdout=out, stderr=err,
                                env={**os.environ, **(env or {})})
        _, status, usage = os.wait4(proc.pid, 0)
        seconds = time.perf_counter() - t0
        proc.returncode = os.waitstatus_to_exitcode(status)
        out.seek(0)
        err.seek(0)
        stdout, stderr = out.read(), err.read()
    peak = usage.ru_maxrss / 1024
    m = re.search(r"__maxrss_kib=(\d+)", stderr)
    if m:
        peak = int(m.group(1)) / 1024
        stderr = stderr.replace(m.group(0), "")
    if proc.returncode != 0:
        raise RuntimeError(f"{args} failed ({proc.returncode}):\n{stderr[-4000:]}")
    result = None
    lines = [ln for ln in stdout.strip().splitlines() if ln.strip()]
    if lines:
        try:
            result = json.loads(lines[-1])
        except json.JSONDecodeError:
            result = None
    return {
        "seconds": seconds,
        "peak_rss_mib": peak,
        "stdout": stdout,
        "stderr": stderr,
        "result": result,
    }


def child(module: str, *args: str) -> list[str]:
    """The command line that runs ``python -m module args`` with this interpreter."""
    return [sys.executable, "-m", module, *args]


def peak_rss_mib() -> float:
    """Peak resident memory of this process so far, in MiB (Linux reports KiB)."""
    import resource

    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def update_section(name: str, markdown: str) -> None:
    """Replace (or append) the section of BENCHMARKS.md between the markers for ``name``."""
    start, end = f"<!-- bench:{name} -->", f"<!-- /bench:{name} -->"
    block = f"{start}\n{markdown.rstrip()}\n{end}"
    text = BENCHMARKS_MD.read_text() if BENCHMARKS_MD.exists() else "# Benchmarks\n"
    pattern = re.compile(re.escape(start) + ".*?" + re.escape(end), re.S)
    if pattern.search(text):
        text = pattern.sub(lambda _m: block, text)
    else:
        text = text.rstrip() + "\n\n" + block + "\n"
    BENCHMARKS_MD.write_text(text)


def fmt_ratio(ours: float, peer: float) -> str:
    """``peer / ours`` as 'N.Nx faster' or 'N.Nx slower'."""
    if ours <= 0:
        return "n/a"
    r = peer / ours
    return f"{r:.1f}x faster" if r >= 1 else f"{1 / r:.1f}x slower"
