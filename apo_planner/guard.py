"""A process group that dies with the process that started it, however that process ends.

`guard(pgid)` starts a small watchdog in a session of its own holding the read end of a pipe whose
write end only the starter holds. When the starter ends without disarming it (kill -9 included: the
kernel closes the pipe), the watchdog reads end-of-file and stops the whole group: SIGTERM, then
SIGKILL after a grace period. It also ends by itself once the group is gone. This covers what the
kernel's parent-death signal cannot: the group's other processes (vLLM's engine workers, the
processes `accelerate launch` starts), and systems without that signal.

Run as `python -m apo_planner.guard PGID FD GRACE_S` by `guard`, never by hand; this module uses only the
standard library (Python still imports the package's `__init__` first).
"""

from __future__ import annotations

import contextlib
import os
import select
import signal
import subprocess
import sys
import time

_armed: dict[int, int] = {}  # guarded group -> write end of its watchdog's pipe


def group_alive(pgid: int) -> bool:
    """Whether a process of group `pgid` still runs (zombies, dead but not yet reaped, do not count)."""
    try:
        os.killpg(pgid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    if not os.path.isdir("/proc"):
        return True
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            try:
                with open(f"/proc/{entry}/stat", encoding="utf-8", errors="replace") as f:
                    fields = f.read().rsplit(")", 1)[1].split()
            except OSError:
                continue
            if int(fields[2]) == pgid and fields[0] not in ("Z", "X"):  # state, ppid, pgrp
                return True
    return False


def guard(pgid: int, grace_s: float = 10.0) -> None:
    """Stop process group `pgid` when this process ends without calling `release(pgid)`."""
    read, write = os.pipe()
    try:
        subprocess.Popen(
            [sys.executable, "-m", "apo_planner.guard", str(pgid), str(read), str(grace_s)],
            pass_fds=(read,),
            stdin=subprocess.DEVNULL,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
            start_new_session=True,  # neither Ctrl-C at the terminal nor a signal to our group reaches it
        )
    except OSError:
        os.close(write)
        raise
    finally:
        os.close(read)
    _armed[pgid] = write


def release(pgid: int) -> None:
    """The group was stopped (or ended) as planned: the watchdog exits without signalling anybody."""
    write = _armed.pop(pgid, None)
    if write is not None:
        with contextlib.suppress(OSError):
            os.write(write, b"x")
        os.close(write)


def stop_group(pgid: int, grace_s: float) -> None:
    """SIGTERM the process group, wait up to `grace_s`, then SIGKILL it."""
    for sig, wait in ((signal.SIGTERM, grace_s), (signal.SIGKILL, 5.0)):
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(pgid, sig)
        deadline = time.monotonic() + wait
        while group_alive(pgid) and time.monotonic() < deadline:
            time.sleep(0.1)
        if not group_alive(pgid):
            return


def _watch(pgid: int, fd: int, grace_s: float) -> int:
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    signal.signal(signal.SIGHUP, signal.SIG_IGN)
    while True:
        ready, _, _ = select.select([fd], [], [], 1.0)
        if ready:
            if os.read(fd, 1):
                return 0  # disarmed: the starter stopped the group itself
            stop_group(pgid, grace_s)  # end of file: the starter is gone
            return 0
        if not group_alive(pgid):
            return 0


if __name__ == "__main__":
    sys.exit(_watch(int(sys.argv[1]), int(sys.argv[2]), float(sys.argv[3])))
