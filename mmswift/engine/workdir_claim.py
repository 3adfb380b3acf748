"""One work dir, one training job.

Two jobs writing into one work dir (a resubmitted job while the first still
runs, a copy-pasted command) overwrite each other's checkpoints and
``last_checkpoint``, and the damage shows up hours later. ``tools/train.py``
(rank 0) claims the work dir with a small file, ``.mmswift_claim``, holding
who writes there (host, pid, start time) and refreshed every
``HEARTBEAT_S`` seconds by a background thread.

A claim is *live* when its heartbeat is recent and, on the same host, its
process still exists; a second job then refuses at once. A claim left by a
killed job is *stale* (its process is gone, or, from another host, its
heartbeat is older than ``STALE_S``) and is taken over with a log line, so
``--resume`` after a crash needs nothing. Only the file and its mtime are
used, which every shared filesystem (NFS, Lustre, GPFS) provides; the claim
is created with ``O_EXCL`` and taken over by an atomic rename, and a taker
re-reads the file to make sure it won a race.
"""
import json
import os
import os.path as osp
import socket
import threading
import time
import uuid
from typing import Optional

from mmengine.logging import print_log

from ..errors import WorkDirBusyError

CLAIM_FILE = '.mmswift_claim'
HEARTBEAT_S = 10.0
STALE_S = 120.0


def _process_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # exists, another user's
        return True
    return True


class WorkDirClaim:
    """``with WorkDirClaim(work_dir): ...`` or ``acquire()`` / ``release()``."""

    def __init__(self, work_dir: str, heartbeat_s: float = HEARTBEAT_S,
                 stale_s: float = STALE_S) -> None:
        self.work_dir = work_dir
        self.path = osp.join(work_dir, CLAIM_FILE)
        self.heartbeat_s, self.stale_s = heartbeat_s, stale_s
        self.token = uuid.uuid4().hex
        self.info = dict(host=socket.gethostname(), pid=os.getpid(),
                         start=time.strftime('%Y-%m-%d %H:%M:%S'), token=self.token)
        self._stop = threading.Event()
        self._thread: Optional[threading.Thread] = None

    # ----------------------------------------------------------- reading
    def _read(self) -> Optional[dict]:
        try:
            with open(self.path) as f:
                return json.load(f)
        except FileNotFoundError:
            return None
        except (OSError, ValueError):  # being written, or garbage: treat as an old claim
            return {}

    def stale_reason(self, other: dict) -> Optional[str]:
        """Why the claim ``other`` is stale, or None if it is live."""
        try:
            age = time.time() - osp.getmtime(self.path)
        except FileNotFoundError:
            return 'it was removed'
        if not other:
            return 'it is unreadable' if age > self.heartbeat_s else None
        if other.get('host') == socket.gethostname() and not _process_alive(int(other['pid'])):
            return f'its process {other["pid"]} no longer exists'
        if age > self.stale_s:
            return f'its heartbeat stopped {age:.0f} s ago'
        return None

    # ----------------------------------------------------------- claiming
    def _write_new(self) -> bool:
        try:
            fd = os.open(self.path, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o644)
        except FileExistsError:
            return False
        with os.fdopen(fd, 'w') as f:
            json.dump(self.info, f)
        return True

    def _take_over(self) -> bool:
        tmp = f'{self.path}.{self.token}.tmp'
        with open(tmp, 'w') as f:
            json.dump(self.info, f)
        os.replace(tmp, self.path)
        time.sleep(0.05)  # a racing taker renames after us: whoever is in the file won
        return (self._read() or {}).get('token') == self.token

    def acquire(self) -> 'WorkDirClaim':
        os.makedirs(self.work_dir, exist_ok=True)
        if not self._write_new():
            other = self._read()
            reason = self.stale_reason(other)
            if reason is None or not self._take_over():
                other = self._read() or {}
                raise WorkDirBusyError(
                    f'work dir {self.work_dir} is in use by another training job (host '
                    f'{other.get("host", "?")}, pid {other.get("pid", "?")}, started '
                    f'{other.get("start", "?")}); give this job its own --work-dir, or stop '
                    f'that one first (its claim is {self.path})')
            print_log(f'took over the work dir claim of host {other.get("host", "?")}, pid '
                      f'{other.get("pid", "?")} (started {other.get("start", "?")}): {reason}',
                      logger='current')
        self._thread = threading.Thread(target=self._beat, daemon=True)
        self._thread.start()
        return self

    def _beat(self) -> None:
        while not self._stop.wait(self.heartbeat_s):
            try:
                os.utime(self.path)
            except OSError:
                pass

    def release(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join()
        if (self._read() or {}).get('token') == self.token:
            os.remove(self.path)

    def __enter__(self) -> 'WorkDirClaim':
        return self.acquire()

    def __exit__(self, *exc) -> None:
        self.release()
