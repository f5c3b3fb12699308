#!/usr/bin/env python3
"""kill -9 loop for one node: nothing acknowledged is lost, nothing is doubled.

For each cycle: start `mussikon serve` on the data directory, run writers (musician upserts,
bookings, cancellations through HTTP) for a random time, SIGKILL the node while they write, then
  1. `mussikon check` on the dead node's directory (both sides of every booking agree, the index
     holds every stored musician exactly once after replay) must exit 0;
  2. restart the node and read back: every upsert answered 2xx is present with the acknowledged
     body; every booking answered 201 and not cancelled since is present exactly once; no
     musician is booked twice on a date; no slot holds more bookings than seats.
Writes whose answer was lost in the kill are "in doubt": either outcome is allowed, but the
state they leave must still satisfy every invariant.

Usage: server/tests/kill_loop.py [--cycles N] [--bin PATH] [--seed S]
Exit 0 when every cycle passes; prints one line per cycle and a summary.
"""
import argparse
import json
import os
import random
import signal
import subprocess
import sys
import tempfile
import threading
import time
import urllib.error
import urllib.request

DATES = [f"2027-02-{d:02d}" for d in range(1, 11)]
INSTRUMENTS = ["guitar", "drums", "bass"]


def musician(mid, name):
    return {
        "id": mid, "name": name,
        "instruments": [{"name": i, "level": 5} for i in INSTRUMENTS],
        "location": {"lat": 40.4, "lon": -3.7}, "travel_radius_km": 100,
        "fee": {"amount": 10000, "currency": "EUR"},
    }


def gig(gid, date):
    return {
        "id": gid, "title": f"Gig {gid}", "date": date,
        "location": {"lat": 40.4, "lon": -3.7}, "radius_km": 50,
        "slots": [{"instrument": "guitar", "count": 2}, {"instrument": "drums", "count": 1}],
        "budget": {"max_fee": 20000, "currency": "EUR"},
    }


class Node:
    def __init__(self, binary, data_dir):
        self.binary, self.data_dir, self.proc, self.base = binary, data_dir, None, None

    def start(self):
        self.log = open(os.path.join(self.data_dir, "..", "server.log"), "ab")
        self.proc = subprocess.Popen(
            [self.binary, "serve", "--listen", "127.0.0.1:0", "--data-dir", self.data_dir],
            stdout=subprocess.PIPE, stderr=self.log)
        line = self.proc.stdout.readline().decode()
        if not line.startswith("listening on "):
            raise SystemExit(f"node did not start: {line!r}")
        self.base = "http://" + line.split()[-1]

    def kill(self):
        self.proc.send_signal(signal.SIGKILL)
        self.proc.wait()
        self.proc.stdout.close()
        self.log.close()

    def stop(self):
        self.proc.send_signal(signal.SIGTERM)
        self.proc.wait(timeout=30)
        self.proc.stdout.close()
        self.log.close()


def call(base, method, path, body=None, timeout=10):
    data = json.dumps(body).encode() if body is not None else None
    req = urllib.request.Request(base + path, data=data, method=method)
    if data is not None:
        req.add_header("Content-Type", "application/json")
    try:
        with urllib.request.urlopen(req, timeout=timeout) as r:
            return r.status, json.loads(r.read() or b"null")
    except urllib.error.HTTPError as e:
        return e.code, None


class Ledger:
    """What the node acknowledged. Keyed so that later acknowledged writes supersede earlier."""

    def __init__(self):
        self.lock = threading.Lock()
        self.upserts = {}        # musician id -> acknowledged name (None once in doubt)
        self.bookings = {}       # (gig, musician) -> "acked" | "doubt" | "cancelled"
        self.acked = self.doubt = 0


def writer(base, ledger, rng, cycle, wid, stop, gigs, musicians):
    n = 0
    while not stop.is_set():
        n += 1
        op = rng.random()
        try:
            if op < 0.4:
                mid = rng.choice(musicians)
                name = f"c{cycle}-w{wid}-n{n}"
                with ledger.lock:
                    ledger.upserts[mid] = ("doubt", name, ledger.upserts.get(mid))
                status, _ = call(base, "PUT", f"/v1/musicians/{mid}", musician(mid, name))
                with ledger.lock:
                    if status in (200, 201):
                        ledger.upserts[mid] = ("acked", name, None)
                        ledger.acked += 1
                    else:
                        raise SystemExit(f"PUT musician answered {status}")
            elif op < 0.85:
                g, m = rng.choice(gigs), rng.choice(musicians)
                slot = rng.choice([0, 1])
                with ledger.lock:
                    prev = ledger.bookings.get((g, m))
                    ledger.bookings[(g, m)] = ("doubt", prev)
                status, _ = call(base, "POST", f"/v1/gigs/{g}/bookings",
                                 {"slot": slot, "musician_id": m})
                with ledger.lock:
                    if status == 201:
                        ledger.bookings[(g, m)] = ("acked", None)
                        ledger.acked += 1
                    elif status == 409:
                        ledger.bookings[(g, m)] = prev
                    else:
                        raise SystemExit(f"POST booking answered {status}")
            else:
                g, m = rng.choice(gigs), rng.choice(musicians)
                with ledger.lock:
                    prev = ledger.bookings.get((g, m))
                    ledger.bookings[(g, m)] = ("doubt", prev)
                status, _ = call(base, "DELETE", f"/v1/gigs/{g}/bookings/{m}")
                with ledger.lock:
                    if status == 204:
                        ledger.bookings[(g, m)] = ("cancelled", None)
                        ledger.acked += 1
                    elif status == 404:
                        ledger.bookings[(g, m)] = prev
                    else:
                        raise SystemExit(f"DELETE booking answered {status}")
        except (urllib.error.URLError, ConnectionError, OSError, TimeoutError):
            with ledger.lock:
                ledger.doubt += 1
            return  # the node is gone: this write stays in doubt


def booking_states(entry):
    """Every state an entry may be in: acked/cancelled are sure; doubt keeps the previous too."""
    if entry is None:
        return {"absent"}
    kind, prev = entry
    if kind == "acked":
        return {"present"}
    if kind == "cancelled":
        return {"absent"}
    return {"present", "absent"} if kind == "doubt" else booking_states(prev)


def verify(base, ledger, gigs, musicians):
    problems = []
    seats = {0: 2, 1: 1}
    held = {}
    for g in gigs:
        status, view = call(base, "GET", f"/v1/gigs/{g}")
        if status != 200:
            problems.append(f"gig {g} missing ({status})")
            continue
        per_slot = {}
        seen = set()
        for b in view["bookings"]:
            key = (g, b["musician_id"])
            if key in seen:
                problems.append(f"{g}: musician {b['musician_id']} booked twice")
            seen.add(key)
            per_slot[b["slot"]] = per_slot.get(b["slot"], 0) + 1
            held.setdefault(b["musician_id"], []).append(view["gig"]["date"])
        for s, n in per_slot.items():
            if n > seats[s]:
                problems.append(f"{g} slot {s}: {n} bookings for {seats[s]} seats")
        for m in musicians:
            states = booking_states(ledger.bookings.get((g, m)))
            now = "present" if (g, m) in seen else "absent"
            if now not in states:
                problems.append(f"booking {g}/{m} is {now}, acknowledged {sorted(states)}")
    for m, dates in held.items():
        if len(dates) != len(set(dates)):
            problems.append(f"musician {m} booked twice on one date: {sorted(dates)}")
    for m, entry in ledger.upserts.items():
        status, view = call(base, "GET", f"/v1/musicians/{m}")
        if status != 200:
            problems.append(f"musician {m} missing ({status})")
            continue
        allowed = set()
        while entry is not None:
            kind, name, prev = entry
            allowed.add(name)
            if kind == "acked":
                break
            entry = prev
        if view["musician"]["name"] not in allowed:
            problems.append(f"musician {m} is {view['musician']['name']!r}, acknowledged {sorted(allowed)}")
    return problems


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--cycles", type=int, default=5)
    ap.add_argument("--bin", default=os.path.join(os.environ.get("CARGO_TARGET_DIR", "target"), "debug", "mussikon"))
    ap.add_argument("--seed", type=int, default=int(time.time()))
    ap.add_argument("--writers", type=int, default=4)
    args = ap.parse_args()
    rng = random.Random(args.seed)
    print(f"kill_loop: {args.cycles} cycles, seed {args.seed}, binary {args.bin}")
    work = tempfile.mkdtemp(prefix="mussikon-kill-")
    data = os.path.join(work, "data")
    node = Node(args.bin, data)
    gigs = [f"g-{i}" for i in range(len(DATES))]
    musicians = [f"m-{i}" for i in range(12)]
    node.start()
    for i, g in enumerate(gigs):
        status, _ = call(node.base, "PUT", f"/v1/gigs/{g}", gig(g, DATES[i]))
        assert status in (200, 201), status
    ledger = Ledger()
    for m in musicians:
        status, _ = call(node.base, "PUT", f"/v1/musicians/{m}", musician(m, "initial"))
        assert status in (200, 201), status
        ledger.upserts[m] = ("acked", "initial", None)
    failed = 0
    for cycle in range(1, args.cycles + 1):
        stop = threading.Event()
        # Each writer owns its musicians (their upserts and bookings), so the order of two
        # acknowledged writes to one record is the order one client saw; writers still race for
        # seats and dates, which the node must arbitrate.
        threads = [threading.Thread(target=writer, args=(node.base, ledger, random.Random(rng.random()),
                                                         cycle, w, stop, gigs, musicians[w::args.writers]))
                   for w in range(args.writers)]
        for t in threads:
            t.start()
        time.sleep(rng.uniform(0.2, 2.0))
        node.kill()
        stop.set()
        for t in threads:
            t.join()
        check = subprocess.run([args.bin, "check", "--data-dir", data], capture_output=True, text=True)
        problems = [] if check.returncode == 0 else [f"mussikon check: {check.stdout.strip()} {check.stderr.strip()}"]
        node.start()
        problems += verify(node.base, ledger, gigs, musicians)
        print(f"cycle {cycle}: {ledger.acked} acknowledged so far, {ledger.doubt} in doubt; "
              f"{check.stdout.strip()}; {'OK' if not problems else 'FAILED'}")
        for p in problems:
            print("  " + p)
        failed += bool(problems)
        # Writes in doubt have settled: read the truth back so the next cycle starts from it.
        for (g, m), entry in list(ledger.bookings.items()):
            if entry and entry[0] == "doubt":
                _, view = call(node.base, "GET", f"/v1/gigs/{g}")
                present = any(b["musician_id"] == m for b in view["bookings"])
                ledger.bookings[(g, m)] = ("acked", None) if present else ("cancelled", None)
        for m, entry in list(ledger.upserts.items()):
            if entry[0] == "doubt":
                _, view = call(node.base, "GET", f"/v1/musicians/{m}")
                ledger.upserts[m] = ("acked", view["musician"]["name"], None)
    node.stop()
    print(f"kill_loop: {args.cycles} cycles, {failed} failed, {ledger.acked} writes acknowledged, "
          f"{ledger.doubt} in doubt")
    if failed == 0:
        subprocess.run(["rm", "-rf", work])
    else:
        print(f"kill_loop: data and server.log kept in {work}")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
