"""The documentation site, built and rendered in a real browser (Debian's headless Chromium).

The site is built once per session (as `make docs` does, strictly), served on 127.0.0.1,
and the home page and a how-to guide are loaded: they must render their content and log
no console error, uncaught exception or failed resource.
"""

from __future__ import annotations

import functools
import html
import http.server
import re
import subprocess
import sys
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.docs import examples
from tests.docs.chromium import Chromium

ROOT = examples.ROOT


@pytest.fixture(scope="module")
def site(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("site")
    command = [sys.executable, "-m", "sphinx", "-W", "-n", "--keep-going", "-q", "-b", "html"]
    done = subprocess.run(
        [*command, "-d", str(out / ".doctrees"), str(ROOT / "docs"), str(out / "html")],
        capture_output=True, text=True, timeout=600,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    return out / "html"


class _Quiet(http.server.SimpleHTTPRequestHandler):
    def log_message(self, format: str, *args: object) -> None:
        pass


@pytest.fixture(scope="module")
def served(site: Path) -> Iterator[str]:
    server = http.server.ThreadingHTTPServer(
        ("127.0.0.1", 0), functools.partial(_Quiet, directory=str(site))
    )
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_port}"
    finally:
        server.shutdown()
        server.server_close()
        thread.join(timeout=10)


@pytest.fixture(scope="module")
def browser() -> Iterator[Chromium]:
    with Chromium() as chromium:
        yield chromium


@pytest.mark.parametrize(
    ("page", "title"),
    [
        ("index.html", "allocscope"),
        ("how-to/check-allocator-and-fips.html", "Is this process on jemalloc"),
    ],
)
def test_page_renders_without_errors(browser: Chromium, served: str, page: str, title: str) -> None:
    shown = browser.open(f"{served}/{page}")
    assert shown.errors == []
    assert shown.title.startswith(title)
    assert shown.text_length > 1000  # the page's own text, not an error page
    assert shown.screenshot.startswith(b"\x89PNG")


def test_a_broken_page_is_seen(browser: Chromium, served: str, site: Path) -> None:
    """The check can fail: a script error and a missing resource are both reported."""
    (site / "broken.html").write_text(
        "<html><body><p>x</p><img src='missing.png'><script>noSuchFunction()</script></body></html>"
    )
    shown = browser.open(f"{served}/broken.html")
    assert any("noSuchFunction" in e for e in shown.errors), shown.errors
    assert any("404" in e for e in shown.errors), shown.errors


def test_every_how_to_is_two_clicks_from_home(site: Path) -> None:
    """Home -> how-to index -> each guide, and each guide is linked from home directly."""
    home = (site / "index.html").read_text()
    guides = sorted(p.stem for p in (ROOT / "docs" / "how-to").glob("*.md") if p.stem != "index")
    index = (site / "how-to" / "index.html").read_text()
    assert 'href="how-to/index.html"' in home
    for guide in guides:
        assert f'href="{guide}.html"' in index, f"{guide} is not listed on the how-to index"


def test_reference_is_generated_from_the_code(site: Path) -> None:
    from allocscope import exitcodes
    from allocscope.cli import build_parser

    cli = (site / "reference" / "cli.html").read_text().replace("\u2019", "'")  # smart quotes
    subparsers = build_parser()._subparsers
    assert subparsers is not None
    for action in subparsers._group_actions:
        for name, sub in action.choices.items():
            assert html.escape(sub.description or "", quote=False) in cli, name
            flags = (o for a in sub._actions if a.dest != "help" for o in a.option_strings)
            for flag in (f for f in flags if f.startswith("--")):
                assert re.search(rf"<kbd>[^<]*{re.escape(flag)}\b", cli), f"{name} {flag}"
    codes = (site / "reference" / "exit-codes.html").read_text()
    for name, value in vars(exitcodes).items():
        if name.isupper() and isinstance(value, int):
            assert (
                f'<code class="docutils literal notranslate"><span class="pre">{name}</span>'
                in codes
            ), name
