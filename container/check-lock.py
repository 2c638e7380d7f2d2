"""Refuse a requirements file the image cannot install with ``pip --require-hashes``.

Usage: python check-lock.py LOCKFILE [NAME-TO-SHOW]

Every requirement must be pinned (``name==version``) and carry at least one
``--hash=sha256:...``; includes (``-r``/``-c``) are refused, they would escape the check.
Exit 0 when the file is a usable lock; otherwise one line on stderr and exit 3. Standard
library only: it runs on the host (container/fetch-wheels.sh) and in the builder stage.
"""

from __future__ import annotations

import re
import sys

PIN = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]*(\[[^\]]*\])?==[^\s;]+")
HOW = "lock it with container/fetch-wheels.sh lock (or pip-compile --generate-hashes)"


def problems(text: str) -> list[str]:
    joined = re.sub(r"\\\n", " ", text)
    found = []
    for raw in joined.splitlines():
        line = raw.split(" #")[0].strip()
        if not line or line.startswith("#"):
            continue
        if line.startswith(("-r", "-c", "--requirement", "--constraint")):
            found.append(f"includes another file ({line.split()[0]}): inline it")
            continue
        if line.startswith("-"):
            continue  # an option line (e.g. --index-url): pip judges it
        name = line.split()[0]
        if not PIN.match(line):
            found.append(f"{name} is not pinned with ==")
        elif "--hash=sha256:" not in line:
            found.append(f"{name} has no --hash")
    return found


def main(argv: list[str]) -> int:
    path, shown = argv[1], argv[2] if len(argv) > 2 else argv[1]
    try:
        with open(path, encoding="utf-8") as f:
            text = f.read()
    except OSError as e:
        sys.stderr.write(f"{shown}: cannot read the requirements: {e.strerror}\n")
        return 3
    found = problems(text)
    if not any(not ln.strip().startswith(("#", "-")) and ln.strip() for ln in text.splitlines()):
        found.append("no requirement at all")
    if found:
        sys.stderr.write(
            f"{shown}: not a hash-locked requirements file ({'; '.join(found[:3])}"
            f"{'; ...' if len(found) > 3 else ''}): the image installs offline with "
            f"pip --require-hashes; {HOW}\n"
        )
        return 3
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
