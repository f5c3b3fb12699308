#!/usr/bin/env python3
"""Where a replicated write's time goes: reads each node's /metrics twice, INTERVAL seconds
apart, and prints per node the rate and mean of the Raft stage histograms over that window:
log appends (write + fdatasync, entries per append), state-machine applies (time, entries per
batch) and the peer RPCs the node sent.

Run it while a write load runs, e.g. beside `KEEP_WORK=1 WORKLOADS=put-rr NO_FAILOVER=1
DURATION=25 benches/cluster.sh --no-etcd` (the node addresses are on its `system:` line):

    python3 benches/raft-stages.py 127.0.0.1:21542 127.0.0.1:22387 127.0.0.1:31721
    python3 benches/raft-stages.py --interval 5 --log /tmp/bench.log   # addresses from the log

Python standard library only. /metrics must be readable without a token (the bench's nodes).
"""
import argparse
import re
import sys
import time
import urllib.request

STAGES = [
    ("mussikon_raft_log_append_seconds", "log append", True),
    ("mussikon_raft_log_append_entries", "entries per append", False),
    ("mussikon_raft_apply_seconds", "apply", True),
    ("mussikon_raft_apply_entries", "entries per apply", False),
    ("mussikon_raft_peer_rpc_seconds", "peer rpc", True),
]
LINE = re.compile(r"^(\w+?)(\{[^}]*\})?\s+(\S+)$")


def scrape(addr):
    with urllib.request.urlopen(f"http://{addr}/metrics", timeout=5) as r:
        text = r.read().decode()
    out = {}
    for line in text.splitlines():
        m = LINE.match(line.strip())
        if m and not line.startswith("#"):
            out[(m.group(1), m.group(2) or "")] = float(m.group(3))
    return out


def nodes_from_log(path, wait_s=600):
    deadline = time.time() + wait_s
    while time.time() < deadline:
        try:
            text = open(path).read()
        except OSError:
            text = ""
        m = re.search(r"nodes: (\S+?),? clients", text)
        if m and "preload:" in text:
            return m.group(1).rstrip(",").split(",")
        time.sleep(0.5)
    sys.exit(f"no 'nodes:' and 'preload:' lines in {path} within {wait_s} s")


def main():
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("nodes", nargs="*", help="HOST:PORT of each node")
    p.add_argument("--interval", type=float, default=10.0, help="seconds between the reads")
    p.add_argument("--log", help="a benches/cluster.sh log to take the addresses from")
    a = p.parse_args()
    nodes = a.nodes or (nodes_from_log(a.log) if a.log else [])
    if not nodes:
        p.error("give node addresses or --log")
    before = {n: scrape(n) for n in nodes}
    time.sleep(a.interval)
    after = {n: scrape(n) for n in nodes}
    for n in nodes:
        b, e = before[n], after[n]
        print(f"== {n} (term {e.get(('mussikon_raft_term', ''), 0):.0f})")
        for base, name, seconds in STAGES:
            for key in sorted(k for k in e if k[0] == base + "_count"):
                count = e[key] - b.get(key, 0)
                if count <= 0:
                    continue
                total = e[(base + "_sum", key[1])] - b.get((base + "_sum", key[1]), 0)
                mean = total / count * (1000 if seconds else 1)
                unit = " ms" if seconds else ""
                print(f"  {name}{key[1]}: {count / a.interval:.0f}/s, mean {mean:.2f}{unit}")


if __name__ == "__main__":
    main()
