"""Run untrusted Python (model-written code) so that whatever it does harms nothing and passes nothing.

    run_python(source, limits) -> Outcome       one program, in its own process
    run_many(sources, limits, workers) -> [...]  many, in parallel across cores

Each program runs as `python -I -B` in an empty scratch folder with an empty environment (PATH, HOME =
the scratch folder, locale), under layers enforced by the kernel, each stopping what the others might miss:

1. Namespaces (`unshare`): a new PID namespace with its own /proc (no other process is visible: not the
   caller's environ or cmdline), a new mount namespace with a size-limited tmpfs as the scratch folder,
   and a network namespace with no interface. Where namespaces are not available the sandbox refuses to
   run unless `Limits.isolation` is off (`--unsafe-no-isolation`).
2. Landlock (Linux >= 5.13): reads only beneath the Python installation, a few system library folders
   and the scratch folder; writes only in the scratch folder; no execve; no TCP (ABI 4); no signals or
   abstract sockets outside the sandbox (ABI 6).
3. seccomp: no fork, vfork or non-thread clone (so no fork bomb, and the kernel ignores RLIMIT_NPROC for
   root), no execve, ptrace, process_vm_readv/writev, pidfd_send_signal, kill of another process,
   setsid, mount, unshare, setns, socket, bpf, io_uring, keyrings or kernel modules.
4. rlimits: CPU seconds, address space, file size; a wall-clock timeout kills the process group, and
   the PID namespace's first process takes every process of the namespace with it when it dies.
5. A Python audit hook as a second layer that names what it blocked (status `blocked`).

"Passed" is never read from the exit status: the guard writes a random nonce, handed over through a pipe
that is closed before the program runs, to a second pipe only after the program's last line ran without
an exception. os._exit(0), sys.exit(0) in a test, an atexit handler or a signal all fail.
`isolation()` says which layers this machine gives; docs/security.md says what each does not cover.
"""

from __future__ import annotations

import os
import secrets
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

from genlab.core.errors import GenlabError, check_range
from genlab.core.folders import mark, remove
from genlab.core.progress import progress_bar

BLOCKED = 113  # exit status of a program the guard stopped

# Runs inside the sandbox before the program. argv: WORKDIR CPU_S MEMORY_B FSIZE_B DISK_B NAMESPACED NONCE_FD RESULT_FD AUDIT_HOOK
_GUARD = r'''
import os, resource, sys, sysconfig

def _setup():
    work = os.path.realpath(sys.argv[1])
    cpu, memory, fsize, disk, namespaced, nonce_fd, result_fd = (int(a) for a in sys.argv[2:9])
    nonce = os.read(nonce_fd, 64)
    os.close(nonce_fd)
    with open(os.path.join(work, "program.py"), encoding="utf-8") as f:
        source = f.read()
    import ctypes
    libc = ctypes.CDLL(None, use_errno=True)
    if namespaced:  # a private tmpfs of `disk` bytes over the scratch folder (mount namespace of our own)
        opts = ("size=%d,mode=0700" % disk).encode()
        if libc.mount(b"tmpfs", work.encode(), b"tmpfs", 2 | 4 | 8, opts) == 0:  # nosuid, nodev, noexec
            with open(os.path.join(work, "program.py"), "w", encoding="utf-8") as f:
                f.write(source)
    os.chdir(work)
    for which, value in ((resource.RLIMIT_CPU, cpu), (resource.RLIMIT_AS, memory), (resource.RLIMIT_FSIZE, fsize)):
        hard = resource.getrlimit(which)[1]
        if hard != resource.RLIM_INFINITY:
            value = min(value, hard)
        # Past the soft CPU limit comes SIGXCPU (read as a timeout); the hard one a second later is SIGKILL.
        spare = 1 if which == resource.RLIMIT_CPU and hard == resource.RLIM_INFINITY else 0
        resource.setrlimit(which, (value, value + spare))
    libc.prctl(38, 1, 0, 0, 0)  # PR_SET_NO_NEW_PRIVS: required for Landlock and seccomp unprivileged
    machine = os.uname().machine
    if machine in ("x86_64", "aarch64", "arm64"):
        _landlock(libc, ctypes, work, namespaced)
        _seccomp(libc, ctypes, machine)
    return work, source, nonce, result_fd

def _read_roots(namespaced):
    roots = {sysconfig.get_paths()[k] for k in ("stdlib", "platstdlib", "purelib", "platlib")}
    roots |= {os.path.join(sys.base_prefix, "lib"), "/usr/lib", "/lib", "/lib64", "/usr/lib64",
              "/usr/share/zoneinfo", "/etc/ld.so.cache", "/etc/localtime", "/dev/urandom", "/dev/zero"}
    if namespaced:
        roots.add("/proc")  # our own PID namespace's /proc: this program and nothing else
    return sorted(r for r in roots if os.path.exists(r))

def _landlock(libc, ctypes, work, namespaced):
    create, add_rule, restrict = 444, 445, 446
    abi = libc.syscall(create, None, 0, 1)
    if abi < 1:
        return
    read_file, read_dir, write_file, truncate = 1 << 2, 1 << 3, 1 << 1, (1 << 14 if abi >= 3 else 0)
    fs = sum(1 << b for b in range(13)) | (1 << 13 if abi >= 2 else 0) | truncate | (1 << 15 if abi >= 5 else 0)
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
    everything_but_exec = fs & ~1
    rules = [(work, everything_but_exec), (os.devnull, read_file | write_file | truncate)]
    rules += [(root, read_file | (read_dir if os.path.isdir(root) else 0)) for root in _read_roots(namespaced)]
    for path, allowed in rules:
        fd = os.open(path, os.O_PATH | os.O_CLOEXEC)
        rule = PathBeneath(allowed, fd)
        libc.syscall(add_rule, ruleset, 1, ctypes.byref(rule), 0)
        os.close(fd)
    libc.syscall(restrict, ruleset, 0)
    os.close(ruleset)

# Syscall numbers (x86_64, then the generic table of aarch64) the program may never make.
_DENIED = {
    "x86_64": (0xC000003E, dict(fork=57, vfork=58, execve=59, execveat=322, ptrace=101, process_vm_readv=310,
        process_vm_writev=311, pidfd_send_signal=424, pidfd_open=434, pidfd_getfd=438, tkill=200, setsid=112,
        mount=165, umount2=166, unshare=272, setns=308, socket=41, bpf=321, perf_event_open=298, keyctl=250,
        add_key=248, request_key=249, chroot=161, pivot_root=155, kexec_load=246, init_module=175,
        finit_module=313, delete_module=176, reboot=169, open_by_handle_at=304, userfaultfd=323,
        io_uring_setup=425, io_uring_enter=426, io_uring_register=427), dict(clone=56, clone3=435, kill=62, tgkill=234)),
    "aarch64": (0xC00000B7, dict(execve=221, execveat=281, ptrace=117, process_vm_readv=270, process_vm_writev=271,
        pidfd_send_signal=424, pidfd_open=434, pidfd_getfd=438, tkill=130, setsid=157, mount=40, umount2=39,
        unshare=97, setns=268, socket=198, bpf=280, perf_event_open=241, keyctl=219, add_key=217, request_key=218,
        chroot=51, pivot_root=41, kexec_load=104, init_module=105, finit_module=273, delete_module=106,
        reboot=142, open_by_handle_at=265, userfaultfd=282, io_uring_setup=425, io_uring_enter=426,
        io_uring_register=427), dict(clone=220, clone3=435, kill=129, tgkill=131)),
}

def _seccomp(libc, ctypes, machine):
    arch, denied, special = _DENIED["aarch64" if machine == "arm64" else machine]
    LD, JEQ, JSET, JGE, RET = 0x20, 0x15, 0x45, 0x35, 0x06
    ALLOW, KILL, EPERM, ENOSYS = 0x7FFF0000, 0x80000000, 0x00050000 | 1, 0x00050000 | 38
    pid = os.getpid()
    prog = [(LD, 0, 0, 4), (JEQ, 1, 0, arch), (RET, 0, 0, KILL), (LD, 0, 0, 0)]
    if machine == "x86_64":
        prog += [(JGE, 0, 1, 0x40000000), (RET, 0, 0, KILL)]  # the x32 ABI: another syscall table
    for nr in denied.values():
        prog += [(JEQ, 0, 1, nr), (RET, 0, 0, EPERM)]
    # clone only for threads; clone3 "does not exist", so the C library falls back to clone for threads
    prog += [(JEQ, 0, 4, special["clone"]), (LD, 0, 0, 16), (JSET, 0, 1, 0x10000), (RET, 0, 0, ALLOW), (RET, 0, 0, EPERM)]
    prog += [(JEQ, 0, 1, special["clone3"]), (RET, 0, 0, ENOSYS)]
    for name in ("kill", "tgkill"):  # signals to this process only
        prog += [(JEQ, 0, 4, special[name]), (LD, 0, 0, 16), (JEQ, 0, 1, pid), (RET, 0, 0, ALLOW), (RET, 0, 0, EPERM)]
    prog += [(RET, 0, 0, ALLOW)]
    class Filter(ctypes.Structure):
        _fields_ = [("code", ctypes.c_uint16), ("jt", ctypes.c_uint8), ("jf", ctypes.c_uint8), ("k", ctypes.c_uint32)]
    class Program(ctypes.Structure):
        _fields_ = [("len", ctypes.c_uint16), ("filter", ctypes.POINTER(Filter))]
    filters = (Filter * len(prog))(*[Filter(*ins) for ins in prog])
    if libc.prctl(22, 2, ctypes.byref(Program(len(prog), filters)), 0, 0) != 0:  # PR_SET_SECCOMP, FILTER
        os.write(2, b"genlab-sandbox: seccomp unavailable\n")
        os._exit(BLOCKED_STATUS)

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

def _finisher(nonce, fd):
    def finish():  # reached only after the program's last line ran without an exception
        sys.stdout.flush()
        sys.stderr.flush()
        os.write(fd, nonce)
    return finish

def _init_of_namespace():
    """In a PID namespace of our own, this process is its init, which ignores most signals: it forks
    the program's process and waits, exiting as the program did (128 + N for signal N). When it
    exits, the kernel kills every process left in the namespace."""
    if sys.argv[6] != "1":
        return
    child = os.fork()
    if child == 0:
        return
    for fd in sys.argv[7:9]:
        os.close(int(fd))
    while True:
        try:
            _, status = os.waitpid(child, 0)
            break
        except InterruptedError:
            continue
    code = os.waitstatus_to_exitcode(status)
    os._exit(code if code >= 0 else 128 - code)

_init_of_namespace()
_work, _source, _nonce, _fd = _setup()
_finish = _finisher(_nonce, _fd)
del _nonce, _fd
if sys.argv[9] == "1":
    _guard(_work)
del _init_of_namespace, _setup, _guard, _landlock, _seccomp, _read_roots, _finisher, _DENIED
try:
    exec(compile(_source, "program.py", "exec"), {"__name__": "__main__", "__builtins__": __builtins__})
except SystemExit as _e:  # sys.exit(0) inside a candidate must not skip the tests and pass
    sys.stderr.write("genlab-sandbox: the program exited before its end (SystemExit %r)\n" % (_e.code,))
    sys.stderr.flush()
    os._exit(1)
_finish()
'''.replace("BLOCKED_STATUS", str(BLOCKED))


@dataclass(frozen=True)
class Limits:
    """What one program may use. Memory is address space (RLIMIT_AS), so it bounds what it maps, not only touches."""

    wall_seconds: float = 10.0
    cpu_seconds: int = 10
    memory_mb: int = 1024
    file_size_mb: int = 16  # largest file it may write (RLIMIT_FSIZE)
    disk_mb: int = 64  # size of its scratch folder (a tmpfs in its own mount namespace)
    output_bytes: int = 16_384  # stdout/stderr kept in the Outcome, each
    isolation: bool = True  # namespaces; off (--unsafe-no-isolation) runs where they are not available
    audit_hook: bool = True  # the Python-level second layer; off only to test that the kernel's layers hold alone

    def __post_init__(self):
        for name, low, high in (("wall_seconds", 0.1, 3600), ("cpu_seconds", 1, 3600), ("memory_mb", 64, 1 << 20),
                                ("file_size_mb", 1, 1 << 16), ("disk_mb", 1, 1 << 16), ("output_bytes", 1, 1 << 24)):
            check_range(f"sandbox {name}", getattr(self, name), low, high)


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
            rc = self.returncode or 0
            signum = -rc if rc < 0 else rc - 128 if rc > 128 else 0
            return f"killed by {signal.Signals(signum).name}" if signum in signal.valid_signals() else "crashed"
        lines = [ln for ln in self.stderr.strip().splitlines() if ln.strip()]
        return lines[-1][:300] if lines else f"exit status {self.returncode}"


def scrubbed_env(home: Path) -> dict[str, str]:
    """The child's whole environment: nothing inherited but a fixed PATH, so no secret leaks in."""
    return {"PATH": "/usr/bin:/bin", "HOME": str(home), "TMPDIR": str(home), "LANG": "C.UTF-8"}


def run_python(source: str, limits: Limits = Limits(), python: str | None = None) -> Outcome:
    """Run `source` as a Python program in the sandbox; `passed` when its last line ran without an exception."""
    # Long on purpose: the isolation steps in the order they must happen, each beside its reason.
    python = python or sys.executable
    prefix = namespace_command() if limits.isolation else []
    if prefix is None:
        raise GenlabError("sandbox: this machine gives no PID/mount/network namespaces (needs root or unprivileged "
                          "user namespaces); --unsafe-no-isolation runs generated code without them")
    top = Path(tempfile.mkdtemp(prefix="genlab-sandbox-"))
    mark(top, "sandbox")  # outside the program's reach (it writes only in top/work)
    work = top / "work"  # the only place the program may write; outputs live beside it, out of its reach
    nonce = secrets.token_hex(16).encode()
    nonce_r, nonce_w = os.pipe()
    result_r, result_w = os.pipe()
    try:
        work.mkdir()
        (work / "program.py").write_text(source, encoding="utf-8")
        os.write(nonce_w, nonce)
        os.close(nonce_w)
        nonce_w = -1
        mb = 1 << 20
        argv = prefix + [python, "-I", "-B", "-c", _GUARD, str(work), str(int(limits.cpu_seconds)), str(limits.memory_mb * mb),
                         str(limits.file_size_mb * mb), str(limits.disk_mb * mb), str(int(bool(prefix))),
                         str(nonce_r), str(result_w), str(int(limits.audit_hook))]
        start = time.perf_counter()
        with open(top / "stdout", "wb") as out, open(top / "stderr", "wb") as err:
            proc = subprocess.Popen(argv, cwd=work, env=scrubbed_env(work), stdin=subprocess.DEVNULL, stdout=out,
                                    stderr=err, start_new_session=True, close_fds=True, pass_fds=(nonce_r, result_w))
            os.close(nonce_r)
            os.close(result_w)
            nonce_r = result_w = -1
            # A timer kills at the deadline while wait() blocks: Popen.wait(timeout) would poll
            # with growing sleeps and add tens of milliseconds to every short program.
            timed_out = threading.Event()
            timer = threading.Timer(limits.wall_seconds, lambda: (timed_out.set(), _kill_group(proc.pid)))
            timer.start()
            proc.wait()
            timer.cancel()
            _kill_group(proc.pid)  # whatever it left behind in its process group
        seconds = time.perf_counter() - start
        os.set_blocking(result_r, False)
        try:
            reported = os.read(result_r, 64)
        except BlockingIOError:
            reported = b""
        os.close(result_r)
        result_r = -1
        stdout, stderr = (_head(top / name, limits.output_bytes) for name in ("stdout", "stderr"))
        rc = proc.returncode
        if timed_out.is_set() or rc in (-signal.SIGXCPU, 128 + signal.SIGXCPU):
            status = "timeout"
        elif secrets.compare_digest(reported, nonce):
            status = "passed"
        elif rc == BLOCKED and "genlab-sandbox: blocked" in stderr:
            status = "blocked"
        elif rc < 0 or rc > 128:  # unshare reports a signal-killed child as 128 + N
            status = "crashed"
        else:
            status = "failed"
        if status != "passed" and rc == 0:
            stderr += "\ngenlab-sandbox: exited with status 0 before its last line ran"
        return Outcome(status, rc, seconds, stdout, stderr)
    finally:
        for fd in (nonce_r, nonce_w, result_r, result_w):  # those still open after an error
            if fd >= 0:
                os.close(fd)
        remove(top)


def run_many(sources: list[str], limits: Limits = Limits(), workers: int | None = None, progress: bool = False,
             desc: str = "running") -> list[Outcome]:
    """Run every program in `sources` (in parallel, `workers` at a time, default one per core); outcomes in order."""
    workers = workers or os.cpu_count() or 1
    with ThreadPoolExecutor(max_workers=workers) as pool, progress_bar(total=len(sources), desc=desc, unit="prog", enabled=progress) as bar:
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
def namespace_command() -> list[str] | None:
    """The `unshare` prefix that gives a program its own PID, mount (fresh /proc) and network namespaces,
    killed with its parent; None where this machine does not allow it (tried once, with `true`)."""
    unshare = shutil.which("unshare")
    if unshare is None:
        return None
    user = [] if os.geteuid() == 0 else ["--user", "--map-root-user"]
    prefix = [unshare, *user, "--pid", "--fork", "--mount-proc", "--net", "--kill-child"]
    try:
        ok = subprocess.run([*prefix, "true"], env=scrubbed_env(Path("/")), timeout=30,
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL).returncode == 0
    except (OSError, subprocess.TimeoutExpired):
        ok = False
    return prefix if ok else None


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
        "namespaces": namespace_command() is not None,  # PID (own /proc), mount (tmpfs scratch), network
        "landlock_abi": max(abi, 0),
        "seccomp": os.uname().machine in ("x86_64", "aarch64", "arm64"),
        "audit_hook": True,
    }
