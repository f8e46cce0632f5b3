"""Logging for workflow scripts: messages go to the rule's log file and to the console.

Progress bars (tqdm writes to stderr) go to the log file only, so that parallel jobs do not
interleave bars on the terminal while ``tail -f`` on a log still shows live progress. The
redirection is done on file descriptors 1 and 2, so that output of native code (the JVM behind
pyserini, vLLM's workers) lands in the log too.
"""

from __future__ import annotations

import contextlib
import logging
import os
import sys
from collections.abc import Iterator
from pathlib import Path

FORMAT = "%(asctime)s %(levelname)s %(name)s: %(message)s"


@contextlib.contextmanager
def script_logging(log_path: str | Path, name: str) -> Iterator[logging.Logger]:
    """Log to ``log_path`` (and INFO to the console); stderr goes to the log file.

    An exception escaping the block is logged with its traceback before it propagates, so the
    log file always says why a job failed.
    """
    Path(log_path).parent.mkdir(parents=True, exist_ok=True)
    sys.stdout.flush()
    sys.stderr.flush()
    saved = {fd: os.dup(fd) for fd in (1, 2)}
    console = os.fdopen(os.dup(saved[2]), "w", buffering=1)
    with open(log_path, "w", encoding="utf-8", buffering=1) as handle, console:
        for fd in (1, 2):
            os.dup2(handle.fileno(), fd)
        root = logging.getLogger()
        root.setLevel(logging.INFO)
        file_handler = logging.StreamHandler(handle)
        file_handler.setFormatter(logging.Formatter(FORMAT))
        console_handler = logging.StreamHandler(console)
        console_handler.setFormatter(logging.Formatter(f"[{name}] %(message)s"))
        root.addHandler(file_handler)
        root.addHandler(console_handler)
        logger = logging.getLogger(name)
        try:
            with contextlib.redirect_stderr(handle):
                yield logger
        except Exception:
            logger.exception("failed")
            raise
        finally:
            root.removeHandler(file_handler)
            root.removeHandler(console_handler)
            sys.stdout.flush()
            sys.stderr.flush()
            for fd, copy in saved.items():
                os.dup2(copy, fd)
                os.close(copy)
