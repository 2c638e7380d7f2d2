"""A collector created before fork (gunicorn --preload) describes each child, not its parent."""

from __future__ import annotations

import textwrap

from tests.integration.pychild import run_json

SCRIPT = textwrap.dedent(
    """
    import json, os
    from prometheus_client import CollectorRegistry, generate_latest
    from prometheus_client.parser import text_string_to_metric_families
    from allocscope import this_process
    from allocscope.prometheus import AllocscopeCollector

    registry = CollectorRegistry()
    registry.register(AllocscopeCollector())

    def scrape():
        text = generate_latest(registry).decode()
        pids = {s.labels["pid"] for f in text_string_to_metric_families(text) for s in f.samples}
        bt = [s.value for f in text_string_to_metric_families(text) for s in f.samples
              if s.name == "allocscope_jemalloc_background_thread"]
        return {"pids": sorted(pids), "facts_pid": this_process.current().pid, "live": bt}

    parent = scrape()
    r, w = os.pipe()
    pid = os.fork()
    if pid == 0:
        os.write(w, json.dumps({"pid": os.getpid(), **scrape()}).encode())
        os._exit(0)
    os.close(w)
    child = json.loads(os.read(r, 65536))
    os.waitpid(pid, 0)
    print(json.dumps({"parent": {"pid": os.getpid(), **parent}, "child": child}))
    """
)


def test_a_forked_child_detects_again_and_labels_its_own_pid(jemalloc: str) -> None:
    doc = run_json(SCRIPT, LD_PRELOAD=jemalloc, MALLOC_CONF="background_thread:true")
    parent, child = doc["parent"], doc["child"]
    assert parent["pids"] == [str(parent["pid"])] and parent["facts_pid"] == parent["pid"]
    assert child["pids"] == [str(child["pid"])] and child["facts_pid"] == child["pid"]
    assert child["pid"] != parent["pid"]
    # And the fork's loss shows in the child's own series: live 0 there, 1 in the parent.
    assert parent["live"] == [1.0] and child["live"] == [0.0]
