"""The server process: ``llama_cpp.server`` bound to the life of the process that started it.

Run as ``python -m forgemind_llamacpp._serve <llama_cpp.server arguments>`` by
:class:`forgemind_llamacpp.LlamaCppServer`. Two guards end it when its parent ends, even by
SIGKILL (which runs no clean-up in the parent):

1. stdin is a pipe whose only writer is the parent: when the parent dies the kernel closes it,
   a thread here reads end-of-file and ends the process at once;
2. on Linux, ``prctl(PR_SET_PDEATHSIG, SIGKILL)`` as a second guard, only when the parent
   started us from its main thread (the signal fires when the *thread* that forked the child
   ends, so from a worker thread it would kill a server the process still needs).

A parent that died before the guards were in place is noticed through ``os.getppid()``.
"""

from __future__ import annotations

import ctypes
import os
import runpy
import signal
import sys
import threading

#: Set to the starting process's pid when it started us from its main thread.
PARENT_ENV = "FORGEMIND_SERVER_PARENT"
PR_SET_PDEATHSIG = 1


def _watch_stdin() -> None:
    try:
        while os.read(0, 4096):
            pass
    except OSError:
        pass
    os._exit(0)  # the parent is gone (or closed the pipe to stop us): nothing to save


def guard() -> None:
    """Install both guards (call first thing in the server process)."""
    parent = os.environ.pop(PARENT_ENV, "")
    if parent and sys.platform.startswith("linux"):
        libc = ctypes.CDLL(None, use_errno=True)
        libc.prctl(PR_SET_PDEATHSIG, signal.SIGKILL, 0, 0, 0)
        if str(os.getppid()) != parent:  # died before prctl took effect
            os._exit(1)
    threading.Thread(target=_watch_stdin, name="parent-watch", daemon=True).start()


def main() -> None:
    guard()
    sys.argv = ["llama_cpp.server", *sys.argv[1:]]
    runpy.run_module("llama_cpp.server", run_name="__main__", alter_sys=True)


if __name__ == "__main__":
    main()
