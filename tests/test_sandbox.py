"""The sandbox: a crash, hang, fork bomb, memory bomb or hostile call fails the program and harms nothing."""

import os
import time

import pytest

from genlab.metrics.sandbox import Limits, isolation, run_many, run_python

FAST = Limits(wall_seconds=5, cpu_seconds=3, memory_mb=512, file_size_mb=4)


def test_a_passing_and_a_failing_program():
    ok = run_python("print(6 * 7)", FAST)
    assert ok.passed and ok.status == "passed" and ok.stdout == "42\n" and ok.detail == ""
    bad = run_python("assert 1 == 2, 'nope'", FAST)
    assert bad.status == "failed" and not bad.passed and bad.detail == "AssertionError: nope"


def test_sys_exit_zero_before_the_end_is_a_failure():
    o = run_python("import sys\nsys.exit(0)\nprint('tests would run here')", FAST)
    assert o.status == "failed" and "exited before its end" in o.detail


def test_busy_loop_and_sleep_time_out_quickly():
    start = time.perf_counter()
    busy, sleepy = run_many(["while True: pass", "import time\ntime.sleep(60)"], Limits(wall_seconds=2, cpu_seconds=1), workers=2)
    assert busy.status == "timeout" and sleepy.status == "timeout"
    assert time.perf_counter() - start < 10


def test_environment_is_scrubbed_and_cwd_is_an_empty_private_folder(monkeypatch):
    monkeypatch.setenv("GENLAB_TEST_SECRET", "hunter2")
    o = run_python("import os, sys\nprint(sorted(os.environ))\nprint(os.listdir('.'))\nprint(sys.flags.isolated)", FAST)
    assert o.passed, o.stderr
    env, listing, isolated = o.stdout.splitlines()
    assert "GENLAB_TEST_SECRET" not in env and "hunter2" not in o.stdout
    assert eval(env) == ["HOME", "LANG", "PATH", "TMPDIR"]
    assert eval(listing) == ["program.py"] and isolated == "1"


def test_writing_inside_its_folder_is_allowed_but_outside_fails_and_leaves_nothing(tmp_path):
    inside = run_python("open('notes.txt', 'w').write('ok')\nprint(open('notes.txt').read())", FAST)
    assert inside.passed and inside.stdout == "ok\n"
    victim = tmp_path / "precious.txt"
    victim.write_text("keep me")
    attacks = [
        f"open({str(tmp_path / 'planted.txt')!r}, 'w').write('x')",
        f"import os\nos.remove({str(victim)!r})",
        f"import os\nos.rename({str(victim)!r}, 'stolen.txt')",
        f"import shutil\nshutil.rmtree({str(tmp_path)!r})",
        f"import os\nos.link({str(victim)!r}, 'mine.txt')\nopen('mine.txt', 'w').write('gone')",
    ]
    for outcome in run_many(attacks, FAST):
        assert not outcome.passed and outcome.status in ("blocked", "failed"), outcome
    assert victim.read_text() == "keep me"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["precious.txt"]


def test_fork_bomb_and_subprocess_fail_and_leave_no_process_behind(private_tmp):
    bombs = ["import os\nwhile True:\n    os.fork()", "import subprocess\nsubprocess.run(['sleep', '100'])",
             "import multiprocessing as mp\np = mp.Process(target=print)\np.start()"]
    for outcome in run_many(bombs, FAST):
        assert not outcome.passed
    time.sleep(0.2)
    assert _sandboxed_processes(private_tmp) == []


def test_memory_and_file_size_bombs_fail():
    mem, big = run_many(["x = bytearray(8 << 30)\nprint(len(x))", "open('big', 'wb').write(b'0' * (64 << 20))"], FAST)
    assert mem.status == "failed" and "MemoryError" in mem.detail
    assert not big.passed and ("File too large" in big.detail or big.status == "crashed")


def test_no_network_and_no_signals_to_the_caller():
    net = run_python("import socket\ns = socket.socket()\ns.connect(('127.0.0.1', 22))", FAST)
    assert net.status == "blocked"
    kill = run_python(f"import os, signal\nos.kill({os.getpid()}, signal.SIGKILL)", FAST)
    assert kill.status == "blocked"  # and we are still here to check it


def test_results_keep_input_order_under_parallelism():
    outcomes = run_many([f"print({i})" for i in range(8)], FAST, workers=2)
    assert [o.stdout.strip() for o in outcomes] == [str(i) for i in range(8)]


@pytest.mark.skipif(not isolation()["landlock_abi"],
                    reason="this kernel has no Landlock: reads and directory-descriptor writes are then not restricted "
                           "(a documented limitation, docs/security.md)")
def test_landlock_blocks_the_writes_the_audit_hook_cannot_see(tmp_path):
    # The hook sees the relative name "planted.txt" and believes it inside; the kernel knows better.
    attack = f"import os\nfd = os.open({str(tmp_path)!r}, os.O_RDONLY)\nos.open('planted.txt', os.O_CREAT | os.O_WRONLY, dir_fd=fd)"
    o = run_python(attack, FAST)
    assert o.status == "failed" and "PermissionError" in o.detail
    assert list(tmp_path.iterdir()) == []


@pytest.fixture
def private_tmp(tmp_path, monkeypatch):
    """Sandbox folders of this test only, so that another worker's candidates are not mistaken for ours."""
    import tempfile

    monkeypatch.setattr(tempfile, "tempdir", str(tmp_path))
    return tmp_path


def _sandboxed_processes(where) -> list[str]:
    """Command lines of live processes started by a sandbox under `where` (their argv names its folder)."""
    found = []
    for pid in filter(str.isdigit, os.listdir("/proc")):
        try:
            cmdline = open(f"/proc/{pid}/cmdline", "rb").read().decode(errors="replace")
        except OSError:
            continue
        if f"{where}/genlab-sandbox-" in cmdline and "pytest" not in cmdline:
            found.append(cmdline)
    return found


# ---- hostile candidates: nothing escapes, nothing passes ------------------------------------------

EARLY_EXITS = {
    "os._exit(0) at top level": "import os\nos._exit(0)\nassert False",
    "atexit handler": "import atexit, os\natexit.register(lambda: os._exit(0))\nassert False, 'wrong answer'",
    "sys.exit(0) inside a test": "import sys\ndef check(f):\n    sys.exit(0)\n    assert f() == 2\ncheck(lambda: 1)",
    "SystemExit in __del__": "class T:\n    def __del__(self):\n        raise SystemExit(0)\nt = T()\ndel t\nassert False",
    "killed by its own signal": "import os, signal\nos.kill(os.getpid(), signal.SIGKILL)",
    "signal.raise_signal": "import signal\nsignal.raise_signal(signal.SIGTERM)",
    "closes stdout and exits 0": "import os, sys\nsys.stdout.close()\nos._exit(0)",
}


@pytest.mark.parametrize("name", EARLY_EXITS)
def test_ending_early_with_success_never_passes(name):
    outcome = run_python(EARLY_EXITS[name], FAST)
    assert not outcome.passed, outcome


def _hostile(tmp_path):
    """Programs that try to read secrets or reach outside; each prints what it got if it got anything."""
    secret = tmp_path / "id_rsa"
    secret.write_text("PRIVATE KEY")
    parent = os.getpid()
    return {
        "parent environ": f"print(open('/proc/{parent}/environ', 'rb').read())",
        "parent cmdline": f"print(open('/proc/{parent}/cmdline', 'rb').read())",
        "parent's process list": "import os\nprint([p for p in os.listdir('/proc') if p.isdigit() and int(p) > 2])\nassert 0",
        "a private key": f"print(open({str(secret)!r}).read())",
        "the project's files": f"print(open({__file__!r}).read()[:50])",
        "shell history and ssh keys": "import os\nprint(os.listdir(os.path.expanduser('~root')))\nprint(open('/root/.ssh/known_hosts').read())",
        "fork": "import os\npid = os.fork()\nprint('forked', pid)",
        "subprocess": "import subprocess\nprint(subprocess.run(['id'], capture_output=True).stdout)",
        "exec": "import os\nos.execv('/bin/sh', ['sh', '-c', 'echo escaped'])",
        "socket": "import socket\ns = socket.socket()\nprint('socket', s)",
        "signal the parent": f"import os, signal\nos.kill({parent}, signal.SIGTERM)\nprint('sent')",
        "ptrace the parent": f"import ctypes\nr = ctypes.CDLL(None).ptrace(16, {parent}, 0, 0)\nassert r == 0, 'ptrace failed'\nprint('attached')",
        "write outside": f"open({str(tmp_path / 'planted')!r}, 'w').write('x')\nprint('wrote')",
        "setsid to leave the group": "import os\nos.setsid()\nprint('new session')",
    }


@pytest.mark.parametrize("audit_hook", [True, False], ids=["all layers", "kernel layers alone"])
def test_hostile_candidates_get_nothing_and_pass_nothing(tmp_path, monkeypatch, audit_hook):
    monkeypatch.setenv("GENLAB_TEST_SECRET", "hunter2")
    limits = Limits(wall_seconds=5, cpu_seconds=3, memory_mb=512, file_size_mb=4, audit_hook=audit_hook)
    attacks = _hostile(tmp_path)
    for (name, _), outcome in zip(attacks.items(), run_many(list(attacks.values()), limits, workers=2)):
        assert not outcome.passed, (name, outcome)
        for leak in ("hunter2", "PRIVATE KEY", "pytest", "escaped", "forked", "attached", "wrote", "sent", "new session"):
            assert leak not in outcome.stdout, (name, outcome.stdout)
    assert not (tmp_path / "planted").exists()


def test_disk_and_output_are_capped(tmp_path):
    limits = Limits(wall_seconds=10, cpu_seconds=5, memory_mb=512, file_size_mb=2, disk_mb=4, output_bytes=1000)
    fill = "for i in range(100):\n    open(f'f{i}', 'wb').write(b'0' * (1 << 20))"
    outcome = run_python(fill, limits)
    assert not outcome.passed and ("No space left" in outcome.detail or "File too large" in outcome.detail), outcome
    loud = run_python("print('x' * 1_000_000)", limits)
    assert loud.passed and len(loud.stdout) == 1000


def test_no_process_outlives_the_harness(private_tmp):
    sleeper = "import os, threading, time\nthreading.Thread(target=time.sleep, args=(100,)).start()\ntime.sleep(100)"
    outcomes = run_many([sleeper, "import os\nwhile True:\n    try:\n        os.fork()\n    except OSError:\n        pass"],
                        Limits(wall_seconds=2, cpu_seconds=2, audit_hook=False), workers=2)
    assert [o.status for o in outcomes] == ["timeout", "timeout"]
    time.sleep(0.3)
    assert _sandboxed_processes(private_tmp) == []


def test_without_namespaces_the_sandbox_refuses_unless_told(monkeypatch):
    import genlab.metrics.sandbox as sandbox
    from genlab.core.errors import GenlabError

    monkeypatch.setattr(sandbox, "namespace_command", lambda: None)
    with pytest.raises(GenlabError, match="--unsafe-no-isolation"):
        run_python("print(1)", FAST)
    unsafe = Limits(wall_seconds=5, cpu_seconds=3, memory_mb=512, isolation=False)
    assert run_python("print(1)", unsafe).passed


def test_limits_out_of_range_are_refused():
    from genlab.core.errors import GenlabError

    for bad in ({"memory_mb": -1}, {"wall_seconds": 0}, {"disk_mb": 0}):
        with pytest.raises(GenlabError, match=next(iter(bad))):
            Limits(**bad)


def test_git_in_a_users_repository_never_runs_its_configuration(tmp_path):
    import shutil
    import subprocess

    from genlab.datasets.code import ignored_paths

    if shutil.which("git") is None:
        if os.environ.get("CI") == "true":
            pytest.fail("git is not installed on this CI machine")
        pytest.skip("git is not installed")
    repo = tmp_path / "repo"
    repo.mkdir()
    subprocess.run(["git", "init", "-q", str(repo)], check=True)
    marker = tmp_path / "fsmonitor-ran"
    hook = tmp_path / "monitor.sh"
    hook.write_text(f"#!/bin/sh\ntouch {marker}\n")
    hook.chmod(0o755)
    subprocess.run(["git", "-C", str(repo), "config", "core.fsmonitor", str(hook)], check=True)
    (repo / ".gitignore").write_text("skip.py\n")
    (repo / "keep.py").write_text("x = 1\n")
    (repo / "skip.py").write_text("y = 2\n")
    ignored = ignored_paths(repo, [repo / "keep.py", repo / "skip.py"])
    assert ignored == {repo / "skip.py"}
    assert not marker.exists()
