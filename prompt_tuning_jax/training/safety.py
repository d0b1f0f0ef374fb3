"""What keeps a run's MODEL_DIR trustworthy: one run per directory, a clean stop on a signal, no half
writes on a full disk.

* `lock_dir(path)`: MODEL_DIR/run.lock names the holder (host, pid) and is held with flock while the run
  lives; a second run on the directory is refused naming the holder; a lock left by a process that is gone
  (killed, or its host rebooted) is taken over with a printed line. `release_locks()` (fit.fit calls it
  when done, the command line on every exit, errors included, and atexit) removes it.
* `stop_on_signals()`: around the training loop, SIGTERM and SIGINT only ask the loop to stop; it finishes
  the step, checkpoints it and raises `Stopped`, which the command line prints as one line and turns into
  exit status 128 + the signal number (143 for SIGTERM, 130 for SIGINT: what a shell reports for a process
  the signal ended). A second signal acts as it would without the handler. Rerunning resumes there.
* `check_free_space` and `disk_full`: a write that does not fit on the disk is one `DiskFullError` line naming
  the path and the bytes needed; writers go to a temporary name and rename, so what was there stays.
"""

import atexit
import contextlib
import errno
import fcntl
import json
import os
import shutil
import signal
import socket
import threading
import time
from pathlib import Path
from typing import Callable, Dict, Iterator, Optional

from prompt_tuning_jax import errors

LOCK_NAME = "run.lock"
STOP_SIGNALS = (signal.SIGTERM, signal.SIGINT)


class ModelDirInUseError(errors.NotWritableError):
  """Another live run holds the directory's lock."""


class DiskFullError(errors.NotWritableError):
  """A checkpoint, export or other output does not fit on its disk; what was written before is kept."""


class Stopped(Exception):
  """Training stopped on a signal after checkpointing its last step (not a user error: exit 128 + signum)."""

  def __init__(self, message: str, signum: int):
    super().__init__(message)
    self.signum = signum

  @property
  def exit_status(self) -> int:
    return 128 + self.signum


# --- One run per directory -------------------------------------------------------------------------------------

_held: Dict[Path, int] = {}  # lock path -> the open descriptor holding its flock


def _holder(text: str) -> dict:
  try:
    holder = json.loads(text)
    return holder if isinstance(holder, dict) else {}
  except ValueError:
    return {}


def _describe(holder: dict) -> str:
  return f"host {holder.get('host', '?')} pid {holder.get('pid', '?')}" + (
      f" (since {holder['started']})" if holder.get("started") else "")


def _alive(pid) -> bool:
  try:
    os.kill(int(pid), 0)
  except ProcessLookupError:
    return False
  except (PermissionError, TypeError, ValueError):
    return True  # Someone else's live process (or an unreadable pid: be careful, treat it as live).
  return True


def lock_dir(directory, what: str = "MODEL_DIR") -> Path:
  """Takes `directory`/run.lock for this process (re-entrant); returns its path.

  Raises ModelDirInUseError naming the holder when a live run holds it. The flock is the proof of life (the
  kernel drops it with the process); the recorded pid also guards file systems where flock is a no-op.
  """
  path = (Path(directory) / LOCK_NAME).resolve()
  if path in _held:
    return path
  host, pid = socket.gethostname(), os.getpid()
  while True:
    fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
    try:
      fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except OSError as e:
      os.close(fd)
      if e.errno not in (errno.EWOULDBLOCK, errno.EAGAIN, errno.EACCES):
        raise
      raise ModelDirInUseError(f"{what} {path.parent} is in use by another run ({_describe(_holder(_read(path)))} "
                               f"holds {path}); wait for it to finish, stop it, or choose another {what}.") from None
    try:
      same_file = os.fstat(fd).st_ino == os.stat(path).st_ino
    except FileNotFoundError:
      same_file = False
    if same_file:
      break
    os.close(fd)  # The holder released (removed) the file between our open and flock: try the new one.
  try:  # Until the lock is recorded in _held, an error (a full disk) must not leave the descriptor locked.
    previous = _holder(os.pread(fd, 1 << 16, 0).decode(errors="replace"))
    if previous and (previous.get("host"), previous.get("pid")) != (host, pid):
      if previous.get("host") == host and _alive(previous.get("pid")):
        raise ModelDirInUseError(f"{what} {path.parent} is in use by another run ({_describe(previous)} holds "
                                 f"{path} and is running); stop it, choose another {what}, or delete {path} if that "
                                 "process is not a training run.")
      print(f"Took over the stale lock {path} of {_describe(previous)}: no live process holds it.", flush=True)
    os.ftruncate(fd, 0)
    os.pwrite(fd, json.dumps({"host": host, "pid": pid, "started": time.strftime("%Y-%m-%d %H:%M:%S")}).encode(), 0)
  except BaseException:
    os.close(fd)
    raise
  _held[path] = fd
  return path


def _read(path: Path) -> str:
  try:
    return path.read_text(errors="replace")
  except OSError:
    return ""


def release_locks(directory=None) -> None:
  """Removes and releases the lock this process holds on `directory`, or every lock it holds (idempotent)."""
  only = None if directory is None else (Path(directory) / LOCK_NAME).resolve()
  for path, fd in list(_held.items()):
    if only is not None and path != only:
      continue
    try:
      if os.stat(path).st_ino == os.fstat(fd).st_ino:
        path.unlink()
    except OSError:
      pass
    os.close(fd)
    del _held[path]


atexit.register(release_locks)


# --- A clean stop on SIGTERM / SIGINT --------------------------------------------------------------------------

@contextlib.contextmanager
def stop_on_signals() -> Iterator[Callable[[], Optional[int]]]:
  """Within: SIGTERM and SIGINT are recorded, not acted on; yields `requested()` -> the first signal's number
  or None. A second signal restores the previous handlers and is delivered again. The previous handlers are
  back on exit. Outside the main thread (where Python cannot handle signals) nothing is installed."""
  received = []
  if threading.current_thread() is not threading.main_thread():
    yield lambda: None
    return
  previous = {s: signal.getsignal(s) for s in STOP_SIGNALS}

  def restore():
    for s, handler in previous.items():
      signal.signal(s, handler)

  def handler(signum, frame):
    del frame
    if received:  # Asked twice: stop now, as without this handler.
      restore()
      signal.raise_signal(signum)
      return
    received.append(signum)

  for s in STOP_SIGNALS:
    signal.signal(s, handler)
  try:
    yield lambda: received[0] if received else None
  finally:
    restore()


def signal_name(signum: int) -> str:
  return signal.Signals(signum).name


# --- A full disk -----------------------------------------------------------------------------------------------

def check_free_space(target, needed: int, kept: str) -> None:
  """Raises DiskFullError before writing `needed` bytes to `target` when its file system has less free.
  kept: what stays as it was (e.g. 'the previous export is kept')."""
  target = Path(target)
  free = _free_bytes(target)
  if free < needed:
    raise DiskFullError(_full_message(target, needed, free, kept))


def _free_bytes(target: Path) -> int:
  """Free bytes on the file system `target` will be written to (its first existing ancestor's)."""
  return shutil.disk_usage(next((p for p in (target, *target.parents) if p.exists()), Path("."))).free


def _full_message(target: Path, needed: Optional[int], free: Optional[int], kept: str) -> str:
  sizes = (f"needs about {needed:,} bytes" if needed is not None else "the disk is full") + (
      f", {free:,} bytes free" if free is not None else "")
  return (f"no space left on the device for {target}: {sizes}; {kept}. Free some space (or choose another "
          "MODEL_DIR) and rerun: training resumes from the last checkpoint.")


def is_disk_full(error: BaseException) -> bool:
  """Whether `error` (or what caused it) is ENOSPC, including libraries that only say it in their message
  (safetensors, tensorstore)."""
  seen = set()
  while error is not None and id(error) not in seen:
    seen.add(id(error))
    if isinstance(error, OSError) and error.errno in (errno.ENOSPC, errno.EDQUOT):
      return True
    text = str(error)
    if "No space left on device" in text or "code: 28," in text or "StorageFull" in text:
      return True
    error = error.__cause__ or error.__context__
  return False


@contextlib.contextmanager
def disk_full(target, needed: Optional[int], kept: str, cleanup: Callable[[], None] = lambda: None):
  """Turns a full-disk failure inside into DiskFullError naming `target` (after `cleanup()` removes the
  partial temporary); any other error passes unchanged."""
  try:
    yield
  except Exception as e:  # pylint: disable=broad-except  (libraries raise their own types for ENOSPC)
    if not is_disk_full(e):
      raise
    cleanup()
    target = Path(target)
    raise DiskFullError(_full_message(target, needed, _free_bytes(target), kept)) from e
