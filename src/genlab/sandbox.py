"""Run untrusted Python (model-written code) so that whatever it does harms nothing.

    run_python(source, limits) -> Outcome       one program, in its own process
    run_many(sources, limits, workers) -> [...]  many, in parallel across cores

Each program runs as `python -I -B` (isolated: no PYTHON* variables, no user
site, no bytecode writes) in a fresh session, with an empty temporary working
directory and a scrubbed environment (no inherited secrets), under layers
that each stop what the others might miss:

1. Kernel limits (setrlimit): CPU seconds, address space, file size, and the
   number of processes (RLIMIT_NPROC; the kernel never enforces it for root).
2. A wall-clock timeout that kills the whole process group.
3. Landlock (Linux >= 5.13, unprivileged), where the kernel has it: writes
   only inside the working directory (and /dev/null); from ABI 4 no TCP
   bind/connect; from ABI 6 no signals to processes outside the sandbox.
4. A network namespace with no interfaces (`unshare`), where permitted: root,
   or unprivileged user namespaces.
5. A Python audit hook, installed before the program's first line, that ends
   the process (exit code BLOCKED) on creating a socket or a process, loading
   native code (ctypes), signalling another process, or writing, removing or
   renaming outside the working directory. Audit hooks are no security
   boundary alone (they see Python-level calls only), hence layers 1-4.

A crash, hang, fork bomb, memory bomb or forbidden call is a failed program,
never a failure of the caller. `isolation()` says which layers this machine gives.
"""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path

BLOCKED = 113  # exit status of a program the guard stopped

# Runs inside the child before the program: limits, Landlock, network namespace, audit hook.
# argv: guard.py WORKDIR CPU_S MEMORY_B FSIZE_B NPROC NETNS
_GUARD = r'''
import os, resource, sys

def _setup():
    work = os.path.realpath(sys.argv[1])
    cpu, memory, fsize, nproc, netns = (int(a) for a in sys.argv[2:7])
    machine = os.uname().machine
    import ctypes
    libc = ctypes.CDLL(None, use_errno=True)
    if netns:  # an empty network namespace: no interface but a down loopback
        flags = 0x40000000 if os.geteuid() == 0 else 0x40000000 | 0x10000000  # CLONE_NEWNET (| CLONE_NEWUSER)
        libc.unshare(flags)
    if os.geteuid() != 0:  # RLIMIT_NPROC counts all of this user's processes, not only ours
        mine = sum(1 for d in os.listdir("/proc") if d.isdigit() and _owned(d))
        nproc += mine
    for which, value in ((resource.RLIMIT_CPU, cpu), (resource.RLIMIT_AS, memory),
                         (resource.RLIMIT_FSIZE, fsize), (resource.RLIMIT_NPROC, nproc)):
        hard = resource.getrlimit(which)[1]
        if hard != resource.RLIM_INFINITY:
            value = min(value, hard)
        # Past the soft CPU limit comes SIGXCPU (read as a timeout); the hard one a second later is SIGKILL.
        spare = 1 if which == resource.RLIMIT_CPU and hard == resource.RLIM_INFINITY else 0
        resource.setrlimit(which, (value, value + spare))
    if machine in ("x86_64", "aarch64", "arm64"):
        _landlock(libc, ctypes, work)
    return work

def _owned(pid):
    try:
        return os.stat("/proc/" + pid).st_uid == os.getuid()
    except OSError:
        return False

def _landlock(libc, ctypes, work):
    create, add_rule, restrict = 444, 445, 446
    abi = libc.syscall(create, None, 0, 1)
    if abi < 1:
        return
    fs = (1 << 1) | (1 << 4) | (1 << 5) | sum(1 << b for b in range(6, 13))  # write, remove, make-*
    if abi >= 2:
        fs |= 1 << 13  # refer (link/rename across folders)
    if abi >= 3:
        fs |= 1 << 14  # truncate
    net = 0b11 if abi >= 4 else 0  # bind and connect TCP: no rule allows any port
    scoped = 0b11 if abi >= 6 else 0  # abstract unix sockets and signals outside the sandbox
    attr = (ctypes.c_uint64 * 3)(fs, net, scoped)
    size = 8 * (3 if abi >= 6 else 2 if abi >= 4 else 1)
    ruleset = libc.syscall(create, ctypes.byref(attr), size, 0)
    if ruleset < 0:
        return
    class PathBeneath(ctypes.Structure):
        _pack_ = 1
        _fields_ = [("allowed", ctypes.c_uint64), ("fd", ctypes.c_int32)]
    for path, allowed in ((work, fs), (os.devnull, (1 << 1) | ((1 << 14) if abi >= 3 else 0))):
        fd = os.open(path, os.O_PATH | os.O_CLOEXEC)
        rule = PathBeneath(allowed, fd)
        libc.syscall(add_rule, ruleset, 1, ctypes.byref(rule), 0)
        os.close(fd)
    libc.prctl(38, 1, 0, 0, 0)  # PR_SET_NO_NEW_PRIVS, required to restrict oneself unprivileged
    libc.syscall(restrict, ruleset, 0)
    os.close(ruleset)

def _guard(work):
    write_flags = os.O_WRONLY | os.O_RDWR | os.O_APPEND | os.O_CREAT | os.O_TRUNC
    denied = {"os.fork", "os.forkpty", "os.posix_spawn", "os.spawn", "os.exec", "os.system", "os.killpg",
              "subprocess.Popen", "pty.spawn", "socket.__new__", "socket.getaddrinfo", "socket.gethostbyname",
              "ctypes.dlopen", "ctypes.dlsym", "ctypes.cdata", "signal.pthread_kill", "os.chroot",
              "os.setuid", "os.setgid", "os.setreuid", "os.setregid", "webbrowser.open"}
    one_path = {"os.remove", "os.rmdir", "os.mkdir", "os.chmod", "os.chown", "os.chflags", "os.lchflags",
                "os.truncate", "os.utime", "os.setxattr", "os.removexattr", "shutil.rmtree"}
    busy = []
    pid = os.getpid()

    def inside(path):
        if isinstance(path, int):
            return True  # an already open descriptor: it was checked when opened
        full = os.path.realpath(os.path.join(work, os.fsdecode(path)))
        return full == work or full.startswith(work + os.sep) or full == os.devnull

    def deny(what):
        os.write(2, ("genlab-sandbox: blocked " + what + "\n").encode())
        os._exit(BLOCKED_STATUS)

    def hook(event, args):
        if busy:
            return
        busy.append(1)
        try:
            if event in denied:
                deny(event)
            elif event == "import" and args[0] in ("_posixsubprocess", "_ctypes"):
                deny("import " + args[0])
            elif event == "os.kill" and args[0] not in (0, pid):
                deny("os.kill")
            elif event == "open":
                path, mode, flags = args
                writes = (mode is not None and any(c in str(mode) for c in "wax+")) or (flags or 0) & write_flags
                if writes and not inside(path):
                    deny("write to " + repr(path))
            elif event in one_path and not inside(args[0]):
                deny(event + " " + repr(args[0]))
            elif event in ("os.rename", "os.link", "os.symlink"):
                # A symbolic link may point anywhere (writes through it resolve to its target);
                # a hard link to an outside file would make that very file writable.
                for p in (args[1:2] if event == "os.symlink" else args[:2]):
                    if not inside(p):
                        deny(event + " " + repr(p))
        finally:
            busy.clear()

    sys.addaudithook(hook)

_work = _setup()
with open(os.path.join(_work, "program.py"), encoding="utf-8") as _f:
    _source = _f.read()
_guard(_work)
del _setup, _guard, _owned, _landlock, _f
try:
    exec(compile(_source, "program.py", "exec"), {"__name__": "__main__", "__builtins__": __builtins__})
except SystemExit as _e:  # sys.exit(0) inside a candidate must not skip the tests and pass
    sys.stderr.write("genlab-sandbox: the program exited before its end (SystemExit %r)\n" % (_e.code,))
    sys.stderr.flush()
    os._exit(1)
'''.replace("BLOCKED_STATUS", str(BLOCKED))


@dataclass(frozen=True)
class Limits:
    """What one program may use. Memory is address space (RLIMIT_AS), so it bounds what it maps, not only touches."""

    wall_seconds: float = 10.0
    cpu_seconds: int = 10
    memory_mb: int = 1024
    file_size_mb: int = 16
    processes: int = 16  # more processes than this (for this user, besides those it already has) fail to start
    output_bytes: int = 16_384  # stdout/stderr kept in the Outcome, each
    network_namespace: bool = True  # also unshare the network where the platform permits it


@dataclass
class Outcome:
    status: str  # passed | failed | timeout | blocked | crashed
    returncode: int | None
    seconds: float
    stdout: str
    stderr: str

    @property
    def passed(self) -> bool:
        return self.status == "passed"

    @property
    def detail(self) -> str:
        """One line saying why it did not pass ('' when it passed)."""
        if self.status == "passed":
            return ""
        if self.status == "timeout":
            return f"timed out after {self.seconds:.1f} s"
        if self.status == "crashed":
            return f"killed by {signal.Signals(-self.returncode).name}" if self.returncode and self.returncode < 0 else "crashed"
        lines = [ln for ln in self.stderr.strip().splitlines() if ln.strip()]
        return lines[-1][:300] if lines else f"exit status {self.returncode}"


def scrubbed_env(home: Path) -> dict[str, str]:
    """The child's whole environment: nothing inherited but a fixed PATH, so no secret leaks in."""
    return {"PATH": "/usr/bin:/bin", "HOME": str(home), "TMPDIR": str(home), "LANG": "C.UTF-8", "PYTHONHASHSEED": "0"}


def run_python(source: str, limits: Limits = Limits(), python: str | None = None) -> Outcome:
    """Run `source` as a Python program in the sandbox; exit status 0 is `passed`."""
    python = python or sys.executable
    top = Path(tempfile.mkdtemp(prefix="genlab-sandbox-"))
    work = top / "work"  # the only place the program may write; outputs live beside it, out of its reach
    try:
        work.mkdir()
        (work / "program.py").write_text(source, encoding="utf-8")
        mb = 1 << 20
        argv = [python, "-I", "-B", "-c", _GUARD, str(work), str(int(limits.cpu_seconds)), str(limits.memory_mb * mb),
                str(limits.file_size_mb * mb), str(limits.processes), str(int(limits.network_namespace and netns_allowed()))]
        start = time.perf_counter()
        with open(top / "stdout", "wb") as out, open(top / "stderr", "wb") as err:
            proc = subprocess.Popen(argv, cwd=work, env=scrubbed_env(work), stdin=subprocess.DEVNULL, stdout=out,
                                    stderr=err, start_new_session=True, close_fds=True)
            # A timer kills at the deadline while wait() blocks: Popen.wait(timeout) would poll
            # with growing sleeps and add tens of milliseconds to every short program.
            timed_out = threading.Event()
            timer = threading.Timer(limits.wall_seconds, lambda: (timed_out.set(), _kill_group(proc.pid)))
            timer.start()
            proc.wait()
            timer.cancel()
            _kill_group(proc.pid)  # whatever it left behind in its process group
        seconds = time.perf_counter() - start
        stdout, stderr = (_head(top / name, limits.output_bytes) for name in ("stdout", "stderr"))
        rc = proc.returncode
        if timed_out.is_set() or rc == -signal.SIGXCPU:
            status = "timeout"
        elif rc == 0:
            status = "passed"
        elif rc == BLOCKED and "genlab-sandbox: blocked" in stderr:
            status = "blocked"
        elif rc < 0:
            status = "crashed"
        else:
            status = "failed"
        return Outcome(status, rc, seconds, stdout, stderr)
    finally:
        shutil.rmtree(top, ignore_errors=True)


def run_many(sources: list[str], limits: Limits = Limits(), workers: int | None = None, progress: bool = False,
             desc: str = "running") -> list[Outcome]:
    """Run every program in `sources` (in parallel, `workers` at a time, default one per core); outcomes in order."""
    from tqdm import tqdm

    workers = workers or os.cpu_count() or 1
    with ThreadPoolExecutor(max_workers=workers) as pool, tqdm(total=len(sources), desc=desc, unit="prog", disable=not progress) as bar:
        futures = [pool.submit(run_python, s, limits) for s in sources]
        outcomes = []
        for f in futures:
            outcomes.append(f.result())
            bar.update(1)
    return outcomes


def _kill_group(pgid: int) -> None:
    try:
        os.killpg(pgid, signal.SIGKILL)
    except (ProcessLookupError, PermissionError):
        pass


def _head(path: Path, limit: int) -> str:
    with open(path, "rb") as f:
        return f.read(limit).decode("utf-8", errors="replace")


@lru_cache(maxsize=1)
def netns_allowed() -> bool:
    """Whether a child may enter a new network namespace here (tried once, in a throwaway process)."""
    probe = "import ctypes,os,sys\nf=0x40000000 if os.geteuid()==0 else 0x50000000\nsys.exit(ctypes.CDLL(None).unshare(f)!=0)"
    try:
        return subprocess.run([sys.executable, "-I", "-c", probe], env=scrubbed_env(Path("/")), timeout=30,
                              stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL).returncode == 0
    except (OSError, subprocess.TimeoutExpired):
        return False


@lru_cache(maxsize=1)
def isolation() -> dict:
    """The layers this machine gives a sandboxed program (for reports and the docs)."""
    probe = "import ctypes\nprint(ctypes.CDLL(None).syscall(444, None, 0, 1))"
    try:
        abi = int(subprocess.run([sys.executable, "-I", "-c", probe], capture_output=True, text=True, timeout=30).stdout.strip() or -1)
    except (OSError, ValueError, subprocess.TimeoutExpired):
        abi = -1
    return {
        "rlimits": True,
        "process_limit_enforced": os.geteuid() != 0,  # the kernel exempts root from RLIMIT_NPROC
        "landlock_abi": max(abi, 0),
        "network_namespace": netns_allowed(),
        "audit_hook": True,
    }
