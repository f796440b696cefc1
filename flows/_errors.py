"""How `micn` shows a failure: one paragraph on stderr, exit status 2 for what the user can fix.

Stage code raises `MicnError` with a message that names the file, key or line. Everything else
that a user can cause or meet without a bug in micn (a full disk, a read-only folder, a DuckDB
file another process holds, a file nested too deeply to parse) is turned into one paragraph here,
as a fallback for the places that do not catch it themselves. Anything else is a bug: one
paragraph saying so, exit status 1, and the traceback behind `micn --debug`.
"""

from __future__ import annotations

import errno
import sys
import traceback
from collections.abc import Callable

from micn.errors import MicnError

EXIT_OK = 0
EXIT_BUG = 1
EXIT_USAGE = 2
EXIT_INTERRUPTED = 130
EXIT_TERMINATED = 143  # 128 + SIGTERM, what a shell reports for a process the signal ended


def stop_on_sigterm(command: str | None) -> None:
    """On SIGTERM print one line and exit 143 at once. Every file a command writes goes through a
    temporary file and a rename, and training checkpoints every epoch, so stopping anywhere leaves
    earlier results intact and the same command resumes; exiting at once (not after the grid's
    worker threads finish their runs) is what a service manager's stop expects."""
    import os
    import signal
    import threading

    prefix = f"micn {command}" if command else "micn"

    def stop(signum=None, frame=None) -> None:  # noqa: ARG001 - the signal handler signature
        tqdm = sys.modules.get("tqdm")
        bar_open = tqdm is not None and bool(getattr(tqdm.tqdm, "_instances", None))  # its last redraw ends no line
        sys.stderr.write(("\n" if bar_open else "") + f"{prefix}: stopped (SIGTERM); rerun the same command to resume\n")
        sys.stderr.flush()
        os._exit(EXIT_TERMINATED)

    signal.signal(signal.SIGTERM, stop)
    # The kernel may hand the signal to any thread (a grid's worker, Prefect's); Python then only
    # sets a flag that the main thread acts on when it next runs Python, which a main thread
    # blocked until a run ends does not. Python's C handler also writes the signal's number to a
    # wake-up pipe, whatever the thread: a watcher thread reading it stops the command at once.
    read_end, write_end = os.pipe()
    os.set_blocking(write_end, False)
    signal.set_wakeup_fd(write_end, warn_on_full_buffer=False)

    def watch() -> None:
        while True:
            if signal.SIGTERM in os.read(read_end, 64):
                stop()

    threading.Thread(target=watch, name="micn-sigterm", daemon=True).start()


def run_guarded(fn: Callable[[], None], command: str | None, *, debug: bool = False) -> int:
    """Run `fn`; the exit status, after printing any failure as one paragraph (plus traceback if debug)."""
    prefix = f"micn {command}" if command else "micn"
    try:
        fn()
        return EXIT_OK
    except KeyboardInterrupt:
        print(f"{prefix}: interrupted", file=sys.stderr)
        return EXIT_INTERRUPTED
    except Exception as e:  # noqa: BLE001 - the one place that turns every failure into a message
        if debug:
            traceback.print_exc()
        status, message = describe(e)
        if status == EXIT_BUG:
            rerun = f"micn --debug {command} ..." if command else "micn --debug ..."
            message += f" This is a bug in micn, not in your input; rerun with `{rerun}` for the traceback."
        print(f"{prefix}: error: {message}", file=sys.stderr)
        return status


def describe(e: BaseException) -> tuple[int, str]:
    """(exit status, one-paragraph message) of an exception; causes are searched for a known kind."""
    for cause in _chain(e):
        if isinstance(cause, MicnError):
            return EXIT_USAGE, str(cause)
    for cause in _chain(e):
        if isinstance(cause, OSError):
            return EXIT_USAGE, os_error_message(cause)
        if _is_duckdb_io(cause):
            return EXIT_USAGE, _duckdb_message(cause)
        if isinstance(cause, RecursionError):
            return EXIT_USAGE, ("an input is nested too deeply to read (Python's recursion limit); check the files "
                                "you passed for deeply nested JSON or YAML.")
    return EXIT_BUG, f"internal error: {type(e).__name__}: {_one_paragraph(str(e)) or 'no message'}."


def os_error_message(e: OSError) -> str:
    """An OSError as a sentence naming the file and what to do."""
    name = e.filename if e.filename is not None else "a file"
    if e.filename2 is not None:
        name = f"{e.filename} -> {e.filename2}"
    if e.errno == errno.ENOSPC or e.errno == errno.EDQUOT:
        return f"disk full writing {name}; free some space (or point the output elsewhere) and rerun."
    if e.errno == errno.EROFS:
        return f"cannot write {name}: the file system is read-only; choose a writable output folder."
    if e.errno in (errno.EACCES, errno.EPERM):
        return f"cannot write {name}: permission denied; check the folder's permissions or choose another one."
    if e.errno == errno.ENOENT:
        return f"{name}: no such file or directory."
    if e.errno == errno.EISDIR:
        return f"{name}: is a directory, where a file was expected."
    if e.errno == errno.ENOTDIR:
        return f"{name}: a path component is a file, where a directory was expected."
    return f"{name}: {e.strerror or e}."


def _is_duckdb_io(e: BaseException) -> bool:
    """DuckDB's errors about files (a lock, not a database, unreadable, out of memory), which a user
    meets; its SQL errors (binder, parser, ...) stay bugs. By name: duckdb need not be imported."""
    names = {c.__name__ for c in type(e).__mro__ if c.__module__.lstrip("_").startswith("duckdb")}
    return bool(names & {"IOException", "PermissionException", "OutOfMemoryException"})


def _duckdb_message(e: BaseException) -> str:
    text = _one_paragraph(str(e))
    if "lock" in text.lower():
        return (f"a DuckDB database is held by another process ({text}); wait for that process (another micn "
                "command or a notebook) to finish, or close it, and rerun.")
    return f"DuckDB: {text}"


def _chain(e: BaseException) -> list[BaseException]:
    seen: list[BaseException] = []
    while e is not None and e not in seen:
        seen.append(e)
        e = e.__cause__ or e.__context__
    return seen


def _one_paragraph(text: str) -> str:
    return " ".join(text.split())
