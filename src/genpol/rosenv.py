"""A private ROS 2 network for one run: its own domain, LOCALHOST discovery.

Set in os.environ before any rclpy.init, so the in-process client session and every child
process (node processes, `genpol bringup`) hear each other and nothing else on the machine.
`isolated` is for tests and benchmarks (always private, with its own log folder); `job_network`
is for `genpol eval`, `genpol record --sim` and `genpol demo` (private unless the user set
ROS_DOMAIN_ID, and it says which). No rclpy here: it only edits the environment.

A private domain is one no other genpol run on this host holds (a lock file per domain under
the temp folder) and on which nothing else has a DDS participant here (Fast DDS's first
participants' unicast discovery ports are free).
"""

from __future__ import annotations

import contextlib
import fcntl
import os
import random
import socket
import tempfile
from collections.abc import Iterator
from pathlib import Path

KEYS = ("ROS_DOMAIN_ID", "ROS_AUTOMATIC_DISCOVERY_RANGE", "ROS_LOCALHOST_ONLY", "ROS_LOG_DIR")

#: ROS's "About Domain ID": 0..101 is safe on every platform (Fast DDS's ports for these stay
#: below Linux's ephemeral range); 0 is everyone's default, so a private domain never takes it.
PRIVATE_DOMAINS = range(1, 102)
#: Fast DDS's port arithmetic (RTPS defaults): participant i's discovery unicast port is
#: PORT_BASE + DOMAIN_GAIN * domain + 10 + 2 * i.
PORT_BASE, DOMAIN_GAIN = 7400, 250
PROBED_PARTICIPANTS = 8
LOCK_DIR = Path(tempfile.gettempdir()) / "genpol-ros-domains"

_depth = 0  # job_network blocks open in this process: an inner one (demo's eval) stays quiet
_private = False  # the open job_network chose its domain (the user did not set ROS_DOMAIN_ID)


def domain_in_use(domain: int) -> bool:
    """True if a DDS participant on this host holds one of the domain's first discovery ports."""
    for i in range(PROBED_PARTICIPANTS):
        port = PORT_BASE + DOMAIN_GAIN * domain + 10 + 2 * i
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
            try:
                sock.bind(("", port))
            except OSError:
                return True
    return False


def _lock(domain: int) -> int | None:
    """An open file descriptor holding the domain's lock, -1 when locks cannot be taken here (a
    read-only temp folder: the port check alone decides), None when another run holds it."""
    try:
        LOCK_DIR.mkdir(exist_ok=True)
        with contextlib.suppress(OSError):  # shared by every user of the host
            os.chmod(LOCK_DIR, 0o1777)
        path = LOCK_DIR / f"{domain}.lock"
        try:
            fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o666)
        except PermissionError:  # another user's file: a read-only descriptor locks it too
            fd = os.open(path, os.O_RDONLY)
    except OSError:
        return -1
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        os.close(fd)
        return None
    except OSError:
        os.close(fd)
        return -1
    return fd


@contextlib.contextmanager
def private_domain() -> Iterator[int]:
    """A domain in PRIVATE_DOMAINS that no other run on this host uses, held for the block."""
    for domain in random.SystemRandom().sample(PRIVATE_DOMAINS, len(PRIVATE_DOMAINS)):
        fd = _lock(domain)
        if fd is None:
            continue
        if domain_in_use(domain):
            if fd >= 0:
                os.close(fd)
            continue
        try:
            yield domain
        finally:
            if fd >= 0:
                os.close(fd)
        return
    raise RuntimeError(f"every ROS domain in {PRIVATE_DOMAINS.start}..{PRIVATE_DOMAINS.stop - 1} "
                       "is in use on this host; set ROS_DOMAIN_ID to the one to use")


@contextlib.contextmanager
def _restored(keys: tuple[str, ...]) -> Iterator[None]:
    saved = {k: os.environ.get(k) for k in keys}
    try:
        yield
    finally:
        for key, value in saved.items():
            if value is None:
                os.environ.pop(key, None)
            else:
                os.environ[key] = value


def _localhost_discovery() -> None:
    os.environ["ROS_AUTOMATIC_DISCOVERY_RANGE"] = "LOCALHOST"
    os.environ.pop("ROS_LOCALHOST_ONLY", None)  # deprecated in Jazzy; it would override the range


@contextlib.contextmanager
def isolated(log_dir: str | Path) -> Iterator[dict[str, str | None]]:
    """Set the private network in os.environ for the block; yields the values set (by KEYS) and
    puts the previous ones back afterwards."""
    with _restored(KEYS), private_domain() as domain:
        os.environ["ROS_DOMAIN_ID"] = str(domain)
        _localhost_discovery()
        Path(log_dir).mkdir(parents=True, exist_ok=True)
        os.environ["ROS_LOG_DIR"] = str(log_dir)
        yield {k: os.environ.get(k) for k in KEYS}


def user_domain() -> int | None:
    """The user's ROS_DOMAIN_ID (None when unset or empty, as rcl reads it)."""
    raw = os.environ.get("ROS_DOMAIN_ID", "").strip()
    if not raw:
        return None
    try:
        domain = int(raw)
    except ValueError:
        domain = -1
    if not 0 <= domain <= 232:
        raise ValueError(f"ROS_DOMAIN_ID={raw!r} is not a ROS domain id: use 0..101 (ROS's safe "
                         "range), or unset it for a private one")
    return domain


@contextlib.contextmanager
def job_network(job: str) -> Iterator[int]:
    """The ROS network a job's graph and client session use, set in os.environ for the block and
    announced as the job's first line ("[genpol JOB] ROS domain N (...)"); yields the domain.

    ROS_DOMAIN_ID set: that domain, the environment untouched (the user wants to share it).
    Otherwise a private domain (see private_domain) with LOCALHOST discovery unless
    ROS_AUTOMATIC_DISCOVERY_RANGE is set, so two runs at once, or a run beside anything else on
    domain 0, cannot hear each other. Inside another job_network (demo's stages) it reuses that
    one and says nothing."""
    global _depth, _private
    chosen = user_domain()
    if _depth:
        _depth += 1
        try:
            yield chosen or 0
        finally:
            _depth -= 1
        return
    with contextlib.ExitStack() as stack:
        if chosen is None:
            stack.enter_context(_restored(KEYS))
            chosen = stack.enter_context(private_domain())
            os.environ["ROS_DOMAIN_ID"] = str(chosen)
            if not os.environ.get("ROS_AUTOMATIC_DISCOVERY_RANGE"):
                _localhost_discovery()
            how = "private; set ROS_DOMAIN_ID to share one"
            _private = True
        else:
            how = "from ROS_DOMAIN_ID"
        print(f"[genpol {job}] ROS domain {chosen} ({how})", flush=True)
        _depth += 1
        try:
            yield chosen
        finally:
            _depth -= 1
            _private = False


def domain_is_users() -> bool:
    """Whether ROS_DOMAIN_ID is the user's choice, not a private domain a job_network set:
    jobs that start several graphs at once need a private domain for each."""
    return user_domain() is not None and not (_depth and _private)
