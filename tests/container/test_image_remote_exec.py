"""CPython 3.14 in the image: ``sys.remote_exec`` (PEP 768) runs code inside the running,
containerised server with no debugger: the way ``inspect --attach`` can reach it.

The caller is the same image in a sidecar that joins the server's pid namespace, as root
with CAP_SYS_PTRACE (the server itself keeps running as 65532 with no capabilities); both
see the script at the same path."""

from __future__ import annotations

import json
import time
from pathlib import Path

import pytest

from tests.container.dockerlib import SLOW, run_once, service

pytestmark = [pytest.mark.container, SLOW]

SCRIPT = """import os, sys
from allocscope import forksafe
bt = forksafe.background_thread()
sys.stderr.write(f"remote_exec: pid {os.getpid()} uid {os.getuid()} live {bt and bt.live}\\n")
sys.stderr.flush()
"""


def test_remote_exec_into_the_running_server(flask_image: str, shared_dir: Path) -> None:
    image = flask_image
    (shared_dir / "probe.py").write_text(SCRIPT)
    (shared_dir / "probe.py").chmod(0o644)
    with service(image, "-v", f"{shared_dir}:/probe:ro") as c:
        c.wait_serving(deadline_s=90)
        proc = run_once(
            "--pid", f"container:{c.name}", "--user", "0", "--cap-add", "SYS_PTRACE",
            "-v", f"{shared_dir}:/probe:ro", "--entrypoint", "/usr/bin/python", image,
            "-c", "import sys; sys.remote_exec(1, '/probe/probe.py'); print('sent')",
        )  # fmt: skip
        assert proc.returncode == 0 and proc.stdout.strip() == "sent", proc.stderr
        deadline = time.monotonic() + 20
        while "remote_exec:" not in c.logs() and time.monotonic() < deadline:
            time.sleep(0.2)
        [line] = [ln for ln in c.logs().splitlines() if ln.startswith("remote_exec:")]
        # pid 1 is gunicorn's arbiter, still the unprivileged user, jemalloc's thread alive.
        assert line == "remote_exec: pid 1 uid 65532 live True"


ATTACH = """import json, os, sys, time
from allocscope.cli import main
def ppid(p):
    with open(f"/proc/{p}/stat") as f:
        return f.read().rsplit(")", 1)[1].split()[1]
worker = next(p for p in os.listdir("/proc") if p.isdigit() and ppid(p) == "1")
code = main(["inspect", worker, "--attach", "--json", "--timeout", "30"])
time.sleep(0.5)
left = [n for n in os.listdir("/proc/1/root/tmp") if n.startswith("allocscope-attach")]
print(json.dumps({"code": code, "left": left, "worker": int(worker)}))
"""


@pytest.mark.parametrize(
    ("env", "path"),
    [({}, "remote_exec"), ({"PYTHON_DISABLE_REMOTE_DEBUG": "1"}, "ptrace")],
)
def test_attach_uses_remote_exec_between_two_cpython_314s(
    flask_image: str, python_xy: str, env: dict[str, str], path: str
) -> None:
    """``allocscope inspect --attach`` run by the image's CPython 3.14 in a sidecar (the
    source of this checkout, on PYTHONPATH) into a gunicorn worker: the path is
    sys.remote_exec (ptrace, on x86-64, when the target disables remote debugging), the
    worker serves on, and its /tmp is left as it was."""
    src = str(Path(__file__).resolve().parents[2] / "src")
    with service(flask_image, env=env) as c:
        c.wait_serving(deadline_s=90)
        proc = run_once(
            "--pid", f"container:{c.name}", "--user", "0", "--cap-add", "SYS_PTRACE",
            "-v", f"{src}:/allocscope-src:ro", "-e", "PYTHONPATH=/allocscope-src",
            "--entrypoint", "/usr/bin/python", flask_image, "-c", ATTACH,
        )  # fmt: skip
        assert proc.returncode == 0, proc.stderr
        doc, tail = (json.loads(line) for line in proc.stdout.strip().splitlines())
        assert tail["code"] == 0 and tail["left"] == [], tail
        attach = doc["attach"]
        assert attach["path"] == path
        assert ("PEP 768" in attach["mechanism"]) == (path == "remote_exec")
        assert attach["snapshot"]["pid"] == tail["worker"]
        assert attach["snapshot"]["allocator"]["name"] == "jemalloc"
        assert attach["python"]["version"].startswith(f"{python_xy}.")
        assert c.get("/healthz").status == 200  # the worker serves on
