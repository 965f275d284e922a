"""bubblewrap (`bwrap`) jails for code the auditor runs but does not trust.

Two callers: the probe child (:mod:`auditor.probes.sandbox`) and the rerun's
torchrun launch (:mod:`auditor.harness.batch`, ``pgolf rerun --jail``). This
module builds the one bwrap command line both use, the environment's basics, and
tests once per process whether bwrap can create namespaces on this machine.

The command line: every namespace unshared (network: only a loopback of its own;
PID: every process dies with the jail), ``--die-with-parent``, a new session, no
capabilities, no new user namespaces (when bwrap >= 0.8 allows); an empty root
(tmpfs) with ``/usr``, the interpreter's prefix, its import path, a few ``/etc``
files and the caller's inputs bound read-only, a private empty ``/tmp`` (256 MiB,
gone with the jail), the writable folders bound last,
then ``/`` and ``/dev`` remounted read-only; ``--clearenv`` and the caller's
environment, nothing else of the parent's.
"""

from __future__ import annotations

import functools
import glob
import os
import shutil
import signal
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import NamedTuple

CONFINED = "bwrap"
# /etc entries the dynamic linker, Python and torch read; the rest of /etc stays out
ETC = ("ld.so.cache", "ld.so.conf", "ld.so.conf.d", "passwd", "group", "nsswitch.conf",
       "localtime", "alternatives", "mime.types")
# parent variables passed through when set: what locates Python's own libraries
PASS_ENV = ("LD_LIBRARY_PATH", "PYTHONHOME")
TMP_BYTES = 256 << 20  # the jail's own /tmp
GPU_DEVICES = "/dev/nvidia*"  # nvidiactl, nvidia-uvm, nvidia0..N, nvidia-caps/


class Jail(NamedTuple):
    bwrap: str | None  # None: run unconfined
    hardened: bool
    confinement: str  # "bwrap" or "unconfined: <why>"


def base_env(home: Path, passed: tuple[str, ...] = PASS_ENV) -> dict[str, str]:
    """PATH, HOME and the caches (all under ``home``), plus the ``passed`` variables the
    parent has: the start of a jailed environment, never a copy of the parent's."""
    home = Path(home)
    env = {k: os.environ[k] for k in passed if os.environ.get(k)}
    env.update(
        PATH=os.pathsep.join(dict.fromkeys([os.path.dirname(sys.executable), "/usr/local/bin", "/usr/bin", "/bin"])),
        HOME=str(home), TMPDIR=str(home / "tmp"), XDG_CACHE_HOME=str(home / ".cache"),
        TORCHINDUCTOR_CACHE_DIR=str(home / ".cache" / "inductor"), TRITON_CACHE_DIR=str(home / ".cache" / "triton"),
        MPLCONFIGDIR=str(home / ".cache" / "matplotlib"), LANG="C.UTF-8",
    )
    return env


def readable_paths(inputs: list[str], env: dict[str, str]) -> list[str]:
    """Host paths the jail may read: the interpreter, its import path, the inputs
    (outermost folders only: a folder already readable covers what lies under it)."""
    paths = [sys.prefix, sys.base_prefix, sys.exec_prefix, os.path.dirname(os.path.realpath(sys.executable))]
    cwd = os.getcwd()  # `python -m auditor` puts the folder it runs in (a record, a home) on sys.path
    paths += [p for p in sys.path if p and os.path.isabs(p) and os.path.abspath(p) != cwd]
    for key in ("PYTHONPATH", "LD_LIBRARY_PATH", "PYTHONHOME"):
        paths += [p for p in env.get(key, "").split(os.pathsep) if p and os.path.isabs(p)]
    paths += [str(p) for p in inputs]
    out: list[str] = []
    for p in paths:
        for q in dict.fromkeys([os.path.abspath(p), os.path.realpath(p)]):
            if q != "/" and os.path.exists(q):
                out.append(q)
    out = sorted(set(out), key=lambda p: (p.count("/"), p))
    kept: list[str] = []
    for p in out:
        if not any(p == k or p.startswith(k.rstrip("/") + "/") for k in kept):
            kept.append(p)
    return kept


def gpu_devices() -> list[str]:
    """The NVIDIA device nodes this machine has (none on a CPU machine)."""
    return sorted(glob.glob(GPU_DEVICES))


def bwrap_args(bwrap: str, *, writable: list[Path], inputs: list[str], env: dict[str, str], chdir: Path,
               hardened: bool = True, hostname: str | None = "pgolf-jail", shm_bytes: int | None = None,
               devices: list[str] = (), share_net: bool = False, files: dict[str, Path] | None = None,
               all_sys: bool = False) -> list[str]:
    """The bubblewrap command line around a command (everything but the command).

    ``writable``: folders bound read-write (last, over any read-only parent);
    ``inputs``: extra paths bound read-only; ``hostname``: the jail's (None keeps the
    host's, which a multi-node rendezvous advertises); ``shm_bytes``: a sized
    ``/dev/shm`` (hardened only), or None for an unsized one (NCCL needs room);
    ``devices``: device nodes bound as they are (GPUs); ``share_net``: keep the host's
    network (multi-node only); ``files``: ``{path in the jail: host file}`` bound
    read-only (a generated ``/etc/hosts``); ``all_sys``: all of ``/sys`` read-only
    (CUDA and NCCL read the PCI tree), else only the CPU list torch counts cores from.
    Not ``hardened``: without what needs bwrap >= 0.8 and user namespaces
    (--disable-userns, a sized /dev/shm), for older bwraps and containers that refuse
    user namespaces."""
    args = [bwrap, "--unshare-all", "--die-with-parent", "--new-session", "--cap-drop", "ALL"]
    if share_net:
        args.append("--share-net")
    if hostname:
        args += ["--hostname", hostname]
    if hardened:
        args += ["--unshare-user", "--disable-userns"]
    args += ["--tmpfs", "/", "--ro-bind", "/usr", "/usr"]
    # a private, empty /tmp (scripts write fixed paths such as /tmp/<name>), mounted before
    # the inputs and writable folders that may live under the host's /tmp
    args += (["--size", str(TMP_BYTES)] if hardened else []) + ["--tmpfs", "/tmp"]
    for top in ("/bin", "/sbin", "/lib", "/lib32", "/lib64", "/libx32"):
        if os.path.islink(top):
            args += ["--symlink", os.readlink(top), top]
        elif os.path.isdir(top):
            args += ["--ro-bind", top, top]
    for name in ETC:
        args += ["--ro-bind-try", f"/etc/{name}", f"/etc/{name}"]
    for dest, src in (files or {}).items():
        args += ["--ro-bind", str(src), dest]
    sys_dir = "/sys" if all_sys else "/sys/devices/system/cpu"
    args += ["--ro-bind-try", sys_dir, sys_dir]
    for path in readable_paths(inputs, env):
        top = "/" + path.split("/")[1]
        if top != "/usr" and not os.path.islink(top):  # under /usr, or reached through /lib -> usr/lib
            args += ["--ro-bind", path, path]
    args += ["--dev", "/dev", "--proc", "/proc"]
    for node in devices:
        args += ["--dev-bind", node, node]
    if shm_bytes is None:
        args += ["--tmpfs", "/dev/shm"]
    elif hardened:
        args += ["--size", str(shm_bytes), "--tmpfs", "/dev/shm"]  # else /dev/shm stays read-only
    for path in writable:
        args += ["--bind", str(path), str(path)]
    args += ["--remount-ro", "/", "--remount-ro", "/dev", "--chdir", str(chdir), "--clearenv"]
    for key, value in env.items():
        args += ["--setenv", key, value]
    return args + ["--"]


def exit_status(code: int | None) -> int | None:
    """bwrap exits 128+N when its command died by signal N: as Popen says it, -N."""
    if code is not None and code > 128 and (code - 128) in signal.valid_signals():
        return 128 - code
    return code


def _find_bwrap() -> str | None:
    return shutil.which("bwrap")


@functools.lru_cache(maxsize=1)
def jail_status() -> Jail:
    """Whether bwrap runs a Python here (hardened first, then the basic jail), else why not.
    Tried once per process: a machine without namespaces fails the same way every time."""
    bwrap = _find_bwrap()
    if bwrap is None:
        return Jail(None, False, "unconfined: bwrap not found (install the bubblewrap package)")
    why = ""
    for hardened in (True, False):
        with tempfile.TemporaryDirectory(prefix="pgolf-jailcheck-") as tmp:
            cmd = bwrap_args(bwrap, writable=[Path(tmp)], inputs=[], env=base_env(Path(tmp)), chdir=Path(tmp),
                             hardened=hardened, shm_bytes=1 << 20)
            try:
                done = subprocess.run(cmd + [sys.executable, "-I", "-S", "-c", "pass"], stdin=subprocess.DEVNULL,
                                      stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, timeout=30)
            except (OSError, subprocess.SubprocessError) as exc:
                return Jail(None, False, f"unconfined: bwrap could not start: {type(exc).__name__}: {exc}")
        if done.returncode == 0:
            return Jail(bwrap, hardened, CONFINED)
        last = [ln for ln in done.stderr.decode("utf-8", "replace").splitlines() if ln.strip()]
        why = why or (last[-1] if last else f"exit {done.returncode}")[:200]
    return Jail(None, False, f"unconfined: bwrap cannot create a sandbox here ({why})")
