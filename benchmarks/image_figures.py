"""Size and idle memory of built images: docs/explanation/measured-figures.md, the images.

    .venv/bin/python benchmarks/image_figures.py allocscope:latest \
        allocscope-example-flask:latest allocscope-example-fastapi:latest

For each image: its size uncompressed and as ``docker save | gzip``; then it runs on
loopback (``--network host``, HOST=127.0.0.1, a free port), answers /healthz, gets 4
requests, idles 3 s, and every process of the container is read from the host's
/proc/<pid>/status (VmRSS). Build times are build-image.sh's own ("built in Ns"). Prints the
load average with the figures: on a shared machine they move with it.
"""

from __future__ import annotations

import socket
import subprocess
import sys
import time
import urllib.request
import uuid


def docker(*args: str) -> str:
    return subprocess.run(
        ["docker", *args], capture_output=True, text=True, check=True, timeout=300
    ).stdout


def gzip_size(image: str) -> int:
    save = subprocess.Popen(["docker", "save", image], stdout=subprocess.PIPE)
    gz = subprocess.run(["gzip", "-c"], stdin=save.stdout, capture_output=True, check=True)
    save.wait(timeout=300)
    return len(gz.stdout)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


def vm_rss_kib(pid: int) -> int:
    with open(f"/proc/{pid}/status") as f:
        return next(int(ln.split()[1]) for ln in f if ln.startswith("VmRSS:"))


def idle_rss(image: str) -> list[tuple[int, str]]:
    """(VmRSS KiB, command line) of every process of the running, idle image."""
    name, port = f"allocscope-figures-{uuid.uuid4().hex[:8]}", free_port()
    docker("run", "-d", "--name", name, "--network", "host", "-e", "HOST=127.0.0.1",
           "-e", f"PORT={port}", image)  # fmt: skip
    try:
        deadline = time.monotonic() + 120
        while True:
            try:
                urllib.request.urlopen(f"http://127.0.0.1:{port}/healthz", timeout=2).read()
                break
            except OSError:
                if time.monotonic() > deadline:
                    raise
                time.sleep(0.5)
        for _ in range(4):
            urllib.request.urlopen(f"http://127.0.0.1:{port}/", timeout=5).read()
        time.sleep(3)
        pids = [int(p) for p in docker("top", name, "-eo", "pid").split()[1:]]
        rows = []
        for pid in pids:
            with open(f"/proc/{pid}/cmdline", "rb") as f:
                cmd = f.read().replace(b"\0", b" ").decode(errors="replace")
            rows.append((vm_rss_kib(pid), cmd[:70]))
        return rows
    finally:
        subprocess.run(["docker", "rm", "-f", name], capture_output=True, check=False)


def main(images: list[str]) -> None:
    with open("/proc/loadavg") as f:
        print(f"load average: {f.read().strip()}")
    for image in images:
        size = int(docker("image", "inspect", "-f", "{{.Size}}", image))
        print(f"{image}: {size / 1e6:.1f} MB uncompressed, {gzip_size(image) / 1e6:.1f} MB gzip")
        for kib, cmd in idle_rss(image):
            print(f"    VmRSS {kib / 1024:6.1f} MiB  {cmd}")
    with open("/proc/loadavg") as f:
        print(f"load average: {f.read().strip()}")


if __name__ == "__main__":
    main(sys.argv[1:] or ["allocscope:latest"])
