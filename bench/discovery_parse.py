"""Discovery's parse of hostile replies: linear in the reply's elements, and in the replies.

Run ``python bench/discovery_parse.py``; prints JSON. Issue 20 item 10: the parser copied
the namespace prefixes in scope for every element, so a reply of n nested elements that
each declare one more prefix (the worst a 32 KiB datagram can hold: about 1,000) cost n²/2
dict entries in memory and time, and a probe reads up to MAX_DATAGRAMS such replies. The
scopes are now linked, not copied. The figures: for 250, 500 and 1000 nested elements,
the peak memory of one parse (tracemalloc) and its CPU time (best of 5), each with its
ratio to the 250 one (linear: at most about 2 and 4; the copy gave 3.5 and 13 in memory);
with ``--replies``, the CPU time of 1000 and 2000 replies of 1000 elements (about 2).
"""

from __future__ import annotations

import json
import sys
import time
import tracemalloc
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from pumaguard_hb.inputs import discovery

SIZES = (250, 500, 1000)
REPS = 5


def nested(n: int) -> bytes:
    """A reply of ``n`` nested elements, each declaring one more namespace prefix."""
    opened = "".join(f'<p{i}:e xmlns:p{i}="u">' for i in range(n))
    closed = "".join(f"</p{i}:e>" for i in reversed(range(n)))
    return (
        f'<s:Envelope xmlns:s="{discovery.SOAP}"><s:Body>{opened}{closed}</s:Body></s:Envelope>'
    ).encode()


def peak_bytes(data: bytes) -> int:
    tracemalloc.start()
    try:
        discovery._parse_xml(data)
        return tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()


def cpu_ms(data: bytes, replies: int = 1) -> float:
    best = float("inf")
    for _ in range(REPS):
        start = time.thread_time()
        for _ in range(replies):
            discovery.parse_reply(data, "urn:uuid:0", "192.0.2.1")
        best = min(best, time.thread_time() - start)
    return best * 1000


def main() -> int:
    docs = {n: nested(n) for n in SIZES}
    assert all(len(d) <= discovery.MAX_DATAGRAM for d in docs.values())
    memory = {n: peak_bytes(d) for n, d in docs.items()}
    cpu = {n: cpu_ms(d) for n, d in docs.items()}
    base = SIZES[0]
    many = {r: cpu_ms(docs[1000], r) for r in (1000, 2000)} if "--replies" in sys.argv else {}
    out = {
        "elements": list(SIZES),
        "peak_bytes": memory,
        "peak_ratio": {n: round(memory[n] / memory[base], 2) for n in SIZES},
        "cpu_ms": {n: round(cpu[n], 3) for n in SIZES},
        "cpu_ratio": {n: round(cpu[n] / cpu[base], 2) for n in SIZES},
    }
    if many:
        out["replies_cpu_ms"] = {r: round(ms, 1) for r, ms in many.items()}
        out["replies_ratio"] = round(many[2000] / many[1000], 2)
    print(json.dumps(out, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
