#!/usr/bin/env python3
"""kill -9 loop: nothing acknowledged is lost, nothing is doubled, replicas do not diverge.

Single node (the default): for each cycle, start `mussikon serve` on the data directory, run
writers (musician upserts, bookings, cancellations through HTTP) for a random time, SIGKILL the
node while they write, then
  1. `mussikon check` on the dead node's directory (both sides of every booking agree, the index
     holds every stored musician exactly once after replay) must exit 0;
  2. restart the node and read back: every upsert answered 2xx is present with the acknowledged
     body; every booking answered 201 and not cancelled since is present exactly once; no
     musician is booked twice on a date; no slot holds more bookings than seats.

Cluster (`--cluster 3`): three `mussikon serve --node-id N --peers …` processes on ports chosen
at run time. The writers send each request to a random node (a node that refuses the connection
is skipped: it is down). Each cycle SIGKILLs one node at a random moment (the leader, as
/v1/cluster/status names it, in about half the cycles), runs `mussikon check` on its directory
while the other two keep taking writes, restarts it on the same port and directory, lets the
writers go on, then stops them and waits until every node names the same leader and has applied
the leader's applied index. Then every node is read with ?consistency=stale and must pass the
checks of step 2, and all nodes must answer byte-identical views of every gig and musician. At
the end the nodes are stopped with SIGTERM (followers first, so no node applies an entry the
others lack), `mussikon check` must pass on each directory and their `mussikon export`s must be
byte-identical.

With `--membership` (cluster only), each cycle first replaces a voter while the writers go on,
before its kill: it starts a node under the next unused id, removes a voter (the leader in about
half the cycles) with `DELETE /v1/cluster/members/ID` and at once adds the new node as a voter
with `POST /v1/cluster/members`, both through the voters that stay, then stops the removed node
with SIGTERM. Every admin answer must be 200, or 503 (retried until the change is seen done: a
503 may say the change "may yet take effect", and a removal seen done after one answers 422 "not
a member"); anything else, a 500 above all, fails the cycle. A removed node's id is never used
again.

Writes whose answer was lost (connection cut after the request was sent, a timeout, or 503:
the cluster's "outcome unknown") are "in doubt": either outcome is allowed, also one taking
effect after a later acknowledged write of the same client (a forwarded write may still be in
flight to the leader), but the state they leave must satisfy every invariant. After each cycle
the settled state is read back so the next cycle starts from sure knowledge.

Usage: server/tests/kill_loop.py [--cycles N] [--cluster 3 [--membership]] [--bin PATH] [--seed S]
(the binary also from $MUSSIKON_BIN; default ${CARGO_TARGET_DIR:-target}/debug/mussikon)
Exit 0 when every cycle passes; prints one line per cycle and a summary. Kill moments come from
the wall clock, so a seed reproduces the choices (victims, operations), not the interleaving.
"""
import argparse
import http.client
import json
import os
import random
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
import urllib.error
import urllib.request

DATES = [f"2027-02-{d:02d}" for d in range(1, 11)]
INSTRUMENTS = ["guitar", "drums", "bass"]
SEATS = {0: 2, 1: 1}
SECRET = "kill-loop-cluster-secret-0123456789"
DEADLINE = 90  # seconds any election, catch-up or start may take
STARTED = []  # every Node this script started: the only processes it ever signals


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


def free_port():
    """A free port on 127.0.0.1 (bound, read and released)."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class Node:
    """One `mussikon serve` process started by this script (and only those are ever signalled)."""

    def __init__(self, binary, root, node_id=None, addr=None, peers=None, extra=()):
        self.binary, self.node_id, self.addr, self.peers = binary, node_id, addr, peers
        name = "server" if node_id is None else f"node{node_id}"
        self.data_dir = os.path.join(root, "data" if node_id is None else name)
        self.out_path = os.path.join(root, name + ".out")
        self.log_path = os.path.join(root, name + ".log")
        self.extra, self.proc, self.base = list(extra), None, None
        STARTED.append(self)

    def start(self):
        cmd = [self.binary, "serve", "--listen", self.addr or "127.0.0.1:0", "--data-dir", self.data_dir]
        env = dict(os.environ, MUSSIKON_LOG_FORMAT="json")
        for k in ("MUSSIKON_NODE_ID", "MUSSIKON_PEERS", "MUSSIKON_CONFIG", "MUSSIKON_BIN"):
            env.pop(k, None)
        if self.node_id is not None:
            cmd += ["--node-id", str(self.node_id), "--peers", self.peers]
            env["MUSSIKON_CLUSTER_SECRET"] = SECRET
        cmd += self.extra
        with open(self.log_path, "ab") as log, open(self.out_path, "wb") as out:
            log.write(f"---- start {time.strftime('%H:%M:%S')}\n".encode())
            log.flush()
            self.proc = subprocess.Popen(cmd, stdout=out, stderr=log, env=env)
        started = time.time()
        while True:
            with open(self.out_path) as f:
                line = f.readline()
            if line.endswith("\n"):
                break
            if self.proc.poll() is not None or time.time() - started > DEADLINE:
                raise NodeDied(f"node {self.node_id} did not start (exit {self.proc.poll()}): "
                               f"{log_tail(self)}")
            time.sleep(0.02)
        if not line.startswith("listening on "):
            raise NodeDied(f"node {self.node_id} did not start: {line!r}")
        self.base = "http://" + line.split()[-1]

    def alive(self):
        return self.proc is not None and self.proc.poll() is None

    def kill(self):
        self.proc.send_signal(signal.SIGKILL)
        self.proc.wait()

    def stop(self):
        self.proc.send_signal(signal.SIGTERM)
        self.proc.wait(timeout=60)
        return self.proc.returncode


class NodeDied(Exception):
    """A node this script did not kill exited (or one it restarted did not come back)."""


def log_tail(node, lines=2):
    """The last lines of a node's log since its last start that are not routine info."""
    with open(node.log_path, errors="replace") as f:
        text = f.read()
    out = []
    for line in text.rsplit("---- start", 1)[-1].splitlines()[1:]:
        try:
            j = json.loads(line)
        except ValueError:
            out.append(line.strip())  # not JSON: the CLI's own error line
            continue
        if j.get("level") in ("WARN", "ERROR") and "AUTHENTICATION IS OFF" not in str(j.get("fields")):
            out.append(str(j.get("fields", {}).get("message")))
    return " | ".join(out[-lines:])


class Refused(Exception):
    """The connection was refused: the request never reached a server."""


class Lost(Exception):
    """The request may have reached the server but no answer came back."""


def call(base, method, path, body=None, timeout=30):
    data = json.dumps(body).encode() if body is not None else None
    req = urllib.request.Request(base + path, data=data, method=method)
    if data is not None:
        req.add_header("Content-Type", "application/json")
    try:
        with urllib.request.urlopen(req, timeout=timeout) as r:
            return r.status, json.loads(r.read() or b"null")
    except urllib.error.HTTPError as e:
        try:
            return e.code, json.loads(e.read() or b"null")
        except ValueError:
            return e.code, None
    except urllib.error.URLError as e:
        if isinstance(e.reason, ConnectionRefusedError):
            raise Refused() from e
        raise Lost(repr(e.reason)) from e
    except (http.client.HTTPException, ConnectionError, TimeoutError, OSError) as e:
        raise Lost(repr(e)) from e


def read(base, path, consistency=None):
    if consistency:
        path += ("&" if "?" in path else "?") + "consistency=" + consistency
    return call(base, "GET", path)


class Reg:
    """What one record may hold: the value after its last acknowledged write (`sure`) or any
    value an in-doubt write since the last settlement tried to leave (`maybe`)."""

    def __init__(self, sure):
        self.sure, self.maybe = sure, set()
        self.refused = set()  # values of writes answered 503 "no leader is known" (not sent on)

    def allowed(self):
        return {self.sure} | self.maybe


class Ledger:
    """What the nodes acknowledged. Each writer owns its musicians, so the writes to one record
    come from one client, one at a time."""

    def __init__(self):
        self.lock = threading.Lock()
        self.upserts = {}        # musician id -> Reg(name)
        self.bookings = {}       # (gig, musician) -> Reg("present" | "absent")
        self.acked = self.doubt = self.refused = 0
        self.unavailable = {}    # 503 reasons (first words) -> count
        self.repairs = []        # known defects repaired on the way (--repair-known-defects)
        self.problems = []       # unexpected answers seen by writers

    def booking(self, key):
        return self.bookings.setdefault(key, Reg("absent"))


def writer(bases, single, ledger, rng, cycle, wid, stop, gigs, musicians):
    """Writes until `stop`; with `single`, also stops at the first lost connection (the node is
    gone). Each request goes to a random node of `bases` that accepts connections."""
    n = 0
    while not stop.is_set():
        n += 1
        op = rng.random()
        if op < 0.35:
            mid = rng.choice(musicians)
            name = f"c{cycle}-w{wid}-n{n}"
            method, path, body = "PUT", f"/v1/musicians/{mid}", musician(mid, name)
            reg, ok, unchanged, value = ledger.upserts[mid], (200, 201), (), name
        elif op < 0.45:
            # A rating changes only the musician's match facts, which the index keeps in its
            # facts overlay (not on disk): `mussikon check` after each kill compares them with
            # the store. The count is not in the ledger (a retry in doubt may count twice).
            mid = rng.choice(musicians)
            method, path, body = "POST", f"/v1/musicians/{mid}/ratings", {"stars": rng.randint(1, 5)}
            reg, ok, unchanged, value = None, (200,), (), None
        elif op < 0.85:
            g, m = rng.choice(gigs), rng.choice(musicians)
            method, path, body = "POST", f"/v1/gigs/{g}/bookings", {"slot": rng.choice([0, 1]), "musician_id": m}
            reg, ok, unchanged, value = ledger.booking((g, m)), (201,), (409,), "present"
        else:
            g, m = rng.choice(gigs), rng.choice(musicians)
            method, path, body = "DELETE", f"/v1/gigs/{g}/bookings/{m}", None
            reg, ok, unchanged, value = ledger.booking((g, m)), (204,), (404,), "absent"
        targets = rng.sample(bases, len(bases))
        status = answer = None
        for base in targets:
            try:
                status, answer = call(base, method, path, body)
                break
            except Refused:
                with ledger.lock:
                    ledger.refused += 1
                if single:
                    return  # the node is gone and the request never reached it
            except Lost:
                status = "lost"
                break
        if status is None:  # every node refused: all down for a moment
            time.sleep(0.05)
            continue
        with ledger.lock:
            if reg is None:
                if status in ok:
                    ledger.acked += 1
                elif status not in ("lost", 503):
                    ledger.problems.append(f"{method} {path} answered {status}")
            elif status in ok:
                reg.sure = value
                ledger.acked += 1
            elif status in unchanged:
                pass
            elif status == "lost" or (status == 503 and not single):
                reg.maybe.add(value)
                ledger.doubt += 1
                if status == 503:
                    reason = str((answer or {}).get("detail") or (answer or {}).get("reason") or answer)
                    kind = " ".join(reason.split()[:4])
                    ledger.unavailable[kind] = ledger.unavailable.get(kind, 0) + 1
                    if reason.startswith("no leader is known"):
                        reg.refused.add(value)
            else:
                ledger.problems.append(f"{method} {path} answered {status}")
                reg.maybe.add(value)
        if status == "lost" and single:
            return
        if status == 503:
            time.sleep(0.05)


def verify(base, ledger, gigs, musicians, consistency=None):
    """Every invariant, read through `base`; returns (problems, views) where views are the
    raw answers, for comparing nodes."""
    problems = []
    held = {}
    views = {}
    gig_bookings = set()
    for g in gigs:
        status, view = read(base, f"/v1/gigs/{g}", consistency)
        views[g] = view
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
            gig_bookings.add((g, b["musician_id"], b["slot"]))
            per_slot[b["slot"]] = per_slot.get(b["slot"], 0) + 1
            held.setdefault(b["musician_id"], []).append(view["gig"]["date"])
        for s, k in per_slot.items():
            if k > SEATS.get(s, 0):
                problems.append(f"{g} slot {s}: {k} bookings for {SEATS.get(s, 0)} seats")
        for m in musicians:
            allowed = ledger.booking((g, m)).allowed()
            now = "present" if (g, m) in seen else "absent"
            if now not in allowed:
                problems.append(f"booking {g}/{m} is {now}, acknowledged {sorted(allowed)}")
    for m, dates in held.items():
        if len(dates) != len(set(dates)):
            problems.append(f"musician {m} booked twice on one date: {sorted(dates)}")
    musician_bookings = set()
    for m in musicians:
        status, view = read(base, f"/v1/musicians/{m}", consistency)
        views[m] = view
        if status != 200:
            problems.append(f"musician {m} missing ({status})")
            continue
        allowed = ledger.upserts[m].allowed()
        if view["musician"]["name"] not in allowed:
            problems.append(f"musician {m} is {view['musician']['name']!r}, acknowledged {sorted(allowed)}")
        for b in view.get("booked", []):
            musician_bookings.add((b["gig_id"], m, b["slot"]))
    for b in sorted(gig_bookings ^ musician_bookings):
        side = "gig" if b in gig_bookings else "musician"
        problems.append(f"booking {b} only on the {side} side")
    return problems, views


def settle(base, ledger, gigs, musicians, consistency=None):
    """After a verified, quiet moment: what is stored becomes what is sure."""
    for g in gigs:
        _, view = read(base, f"/v1/gigs/{g}", consistency)
        present = {b["musician_id"] for b in view["bookings"]} if view else set()
        for m in musicians:
            reg = ledger.booking((g, m))
            reg.sure, reg.maybe = ("present" if m in present else "absent"), set()
    notes = []
    for m in musicians:
        _, view = read(base, f"/v1/musicians/{m}", consistency)
        reg = ledger.upserts[m]
        name = view["musician"]["name"] if view else reg.sure
        if name in reg.refused:  # names are unique per write: this one took effect
            notes.append(f"musician {m} holds {name!r}, whose PUT was answered 503 'no leader is known'")
        reg.sure, reg.maybe, reg.refused = name, set(), set()
    for reg in ledger.bookings.values():
        reg.refused = set()
    return notes


def run_check(binary, data_dir):
    check = subprocess.run([binary, "check", "--data-dir", data_dir], capture_output=True, text=True)
    out = (check.stdout.strip() + " " + check.stderr.strip()).strip()
    return check.returncode == 0, out


# Known defects (docs/reliability.md, "Kill -9 loop"): a SIGKILL can leave a directory that no
# longer opens. The loop fails on them unless --repair-known-defects is given; then it repairs
# the directory the way an operator would, prints it, and goes on (to look for other defects).
EMPTY_COMMITTED = "raft/log/committed left empty (the node cannot start)"
ORPHAN_DEL = "index: orphan .del file of an unfinished commit (FileAlreadyExists on open)"


def orphan_del(text):
    return "FileAlreadyExists" in text and ".del" in text


def repair_index(node, ledger, args, text):
    """The directory fails to open on an orphan tantivy .del file: with --repair-known-defects,
    delete the index (the store is the truth; it is rebuilt on open) and say so."""
    if not (args.repair_known_defects and orphan_del(text)):
        return False
    shutil.rmtree(os.path.join(node.data_dir, "index"))
    ledger.repairs.append(ORPHAN_DEL)
    print(f"  note: {node.data_dir}: deleted index/ ({ORPHAN_DEL}): {text[-160:]}")
    return True


def check_dir(args, node, ledger):
    """`mussikon check` on a stopped node's directory; (ok, output)."""
    ok, out = run_check(args.bin, node.data_dir)
    if not ok and repair_index(node, ledger, args, out):
        ok, out = run_check(args.bin, node.data_dir)
    return ok, out


def restart(args, node, ledger):
    """Starts a killed node again on its directory (and port)."""
    committed = os.path.join(node.data_dir, "raft", "log", "committed")
    if os.path.exists(committed) and os.path.getsize(committed) == 0:
        if args.repair_known_defects:
            os.remove(committed)
            ledger.repairs.append(EMPTY_COMMITTED)
            print(f"  note: node {node.node_id}: deleted raft/log/committed ({EMPTY_COMMITTED})")
        else:
            print(f"  node {node.node_id}: {EMPTY_COMMITTED}: known defect, docs/reliability.md")
    try:
        node.start()
    except NodeDied as e:
        if not repair_index(node, ledger, args, str(e)):
            if orphan_del(str(e)):
                print(f"  node {node.node_id}: {ORPHAN_DEL}: known defect, docs/reliability.md")
            raise
        node.start()


def seed_data(base, ledger, gigs, musicians):
    for i, g in enumerate(gigs):
        status, _ = call(base, "PUT", f"/v1/gigs/{g}", gig(g, DATES[i]))
        assert status in (200, 201), f"PUT gig {g}: {status}"
    for m in musicians:
        status, _ = call(base, "PUT", f"/v1/musicians/{m}", musician(m, "initial"))
        assert status in (200, 201), f"PUT musician {m}: {status}"
        ledger.upserts[m] = Reg("initial")


def start_writers(bases, single, ledger, rng, cycle, nwriters, gigs, musicians):
    stop = threading.Event()
    # Each writer owns its musicians (their upserts and bookings), so the order of two
    # acknowledged writes to one record is the order one client saw; writers still race for
    # seats and dates, which the node must arbitrate.
    threads = [threading.Thread(target=writer, args=(bases, single, ledger, random.Random(rng.random()),
                                                     cycle, w, stop, gigs, musicians[w::nwriters]),
                                daemon=True)
               for w in range(nwriters)]
    for t in threads:
        t.start()
    return stop, threads


def single_loop(args, rng, work, gigs, musicians):
    node = Node(args.bin, work)
    node.start()
    ledger = Ledger()
    seed_data(node.base, ledger, gigs, musicians)
    failed = 0
    for cycle in range(1, args.cycles + 1):
        t0 = time.time()
        stop, threads = start_writers([node.base], True, ledger, rng, cycle, args.writers, gigs, musicians)
        time.sleep(rng.uniform(0.2, 2.0))
        node.kill()
        stop.set()
        for t in threads:
            t.join()
        ok, out = check_dir(args, node, ledger)
        problems = [] if ok else [f"mussikon check: {out}"]
        try:
            restart(args, node, ledger)
        except NodeDied as e:
            print(f"cycle {cycle}: FAILED: {problems} {e}", flush=True)
            return failed + 1, ledger
        more, _ = verify(node.base, ledger, gigs, musicians)
        problems += ledger.problems + more
        ledger.problems = []
        print(f"cycle {cycle}: {ledger.acked} acknowledged so far, {ledger.doubt} in doubt; "
              f"{out}; {time.time() - t0:.1f}s; {'OK' if not problems else 'FAILED'}", flush=True)
        for p in problems:
            print("  " + p)
        failed += bool(problems)
        for note in settle(node.base, ledger, gigs, musicians):
            print("  note: " + note)
    node.stop()
    return failed, ledger


class Cluster:
    def __init__(self, binary, root, n, extra):
        ports = set()
        while len(ports) < n:
            ports.add(free_port())
        addrs = {i + 1: f"127.0.0.1:{p}" for i, p in enumerate(sorted(ports))}
        peers = ",".join(f"{i}={a}" for i, a in addrs.items())
        self.nodes = {i: Node(binary, root, i, a, peers, extra) for i, a in addrs.items()}
        self.binary, self.root, self.extra, self.peers = binary, root, list(extra), peers
        self.next_id = n + 1  # ids are never reused: a removed node's id stays retired

    def members(self, i):
        """Node i's view of the membership: {id: role}, or None when it does not answer."""
        s = self.status(i)
        return None if s is None else {m["id"]: m["role"] for m in s.get("members", [])}

    def bases(self):
        return [f"http://{n.addr}" for n in self.nodes.values()]

    def status(self, i):
        try:
            status, body = call(f"http://{self.nodes[i].addr}", "GET", "/v1/cluster/status", timeout=5)
        except (Refused, Lost):
            return None
        return body if status == 200 else None

    def leader(self):
        """The leader some running node names, or None."""
        for i, n in self.nodes.items():
            if n.alive():
                s = self.status(i)
                if s and s.get("leader"):
                    return s["leader"]
        return None

    def wait_converged(self):
        """Waits until every node names one leader, all have applied as much as it has and the
        leader has applied all it committed; returns (leader, applied index)."""
        started = time.time()
        last = None
        while time.time() - started < DEADLINE:
            for i, n in self.nodes.items():
                if not n.alive():
                    raise NodeDied(f"node {i} exited with {n.proc.returncode}: {log_tail(n)}")
            st = {i: self.status(i) for i in self.nodes}
            last = {i: s and (s["state"], s["leader"], s["commit_index"], s["applied_index"]) for i, s in st.items()}
            if all(st.values()):
                leaders = {s["leader"] for s in st.values()}
                if len(leaders) == 1 and None not in leaders:
                    lead = st[leaders.pop()]
                    if (lead["state"] == "leader" and lead["commit_index"] == lead["applied_index"]
                            and all(s["applied_index"] == lead["applied_index"] for s in st.values())):
                        return lead["node_id"], lead["applied_index"]
            time.sleep(0.1)
        raise SystemExit(f"the cluster did not converge in {DEADLINE}s: {last}")


def admin_change(cl, rng, vias, method, path, body, done):
    """Asks a membership change of random running nodes of `vias` until `done()` (the change is seen in
    the membership) or it is answered 200; 503 and lost answers are retried. Returns (problems,
    a summary of the answers)."""
    answers = []
    started = time.time()
    while time.time() - started < DEADLINE:
        via = rng.choice([i for i in vias if cl.nodes[i].alive()])
        try:
            status, body_ = call(cl.nodes[via].base, method, path, body, timeout=DEADLINE)
        except Refused:
            continue
        except Lost:
            answers.append("lost")
            if done():
                return [], answers
            continue
        detail = body_.get("detail") if isinstance(body_, dict) else None
        answers.append(f"{status} ({detail[:60]})" if status == 503 and detail else str(status))
        if status == 200:
            return [], answers
        if status == 503:
            if done():
                return [], answers
            time.sleep(0.2)
            continue
        if status == 422 and answers[:-1] and done():
            return [], answers  # a retried removal that had taken effect: "not a member"
        return [f"{method} {path} via node {via}: {status} {json.dumps(body_)}"], answers
    return [f"{method} {path}: not done in {DEADLINE}s ({', '.join(answers)})"], answers


def replace_voter(rng, cl):
    """Starts a node under the next unused id, removes one voter (the leader in about half the
    calls), adds the new node as a voter at once, then stops the removed one; the changes are
    asked through the voters that stay. Returns (problems, what was done)."""
    leader = cl.leader()
    if leader is not None and rng.random() < 0.5:
        victim, why = leader, "leader"
    else:
        victim, why = rng.choice(sorted(cl.nodes)), "random"
    others = list(cl.nodes)  # the voters that stay (the new node is not one yet)
    others.remove(victim)

    def gone():
        views = [cl.members(i) for i in others]
        return any(v is not None and victim not in v for v in views)

    # The replacement starts first (it waits to be contacted), so that its join follows the
    # removal at once: after a leader removed itself, the next change meets a new leader that
    # has not yet committed the membership it inherited.
    new = cl.next_id
    cl.next_id += 1
    addr = f"127.0.0.1:{free_port()}"
    cl.peers += f",{new}={addr}"
    node = Node(cl.binary, cl.root, new, addr, cl.peers, cl.extra)
    node.start()
    cl.nodes[new] = node
    problems, removed = admin_change(cl, rng, others, "DELETE", f"/v1/cluster/members/{victim}",
                                     None, gone)
    if problems:
        # The replacement never joined: stop it, so that the cycle's convergence checks only the
        # members.
        node.stop()
        del cl.nodes[new]
        return problems, f"remove {victim}: {'/'.join(removed)}"

    def joined():
        views = [cl.members(i) for i in others]
        return any(v is not None and v.get(new) == "voter" for v in views)

    more, added = admin_change(cl, rng, others, "POST", "/v1/cluster/members",
                               {"node_id": new, "addr": addr, "voter": True}, joined)
    code = cl.nodes[victim].stop()
    if code != 0:
        more.append(f"removed node {victim} exited {code} on SIGTERM")
    del cl.nodes[victim]
    return problems + more, (f"replaced voter {victim} ({why}) by {new}: remove "
                             f"{'/'.join(removed)}, join {'/'.join(added)}")


def cluster_cycle(args, rng, cl, ledger, cycle, gigs, musicians):
    """One cycle; returns its problems."""
    t0 = time.time()
    stop, threads = start_writers(cl.bases(), False, ledger, rng, cycle, args.writers, gigs, musicians)
    problems, replaced = [], ""
    try:
        time.sleep(rng.uniform(0.2, 2.0))
        if args.membership:
            problems, replaced = replace_voter(rng, cl)
            replaced += "; "
            if problems:
                print(f"  cycle {cycle}: {problems[0]}", flush=True)
        if rng.random() < 0.5:
            victim, why = cl.leader(), "leader"
            if victim is None:
                victim, why = rng.choice(sorted(cl.nodes)), "random (no leader known)"
        else:
            victim, why = rng.choice(sorted(cl.nodes)), "random"
        node = cl.nodes[victim]
        node.kill()
        # The others go on taking writes; long enough in most cycles for them to elect a new
        # leader when the leader was killed (elections time out after 0.25-0.4 s, leases last 0.4 s).
        time.sleep(rng.uniform(0.3, 4.0))
        ok, out = check_dir(args, node, ledger)
        if not ok:
            problems.append(f"mussikon check on node {victim}'s directory after the kill: {out}")
            print(f"  cycle {cycle}: {problems[-1]}", flush=True)
        interim = cl.leader()
        restart(args, node, ledger)
        time.sleep(rng.uniform(0.2, 1.5))
    finally:
        stop.set()
        for t in threads:
            t.join()
    leader, applied = cl.wait_converged()
    problems += ledger.problems
    ledger.problems = []
    first = None
    for i, n in cl.nodes.items():
        more, views = verify(n.base, ledger, gigs, musicians, "stale")
        problems += [f"node {i}: {p}" for p in more]
        if first is None:
            first = (i, views)
        else:
            for k in views:
                if views[k] != first[1][k]:
                    problems.append(f"node {i} and node {first[0]} differ on {k}: "
                                    f"{json.dumps(views[k])} vs {json.dumps(first[1][k])}")
    print(f"cycle {cycle}: {replaced}killed node {victim} ({why}); leader while it was down {interim}, "
          f"now {leader}, applied {applied}; "
          f"{ledger.acked} acknowledged so far, {ledger.doubt} in doubt, {ledger.refused} refused; "
          f"{out}; {time.time() - t0:.1f}s; {'OK' if not problems else 'FAILED'}", flush=True)
    for p in problems:
        print("  " + p)
    for note in settle(cl.nodes[leader].base, ledger, gigs, musicians, "stale"):
        print("  note: " + note)
    return problems


def cluster_final(args, cl, work):
    """Stops every node (followers first, then the leader: nothing gets applied on one node
    only), then `mussikon check` on each directory and their exports compared byte for byte."""
    leader, applied = cl.wait_converged()
    problems = []
    for i in [i for i in cl.nodes if i != leader] + [leader]:
        code = cl.nodes[i].stop()
        if code != 0:
            problems.append(f"node {i} exited {code} on SIGTERM")
    exports = {}
    for i, n in cl.nodes.items():
        ok, out = run_check(args.bin, n.data_dir)
        if not ok:
            problems.append(f"mussikon check on node {i}: {out}")
        snap = os.path.join(work, f"node{i}.snap")
        ex = subprocess.run([args.bin, "export", "--data-dir", n.data_dir, "--out", snap],
                            capture_output=True, text=True)
        if ex.returncode != 0:
            problems.append(f"mussikon export on node {i}: {ex.stdout.strip()} {ex.stderr.strip()}")
            continue
        with open(snap, "rb") as f:
            exports[i] = f.read()
        print(f"node {i}: {out}; {ex.stdout.strip()}")
    same = len(exports) == len(cl.nodes) and len(set(exports.values())) == 1
    if not same:
        problems.append("exports differ: " + ", ".join(f"node {i}: {len(b)} bytes" for i, b in exports.items()))
    print(f"final: applied {applied} on every node; exports {'identical' if same else 'DIFFER'}; "
          f"{'OK' if not problems else 'FAILED'}")
    for p in problems:
        print("  " + p)
    return problems


def cluster_loop(args, rng, work, gigs, musicians):
    extra = ["--set", f"cluster.snapshot_logs={args.snapshot_logs}",
             "--set", f"cluster.keep_logs={max(1, args.snapshot_logs // 4)}"]
    cl = Cluster(args.bin, work, args.cluster, extra)
    for n in cl.nodes.values():
        n.start()
    leader, _ = cl.wait_converged()
    ledger = Ledger()
    seed_data(cl.nodes[leader].base, ledger, gigs, musicians)
    failed = 0
    for cycle in range(1, args.cycles + 1):
        try:
            failed += bool(cluster_cycle(args, rng, cl, ledger, cycle, gigs, musicians))
        except NodeDied as e:
            print(f"cycle {cycle}: FAILED: {e}", flush=True)
            return failed + 1, ledger
    try:
        failed += bool(cluster_final(args, cl, work))
    except NodeDied as e:
        print(f"final: FAILED: {e}", flush=True)
        failed += 1
    return failed, ledger


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--cycles", type=int, default=5)
    ap.add_argument("--cluster", type=int, default=0, metavar="N",
                    help="run N nodes as a cluster (3); 0: one single-node server (default)")
    ap.add_argument("--bin", default=os.environ.get("MUSSIKON_BIN") or os.path.join(
        os.environ.get("CARGO_TARGET_DIR", "target"), "debug", "mussikon"))
    ap.add_argument("--seed", type=int, default=int(time.time()))
    ap.add_argument("--writers", type=int, default=4)
    ap.add_argument("--membership", action="store_true",
                    help="with --cluster: replace a voter (remove it, add a node under a new id) "
                         "in every cycle, under the writers' load")
    ap.add_argument("--snapshot-logs", type=int, default=300,
                    help="cluster.snapshot_logs for the cluster (small, so snapshots and log purges happen)")
    ap.add_argument("--keep", action="store_true", help="keep the data directories and logs")
    ap.add_argument("--repair-known-defects", action="store_true",
                    help="when a killed node's directory no longer opens because of a known defect "
                         "(docs/reliability.md), repair it as an operator would, print it and go on; "
                         "off by default and in CI, where those defects fail the run")
    args = ap.parse_args()
    if args.cluster not in (0, 1) and args.cluster < 3:
        ap.error("--cluster takes 3 or more nodes (a kill must leave a majority)")
    if args.membership and args.cluster < 3:
        ap.error("--membership needs --cluster 3 or more")
    rng = random.Random(args.seed)
    mode = f"{args.cluster}-node cluster" if args.cluster > 1 else "single node"
    if args.membership:
        mode += " with a voter replaced every cycle"
    print(f"kill_loop: {mode}, {args.cycles} cycles, seed {args.seed}, binary {args.bin}", flush=True)
    work = tempfile.mkdtemp(prefix="mussikon-kill-")
    gigs = [f"g-{i}" for i in range(len(DATES))]
    musicians = [f"m-{i}" for i in range(12)]
    started = time.time()
    try:
        if args.cluster > 1:
            failed, ledger = cluster_loop(args, rng, work, gigs, musicians)
        else:
            failed, ledger = single_loop(args, rng, work, gigs, musicians)
    except BaseException:
        print(f"kill_loop: aborted; data and logs kept in {work}", flush=True)
        raise
    finally:
        for n in STARTED:  # left running only when the run was aborted
            if n.alive():
                n.kill()
    print(f"kill_loop: {mode}, {args.cycles} cycles, {failed} failed, {ledger.acked} writes acknowledged, "
          f"{ledger.doubt} in doubt, {time.time() - started:.0f}s")
    for what in sorted(set(ledger.repairs)):
        print(f"kill_loop: repaired {ledger.repairs.count(what)}x: {what} (--repair-known-defects)")
    if ledger.unavailable:
        print("kill_loop: 503 answers by reason: " + "; ".join(f"{n}x {k}…" for k, n in sorted(ledger.unavailable.items())))
    if failed == 0 and not args.keep:
        shutil.rmtree(work, ignore_errors=True)
    else:
        print(f"kill_loop: data, logs and exports kept in {work}")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
