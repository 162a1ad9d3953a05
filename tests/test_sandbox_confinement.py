"""The execution sandbox confines hostile tool code: each test performs an attack (issue 12,
"Confinement") and checks that it fails, or is skipped with the reason where this platform lacks
the mechanism (``Sandbox.confinement`` says what is in force).

- processes a tool starts, even in a new session or by double fork, die with the checker (a PID
  namespace), at a timeout, after ``os._exit``, and when the checker is closed;
- a tool that kills its parent or the pipeline's process does not end the pipeline;
- files: writes outside the worker's temporary folder (absolute path, ``../../``, mkdir, symlink,
  rename, truncate, remove, from a child process) are refused by Landlock;
- resource limits: file size (``RLIMIT_FSIZE``), core dumps off, the address space capped before
  the module is imported, the number of processes (``RLIMIT_NPROC``, as another user since the
  kernel does not apply it to root).
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import pytest

from dataflow.core.errors import ConfigError
from dataflow.operators.apigen.execution import Sandbox

ROOT = Path(__file__).resolve().parents[1]
pytestmark = [pytest.mark.skipif(not sys.platform.startswith("linux"), reason="the sandbox's mechanisms are Linux's"),
              pytest.mark.timeout(180)]

TOOLS = '''
import os, resource, signal, subprocess, sys, time


def add(a: int, b: int) -> int:
    return a + b


def sleeper(token: str, new_session: bool = False) -> int:
    return subprocess.Popen([sys.executable, "-c", "import time; time.sleep(120)", token],
                            start_new_session=new_session).pid


def daemon(token: str) -> str:
    """The classic double fork: the grandchild starts its own session and its parent exits."""
    if os.fork() == 0:
        os.setsid()
        if os.fork() == 0:
            os.execv(sys.executable, [sys.executable, "-c", "import time; time.sleep(120)", token])
        os._exit(0)
    time.sleep(0.3)
    return "daemonized"


def sleeper_then_hang(token: str) -> int:
    sleeper(token, new_session=True)
    daemon(token)
    while True:
        time.sleep(1)


def sleeper_then_exit(token: str) -> int:
    sleeper(token, new_session=True)
    os._exit(0)


def kill_parent() -> str:
    os.kill(os.getppid(), signal.SIGKILL)
    time.sleep(0.5)
    return "still here"


def kill_processes(pids: list) -> list:
    """Signal each given process (the pipeline's, as a tool that reads /proc would find them)."""
    outcome = []
    for pid in pids:
        try:
            os.kill(pid, signal.SIGKILL)
            outcome.append("killed")
        except OSError as exc:
            outcome.append(type(exc).__name__)
    time.sleep(0.5)
    return outcome


def write(path: str, data: str = "pwned") -> str:
    with open(path, "w") as fh:
        fh.write(data)
    return os.path.abspath(path)


def append(path: str) -> str:
    with open(path, "a") as fh:
        fh.write("pwned")
    return path


def truncate(path: str) -> str:
    os.truncate(path, 0)
    return path


def remove(path: str) -> str:
    os.remove(path)
    return path


def make_dir(path: str) -> str:
    os.mkdir(path)
    return path


def symlink(target: str, link: str) -> str:
    os.symlink(target, link)
    return link


def move_out(path: str) -> str:
    with open("inside.txt", "w") as fh:
        fh.write("pwned")
    os.rename("inside.txt", path)
    return path


def child_writes(path: str) -> int:
    return subprocess.run(["/bin/sh", "-c", f"echo pwned > '{path}'"], capture_output=True).returncode


def inside_and_dev_null() -> str:
    os.makedirs("sub/dir", exist_ok=True)
    with open("sub/dir/file.txt", "w") as fh:
        fh.write("fine")
    os.rename("sub/dir/file.txt", "sub/moved.txt")
    with open(os.devnull, "w") as fh:
        fh.write("fine")
    subprocess.run([sys.executable, "-c", "print('x')"], stdout=subprocess.DEVNULL, check=True)
    return open("sub/moved.txt").read()


def big_file(mb: int) -> int:
    with open("big.bin", "wb") as fh:
        for _ in range(mb):
            fh.write(b"x" * (1 << 20))
    return os.path.getsize("big.bin")


def limits() -> dict:
    return {name: resource.getrlimit(getattr(resource, name))[0]
            for name in ("RLIMIT_CORE", "RLIMIT_AS", "RLIMIT_FSIZE", "RLIMIT_NPROC")}


def spawn_many(n: int) -> dict:
    """Fork ``n`` sleeping copies of this process (one process each)."""
    started, error = 0, ""
    for _ in range(n):
        try:
            pid = os.fork()
        except OSError as exc:
            error = type(exc).__name__
            break
        if pid == 0:
            time.sleep(30)
            os._exit(0)
        started += 1
    return {"started": started, "error": error}
'''


@pytest.fixture
def tools(tmp_path: Path) -> Path:
    path = tmp_path / "tools.py"
    path.write_text(TOOLS)
    return path


def processes_with(token: str) -> list[int]:
    """Living (not zombie) processes whose command line holds ``token``."""
    found = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            state = (entry / "stat").read_text().rsplit(")", 1)[1].split()[0]
            if state != "Z" and token.encode() in (entry / "cmdline").read_bytes():
                found.append(int(entry.name))
        except OSError:
            pass
    return found


def gone(token: str, seconds: float = 5.0) -> bool:
    deadline = time.monotonic() + seconds
    while processes_with(token):
        if time.monotonic() > deadline:
            return False
        time.sleep(0.05)
    return True


def require(sandbox: Sandbox, mechanism: str) -> None:
    sandbox.call("add", {"a": 1, "b": 1})  # starts the worker, which reports its confinement
    confinement = sandbox.confinement
    if mechanism == "pid_namespace" and not confinement.get("pid_namespace"):
        pytest.skip(f"no PID namespace here: {confinement.get('pid_namespace_problem')}")
    if mechanism == "landlock" and not (confinement.get("landlock") or {}).get("abi"):
        pytest.skip(f"no Landlock here: {(confinement.get('landlock') or {}).get('problem')}")


# == processes ====================================================================================
@pytest.mark.parametrize("how", ["new_session", "double_fork"])
def test_children_in_a_new_session_die_when_the_checker_ends(tools, how):
    token = f"df-confine-{how}-{time.time_ns()}"
    sandbox = Sandbox(tools)
    try:
        require(sandbox, "pid_namespace")
        if how == "new_session":
            assert sandbox.call("sleeper", {"token": token, "new_session": True})["ok"]
        else:
            assert sandbox.call("daemon", {"token": token})["ok"]
        assert processes_with(token)  # running, outside the worker's process group
    finally:
        sandbox.close()
    assert gone(token), "a process the tool started outlived the checker"


def test_children_die_at_a_timeout_and_after_os_exit(tools):
    token = f"df-confine-timeout-{time.time_ns()}"
    with Sandbox(tools, timeout=2) as sandbox:
        require(sandbox, "pid_namespace")
        answer = sandbox.call("sleeper_then_hang", {"token": token})
        assert not answer["ok"] and "TimeoutError" in answer["error"]
        assert gone(token), "a process started in a new session outlived the call's timeout"

        exit_token = f"df-confine-exit-{time.time_ns()}"
        answer = sandbox.call("sleeper_then_exit", {"token": exit_token})
        assert not answer["ok"] and "WorkerDied" in answer["error"] and "code 0" in answer["error"]
        assert gone(exit_token), "a process started before os._exit outlived the worker"
        assert sandbox.call("add", {"a": 2, "b": 3}) == {"ok": True, "result": 5, "truncated": False}


KILLER_PIPELINE = """
import json, os, sys
from dataflow.operators.apigen import ExecutionChecker
from dataflow.operators.apigen.execution import Sandbox
from dataflow.utils.storage import FileStorage

tools, data, cache, confined = sys.argv[1:5]
if confined == "no":  # where neither a PID namespace nor Landlock is available
    Sandbox.use_pid_namespace = False
    Sandbox.use_landlock = False
rows = [{"answers": [{"name": "kill_parent", "arguments": {}}]},
        {"answers": [{"name": "kill_processes", "arguments": {"pids": [os.getpid()]}}]},
        {"answers": [{"name": "add", "arguments": {"a": 2, "b": 2}}]}]
if confined == "no":
    rows.pop(1)  # the pipeline cannot be protected from a same-user tool without a mechanism
with open(data, "w") as fh:
    fh.write("".join(json.dumps(r) + "\\n" for r in rows))
report = ExecutionChecker(module_path=tools, timeout=10, keep_failed=True).run(
    FileStorage(data, cache_path=cache).step(), input_answers_key="answers")
print(json.dumps({"output": report.output_file}))
"""


@pytest.mark.parametrize("confined", ["yes", "no"])
def test_a_tool_that_kills_its_parent_or_the_pipeline_does_not_end_the_pipeline(tools, tmp_path, confined):
    """Run as a child process, so that a successful attack kills that process, not the tests."""
    if confined == "yes":
        with Sandbox(tools) as probe:
            probe.call("add", {"a": 1, "b": 1})
            state = probe.confinement
        if not state.get("pid_namespace") and not (state.get("landlock") or {}).get("signals"):
            pytest.skip("neither a PID namespace nor Landlock signal scoping here: "
                        f"{state.get('pid_namespace_problem')}; {(state.get('landlock') or {}).get('problem')}")
    env = dict(os.environ, PYTHONPATH=str(ROOT) + os.pathsep + os.environ.get("PYTHONPATH", ""))
    run = subprocess.run([sys.executable, "-c", KILLER_PIPELINE, str(tools), str(tmp_path / "rows.jsonl"),
                          str(tmp_path / "cache"), confined], env=env, capture_output=True, text=True, timeout=120)
    assert run.returncode == 0, f"the pipeline died: {run.returncode} {run.stderr[-2000:]}"
    step_file = Path(json.loads(run.stdout.splitlines()[-1])["output"])
    results = [json.loads(line)["execution_results"][0] for line in step_file.read_text().splitlines()]
    assert results[-1] == {"name": "add", "ok": True, "result": 4}
    first = results[0]  # the parent was protected (the signal refused or ignored) or its death failed the row
    assert first.get("result") == "still here" or any(
        reason in first.get("error", "") for reason in ("PermissionError", "WorkerDied")), first
    if confined == "yes":
        assert results[1]["ok"] and "killed" not in results[1]["result"], results[1]


# == files ========================================================================================
def test_writes_outside_the_temporary_folder_are_refused(tools, tmp_path):
    outside = tmp_path / "outside"
    outside.mkdir()
    victim = outside / "victim.txt"
    victim.write_text("precious")
    with Sandbox(tools) as sandbox:
        require(sandbox, "landlock")
        attacks = {
            "absolute": ("write", {"path": str(outside / "new.txt")}),
            "dotdot": ("write", {"path": "../" * 12 + str(outside / "dotdot.txt").lstrip("/")}),
            "overwrite": ("write", {"path": str(victim)}),
            "append": ("append", {"path": str(victim)}),
            "truncate": ("truncate", {"path": str(victim)}),
            "remove": ("remove", {"path": str(victim)}),
            "mkdir": ("make_dir", {"path": str(outside / "dir")}),
            "symlink": ("symlink", {"target": "/etc/passwd", "link": str(outside / "link")}),
            "rename_out": ("move_out", {"path": str(outside / "moved.txt")}),
            "system_tmp": ("write", {"path": f"/tmp/df-confine-{time.time_ns()}.txt"}),
        }
        for name, (function, arguments) in attacks.items():
            answer = sandbox.call(function, arguments)
            assert not answer["ok"] and "PermissionError" in answer["error"], (name, answer)
        assert sandbox.call("child_writes", {"path": str(outside / "child.txt")})["result"] != 0
        inside = sandbox.call("inside_and_dev_null", {})
        assert inside == {"ok": True, "result": "fine", "truncated": False}  # its own folder stays usable
    assert sorted(p.name for p in outside.iterdir()) == ["victim.txt"]
    assert victim.read_text() == "precious"
    assert not Path(attacks["system_tmp"][1]["path"]).exists()


def test_a_module_that_writes_on_import_is_confined_too(tmp_path):
    marker = tmp_path / "written_on_import.txt"
    module = tmp_path / "tools.py"
    module.write_text(f"open({str(marker)!r}, 'w').write('x')\n\ndef add(a: int, b: int) -> int:\n    return a + b\n")
    with Sandbox(module) as sandbox:
        try:
            sandbox.call("add", {"a": 1, "b": 1})
        except ConfigError as exc:
            assert "PermissionError" in str(exc)
        else:
            require(sandbox, "landlock")
    assert not marker.exists()


# == resource limits ===============================================================================
def test_file_size_core_dumps_and_memory_are_capped_before_import(tools, tmp_path):
    with Sandbox(tools, memory_mb=300, max_file_mb=8) as sandbox:
        assert sandbox.call("limits", {})["result"]["RLIMIT_CORE"] == 0
        assert sandbox.call("limits", {})["result"]["RLIMIT_FSIZE"] == 8 << 20
        answer = sandbox.call("big_file", {"mb": 64})
        assert not answer["ok"] and "File too large" in answer["error"], answer
        assert sandbox.call("add", {"a": 1, "b": 2})["result"] == 3  # the tool process survived

    greedy = tmp_path / "greedy.py"
    greedy.write_text("_block = bytearray(1 << 30)  # 1 GB while importing\n\ndef add(a: int) -> int:\n    return a\n")
    with Sandbox(greedy, memory_mb=256) as sandbox:
        with pytest.raises(ConfigError, match="MemoryError"):
            sandbox.call("add", {"a": 1})


NOBODY_FORK_BOMB = """
import json, sys
from dataflow.operators.apigen.execution import Sandbox

with Sandbox(sys.argv[1], max_processes=8, timeout=30) as sandbox:
    answer = sandbox.call("spawn_many", {"n": 100})
    print(json.dumps({"answer": answer, "confinement": sandbox.confinement}))
"""
SYSTEM_PYTHON = next((p for p in ("/usr/bin/python3", "/usr/local/bin/python3") if os.access(p, os.X_OK)), None)
SITE_PACKAGES = Path(sys.prefix) / "lib" / f"python{sys.version_info[0]}.{sys.version_info[1]}" / "site-packages"


def test_the_number_of_processes_is_capped(tools, tmp_path):
    """The kernel does not apply RLIMIT_NPROC to root: as root, the attack runs as uid 65534 with
    the system Python (this venv's packages on its path), as an ordinary user's pipeline would."""
    if os.geteuid() != 0:
        with Sandbox(tools, max_processes=8, timeout=30) as sandbox:
            answer = sandbox.call("spawn_many", {"n": 100})
    else:
        version = subprocess.run([SYSTEM_PYTHON or "false", "-c", "import sys; print(sys.version_info[:2])"],
                                 capture_output=True, text=True).stdout.strip()
        if SYSTEM_PYTHON is None or version != str(tuple(sys.version_info[:2])) or not SITE_PACKAGES.is_dir():
            pytest.skip("running as root (not subject to RLIMIT_NPROC) and no system Python of this version "
                        "for another user")
        shared = Path(tempfile.mkdtemp(prefix="df-nproc-"))
        try:
            os.chmod(shared, 0o755)
            module = shared / "tools.py"
            module.write_text(TOOLS)
            os.chmod(module, 0o644)
            env = {"PATH": "/usr/bin:/bin", "PYTHONPATH": f"{ROOT}{os.pathsep}{SITE_PACKAGES}"}
            run = subprocess.run([SYSTEM_PYTHON, "-c", NOBODY_FORK_BOMB, str(module)], cwd="/", env=env,
                                 capture_output=True, text=True, timeout=120,
                                 preexec_fn=lambda: (os.setgroups([]), os.setgid(65534), os.setuid(65534)))
        finally:
            subprocess.run(["rm", "-rf", str(shared)])
        if run.returncode != 0:
            pytest.skip(f"cannot run the sandbox as uid 65534 here: {run.stderr.strip()[-300:]}")
        answer = json.loads(run.stdout.splitlines()[-1])["answer"]
    assert answer["ok"], answer
    assert answer["result"]["started"] <= 8 and answer["result"]["error"] == "BlockingIOError", answer
