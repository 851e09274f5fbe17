"""``python -m bench.forkserver ARGS…``: imports ``python -m web_bot`` once, then, for each line read on stdin (a log
file's path), starts a fresh server process: a fork of this one running ``web_bot.__main__.main(ARGS)``, its output
in that file; it writes each one's pid on stdout.

A crash test starts the server dozens of times, and on a busy 2-core machine each start spends 5-20 s importing
FastAPI, SQLAlchemy and the OpenAI client before it runs any of the server's own code. A fork has those imports done
and runs exactly what ``python -m web_bot`` runs from there on, in a process of its own (its own event loop,
database connections and sockets), which a SIGKILL kills alone.
"""

from __future__ import annotations

import contextlib
import importlib
import os
import signal
import sys

# What a start imports lazily (the speech models' runtime, uvicorn's protocols): imported once here too.
PREIMPORTS = (
    "onnxruntime", "uvloop", "httptools", "uvicorn.protocols.http.auto", "uvicorn.protocols.websockets.auto",
    "uvicorn.lifespan.on", "core.stt.openai_stt", "core.voice.vad", "lingua",
)


def main(argv: list[str]) -> int:
    import web_bot.__main__ as served  # the imports every fork shares

    for name in PREIMPORTS:
        with contextlib.suppress(ImportError):
            importlib.import_module(name)

    # Children are reaped by the kernel: a killed server is gone at once, and no zombie stays.
    signal.signal(signal.SIGCHLD, signal.SIG_IGN)
    for line in sys.stdin:
        log = line.strip()
        if not log:
            continue
        sys.stdout.flush()
        pid = os.fork()
        if pid == 0:
            signal.signal(signal.SIGCHLD, signal.SIG_DFL)
            out = os.open(log, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o644)
            os.dup2(out, 1)
            os.dup2(out, 2)
            os.dup2(os.open(os.devnull, os.O_RDONLY), 0)
            code = 70  # EX_SOFTWARE, if main raises
            try:
                code = served.main(argv)
            finally:
                sys.stdout.flush()
                sys.stderr.flush()
                os._exit(code)
        print(pid, flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
