"""The sandbox: a crash, hang, fork bomb, memory bomb or hostile call fails the program and harms nothing."""

import os
import time

import pytest

from genlab.sandbox import Limits, isolation, run_many, run_python

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


def test_fork_bomb_and_subprocess_fail_and_leave_no_process_behind():
    bombs = ["import os\nwhile True:\n    os.fork()", "import subprocess\nsubprocess.run(['sleep', '100'])",
             "import multiprocessing as mp\np = mp.Process(target=print)\np.start()"]
    for outcome in run_many(bombs, FAST):
        assert not outcome.passed
    time.sleep(0.2)
    assert _sandboxed_processes() == []


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


@pytest.mark.skipif(not isolation()["landlock_abi"], reason="this kernel has no Landlock")
def test_landlock_blocks_the_writes_the_audit_hook_cannot_see(tmp_path):
    # The hook sees the relative name "planted.txt" and believes it inside; the kernel knows better.
    attack = f"import os\nfd = os.open({str(tmp_path)!r}, os.O_RDONLY)\nos.open('planted.txt', os.O_CREAT | os.O_WRONLY, dir_fd=fd)"
    o = run_python(attack, FAST)
    assert o.status == "failed" and "PermissionError" in o.detail
    assert list(tmp_path.iterdir()) == []


def _sandboxed_processes() -> list[str]:
    """Command lines of live processes started by a sandbox (their argv names its genlab-sandbox- folder)."""
    found = []
    for pid in filter(str.isdigit, os.listdir("/proc")):
        try:
            cmdline = open(f"/proc/{pid}/cmdline", "rb").read().decode(errors="replace")
        except OSError:
            continue
        if "genlab-sandbox-" in cmdline and "pytest" not in cmdline:
            found.append(cmdline)
    return found
