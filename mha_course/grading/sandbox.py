"""Confining a student's process: resource limits, a Landlock filesystem sandbox, an audit hook.

Three layers, each set up in the fresh child process just before the student's first cell:

1. `resource.setrlimit` (Linux, macOS): address space (the memory limit), CPU seconds, file size,
   open files, no core dumps; on Linux the process is also the out-of-memory killer's first pick.
2. Landlock (Linux 5.13+, unprivileged): the kernel refuses writes anywhere but the working copy
   (and /dev/null), reads under the folders the grader names (the submissions, the other students'
   working copies), TCP connections, and signals to processes outside the sandbox (the grader).
3. An audit hook (PEP 578, any platform): the same rules at the level of Python's own calls, plus
   no new processes, no signals, no `ctypes` loading and no raised limits. It raises
   `PermissionError` with a clear message and records what it blocked, so that the student's
   feedback can say why. Audit hooks cannot be removed from Python code.

The grader does not rely on these alone: it never reads anything the student's process wrote,
other than the messages on its pipe (see `codec`), keeps every submission in memory before any
student code runs, and writes the gradebook only at the end, atomically.
"""

from __future__ import annotations

import ctypes
import os
import re
import signal
import struct
import sys
from dataclasses import dataclass

__all__ = ["Limits", "BLOCKED", "confine", "readable_roots", "landlock_abi"]

BLOCKED: list[str] = []  # what the audit hook refused, for the feedback ("write /x/y", ...)
_MAX_BLOCKED = 20


@dataclass(frozen=True)
class Limits:
    """memory_mb: address space the notebook may add to the preloaded libraries;
    cpu_seconds: CPU time; file_mb: largest file it may write; open_files: descriptors."""

    memory_mb: int = 2048
    cpu_seconds: int = 180
    file_mb: int = 64
    open_files: int = 512


# ----------------------------------------------------------------------------------------------
# 1. resource limits


def _vm_size() -> int:
    """The process's current address space in bytes (Linux), 0 where unknown."""
    try:
        with open("/proc/self/status") as f:
            for line in f:
                if line.startswith("VmSize:"):
                    return int(line.split()[1]) * 1024
    except OSError:
        pass
    return 0


def _first_for_the_oom_killer() -> None:
    """Where the machine (or container) runs out of memory before the address-space limit does,
    the kernel's out-of-memory killer picks this process, not the grader (Linux; raising one's own
    score needs no privilege)."""
    try:
        with open("/proc/self/oom_score_adj", "w") as f:
            f.write("1000")
    except OSError:
        pass


def _set_limits(limits: Limits) -> None:
    import resource

    def cap(which, soft, hard=None):
        hard = soft if hard is None else hard
        old_soft, old_hard = resource.getrlimit(which)
        if old_hard != resource.RLIM_INFINITY:
            soft, hard = min(soft, old_hard), min(hard, old_hard)
        resource.setrlimit(which, (soft, hard))

    if sys.platform.startswith("linux"):  # macOS does not enforce RLIMIT_AS
        cap(resource.RLIMIT_AS, _vm_size() + limits.memory_mb * 2**20)
        _first_for_the_oom_killer()
    cap(resource.RLIMIT_CPU, limits.cpu_seconds, limits.cpu_seconds + 5)
    cap(resource.RLIMIT_FSIZE, limits.file_mb * 2**20)
    cap(resource.RLIMIT_NOFILE, limits.open_files)
    cap(resource.RLIMIT_CORE, 0)
    signal.signal(signal.SIGXFSZ, signal.SIG_IGN)  # a too-large write raises OSError, not a kill


# ----------------------------------------------------------------------------------------------
# 2. Landlock (see Documentation/userspace-api/landlock.rst in the Linux sources)

_SYS_CREATE_RULESET, _SYS_ADD_RULE, _SYS_RESTRICT_SELF = 444, 445, 446  # every 64-bit arch
_PR_SET_NO_NEW_PRIVS = 38
_RULE_PATH_BENEATH = 1
_FS = {name: 1 << bit for bit, name in enumerate(
    ["EXECUTE", "WRITE_FILE", "READ_FILE", "READ_DIR", "REMOVE_DIR", "REMOVE_FILE", "MAKE_CHAR",
     "MAKE_DIR", "MAKE_REG", "MAKE_SOCK", "MAKE_FIFO", "MAKE_BLOCK", "MAKE_SYM", "REFER",
     "TRUNCATE"])}
_NET_BIND_TCP, _NET_CONNECT_TCP = 1, 2
_SCOPE_ABSTRACT_UNIX_SOCKET, _SCOPE_SIGNAL = 1, 2


def _libc():
    return ctypes.CDLL(None, use_errno=True)


def landlock_abi() -> int:
    """The kernel's Landlock ABI version, 0 where Landlock is missing (or not Linux
    x86-64/arm64)."""
    if not sys.platform.startswith("linux") or os.uname().machine not in ("x86_64", "aarch64"):
        return 0
    try:
        abi = _libc().syscall(_SYS_CREATE_RULESET, None, ctypes.c_size_t(0), ctypes.c_uint32(1))
    except OSError:
        return 0
    return max(int(abi), 0)


def _landlock(workdir: str, read_roots: list[str]) -> int:
    """Restrict this process (and anything it starts) for good; returns the ABI used (0: none)."""
    abi = landlock_abi()
    if abi < 1:
        return 0
    libc = _libc()
    handled = sum(v for k, v in _FS.items() if k != "EXECUTE")
    if abi < 2:
        handled &= ~_FS["REFER"]
    if abi < 3:
        handled &= ~_FS["TRUNCATE"]
    net = _NET_BIND_TCP | _NET_CONNECT_TCP if abi >= 4 else 0
    scoped = _SCOPE_ABSTRACT_UNIX_SOCKET | _SCOPE_SIGNAL if abi >= 6 else 0
    attr = struct.pack("=QQQ", handled, net, scoped)[: 8 if abi < 4 else 16 if abi < 6 else 24]
    buffer = ctypes.create_string_buffer(attr, len(attr))
    ruleset = libc.syscall(_SYS_CREATE_RULESET, buffer, ctypes.c_size_t(len(attr)),
                           ctypes.c_uint32(0))
    if ruleset < 0:
        raise OSError(ctypes.get_errno(), "landlock_create_ruleset failed")
    file_rights = _FS["READ_FILE"] | _FS["WRITE_FILE"] | (_FS["TRUNCATE"] if abi >= 3 else 0)
    read = _FS["READ_FILE"] | _FS["READ_DIR"]
    try:
        rules = [(workdir, handled), ("/dev/null", file_rights & handled)]
        rules += [(path, read) for path in read_roots]
        for path, access in rules:
            try:
                fd = os.open(path, os.O_PATH | os.O_CLOEXEC)
            except OSError:
                continue  # vanished since the grader listed it
            try:
                if not os.path.isdir(path):
                    access &= _FS["READ_FILE"] | _FS["WRITE_FILE"] | _FS["TRUNCATE"]
                rule = ctypes.create_string_buffer(struct.pack("=Qi", access, fd), 12)
                if libc.syscall(_SYS_ADD_RULE, ruleset, _RULE_PATH_BENEATH, rule, 0) < 0:
                    raise OSError(ctypes.get_errno(), f"landlock_add_rule failed for {path}")
            finally:
                os.close(fd)
        if libc.prctl(_PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) < 0:
            raise OSError(ctypes.get_errno(), "prctl(PR_SET_NO_NEW_PRIVS) failed")
        if libc.syscall(_SYS_RESTRICT_SELF, ruleset, 0) < 0:
            raise OSError(ctypes.get_errno(), "landlock_restrict_self failed")
    finally:
        os.close(ruleset)
    return abi


def readable_roots(denied: list[str]) -> list[str]:
    """Paths that together cover the whole filesystem except the `denied` folders: the siblings of
    every folder on the way from / down to each denied one. Computed once, by the grader."""
    denied = [os.path.realpath(d) for d in denied]
    if not denied:
        return ["/"]

    def below(path: str, root: str) -> bool:
        return path == root or path.startswith(root.rstrip("/") + "/")

    roots: list[str] = []

    def walk(folder: str) -> None:
        try:
            entries = sorted(os.listdir(folder))
        except OSError:
            return
        for entry in entries:
            path = os.path.join(folder, entry)
            real = os.path.realpath(path)
            if any(below(path, d) or below(real, d) for d in denied):
                continue  # a denied folder, or a link into one
            if any(below(d, path) for d in denied):
                walk(path)  # a denied folder lies inside: open up its siblings only
            elif not any(below(d, real) for d in denied):  # not a link to an ancestor of one
                roots.append(path)

    walk("/")
    return roots


# ----------------------------------------------------------------------------------------------
# 3. the audit hook

_WRITE_FLAGS = os.O_WRONLY | os.O_RDWR | os.O_CREAT | os.O_TRUNC | os.O_APPEND
_WRITE_EVENTS = {  # event -> indices of the arguments that are paths being changed
    "os.remove": (0,), "os.rmdir": (0,), "os.mkdir": (0,), "os.rename": (0, 1), "os.link": (1,),
    "os.symlink": (1,), "os.truncate": (0,), "os.chmod": (0,), "os.chown": (0,), "os.utime": (0,),
    "os.chflags": (0,), "os.lchflags": (0,), "os.mkfifo": (0,), "os.mknod": (0,),
    "os.setxattr": (0,), "os.removexattr": (0,), "shutil.rmtree": (0,), "shutil.move": (0, 1),
    "shutil.copyfile": (1,), "shutil.copytree": (1,), "shutil.unpack_archive": (1,),
    "sqlite3.connect": (0,), "dbm.open": (0,),
}
_READ_EVENTS = {"os.listdir": (0,), "os.scandir": (0,), "glob.glob": (0,), "shutil.copyfile": (0,),
                "shutil.copytree": (0,), "shutil.make_archive": (2,)}
_FORBIDDEN = {
    "subprocess.Popen": "starting a program", "os.system": "starting a program",
    "os.exec": "starting a program", "os.posix_spawn": "starting a program",
    "os.spawn": "starting a program", "os.fork": "starting a process",
    "os.forkpty": "starting a process", "pty.spawn": "starting a program",
    "os.kill": "sending a signal", "os.killpg": "sending a signal",
    "signal.pthread_kill": "sending a signal", "resource.setrlimit": "changing resource limits",
    "resource.prlimit": "changing resource limits", "socket.connect": "opening a connection",
    "socket.bind": "opening a socket", "ctypes.dlopen": "loading a C library",
    "ctypes.dlsym": "looking up a C function", "ctypes.dlsym/handle": "looking up a C function",
    "os.setuid": "changing user", "os.setgid": "changing group",
}
_PROC_PID = re.compile(r"^/proc/(\d+)(/|$)")


def _install_audit_hook(workdir: str, denied: list[str]) -> None:
    workdir = os.path.realpath(workdir)
    denied = [os.path.realpath(d) for d in denied]
    me = str(os.getpid())

    def resolve(path) -> str | None:
        if isinstance(path, int) or path is None:
            return None
        try:
            path = os.fsdecode(os.fspath(path))
        except TypeError:
            return None
        return os.path.realpath(os.path.join(os.getcwd(), path))

    def inside(path: str, root: str) -> bool:
        return path == root or path.startswith(root + "/")

    def refuse(what: str, path: str | None = None):
        entry = f"{what} {path}" if path else what
        if entry not in BLOCKED and len(BLOCKED) < _MAX_BLOCKED:
            BLOCKED.append(entry)
        why = {"writing": f"only your working copy, {workdir}, may be written",
               "reading": "other students' work and the grader's files are off limits"}
        raise PermissionError(f"the grader does not allow {entry} "
                              f"({why.get(what, 'notebooks are graded in a sandbox')})")

    def check_write(raw) -> None:
        path = resolve(raw)
        if path is not None and not inside(path, workdir) and path != os.devnull:
            refuse("writing", path)

    def check_read(raw) -> None:
        path = resolve(raw)
        if path is None or inside(path, workdir):
            return
        pid = _PROC_PID.match(path)
        if any(inside(path, d) for d in denied) or (pid and pid.group(1) != me):
            refuse("reading", path)

    def hook(event: str, args: tuple) -> None:
        if event == "open":
            path, mode, flags = (tuple(args) + (None, None, None))[:3]
            writing = (isinstance(flags, int) and bool(flags & _WRITE_FLAGS)) or \
                (isinstance(mode, str) and any(c in mode for c in "wax+"))
            (check_write if writing else check_read)(path)
        elif event in _WRITE_EVENTS:
            for i in _WRITE_EVENTS[event]:
                if i < len(args):
                    check_write(args[i])
            for i in _READ_EVENTS.get(event, ()):
                if i < len(args):
                    check_read(args[i])
        elif event in _READ_EVENTS:
            for i in _READ_EVENTS[event]:
                if i < len(args):
                    check_read(args[i])
        elif event in _FORBIDDEN:
            if event == "os.kill" and len(args) > 0 and args[0] == os.getpid():
                return  # a signal to itself harms no one
            refuse(_FORBIDDEN[event])

    sys.addaudithook(hook)


# ----------------------------------------------------------------------------------------------


def confine(workdir: str, limits: Limits, denied: list[str], read_roots: list[str] | None) -> str:
    """Confine the calling process for good; returns a one-line description of what is in force.

    `denied`: folders the student may neither read nor write (other submissions, the scratch
    folder); `read_roots` from `readable_roots(denied)`, None to skip Landlock.
    """
    sys.dont_write_bytecode = True  # importing a module must not try to write a .pyc
    _set_limits(limits)
    abi = _landlock(workdir, read_roots) if read_roots is not None else 0
    _install_audit_hook(workdir, denied)
    return ("rlimits + " + (f"Landlock ABI {abi}" if abi else "no Landlock")
            + " + audit hook")
