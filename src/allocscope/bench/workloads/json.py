"""json: service-like JSON decode, transform and encode in threads.

Each thread handles ``iters`` requests per round: decode a request body (bodies of about
``size`` bytes on average, drawn from a fixed seeded set), transform it (filter, total,
sort, reshape) and encode the response. One response in ``keep`` is cached until the end,
like a response cache that outlives the requests around it.
"""

from __future__ import annotations

import json
import random
from typing import Any

from allocscope.bench.workloads import Params, in_threads

DESCRIPTION = "decode, transform, encode ~4 KB JSON bodies over 4 threads, 1 in 10 cached"
DEFAULTS = Params(threads=4, iters=1_000, size=4096, keep=10, rounds=2)

BODIES = 64
_WORDS = ("alpha", "beta", "gamma", "delta", "epsilon", "zeta", "eta", "theta")


def body(rng: random.Random, size: int) -> str:
    """One request body of roughly ``size`` bytes (between a quarter and twice that)."""
    target = rng.randint(max(64, size // 4), max(64, size * 2))
    items: list[dict[str, Any]] = []
    doc: dict[str, Any] = {"id": rng.getrandbits(48), "user": f"u{rng.randrange(10**6)}"}
    doc["items"] = items
    while len(json.dumps(doc)) < target:
        items.append(
            {
                "sku": f"{rng.choice(_WORDS)}-{rng.randrange(10**5)}",
                "qty": rng.randint(1, 9),
                "price": round(rng.uniform(0.5, 500.0), 2),
                "tags": rng.sample(_WORDS, rng.randint(0, 4)),
                "note": rng.choice(_WORDS) * rng.randint(1, 60),
            }
        )
    return json.dumps(doc)


def _handle(body: str) -> str:
    req = json.loads(body)
    items = [i for i in req["items"] if i["qty"] > 1 or i["price"] > 10]
    for i in items:
        i["total"] = round(i["qty"] * i["price"], 2)
        i["label"] = f"{i['sku']}:{','.join(i['tags'])}:{i['note'][:32]}"
    items.sort(key=lambda i: i["total"], reverse=True)
    resp = {
        "request": req["id"],
        "user": req["user"].upper(),
        "count": len(items),
        "total": round(sum(i["total"] for i in items), 2),
        "items": items,
    }
    return json.dumps(resp, separators=(",", ":"))


def run(params: Params) -> list[Any]:
    rng = random.Random(params.seed)
    bodies = [body(rng, params.size) for _ in range(BODIES)]

    def serve(index: int, cache: list[Any]) -> None:
        n = index * 7
        for _ in range(params.rounds):
            for i in range(params.iters):
                resp = _handle(bodies[n % BODIES])
                if i % params.keep == 0:
                    cache.append(resp)
                n += 1

    return in_threads(params, serve)
