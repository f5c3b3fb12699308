"""Helpers of benches/http.sh's open-loop phase (oha at a fixed rate).

    http_open_loop.py store-gigs GIGS_JSON URL    # PUT the single-slot gigs b1-000..; prints how many
    http_open_loop.py id-regex N                  # a regex that draws 000 .. N-1 (three digits)
    http_open_loop.py report OHA_JSON NAME RATE CPU_TICKS_BEFORE CPU_TICKS_AFTER TICKS_PER_S
"""

import json
import sys
import urllib.request


def store_gigs(gigs_json: str, url: str) -> None:
    """The first 200 stored gigs cut to their first slot with one seat, as gigs b1-NNN."""
    gigs = [v["gig"] for v in json.load(open(gigs_json))["items"]][:200]
    for i, g in enumerate(gigs):
        g = {k: v for k, v in g.items() if k != "owner"}
        g = dict(g, id=f"b1-{i:03d}", slots=[dict(g["slots"][0], count=1)])
        req = urllib.request.Request(
            f"{url}/v1/gigs/{g['id']}",
            data=json.dumps(g).encode(),
            method="PUT",
            headers={"content-type": "application/json"},
        )
        urllib.request.urlopen(req).read()
    print(len(gigs))


def id_regex(n: int) -> str:
    """A regex whose matches are exactly the three-digit numbers 000 .. n-1 (1 <= n <= 1000)."""
    alts = []
    last = n - 1
    h, t, u = last // 100, (last // 10) % 10, last % 10
    if h > 0:
        alts.append(f"[0-{h - 1}][0-9]{{2}}")
    if t > 0:
        alts.append(f"{h}[0-{t - 1}][0-9]")
    alts.append(f"{h}{t}[0-{u}]")
    return "(" + "|".join(alts) + ")"


def report(path: str, name: str, rate: str, before: str, after: str, ticks: str) -> None:
    r = json.load(open(path))
    s, p = r["summary"], r["latencyPercentiles"]
    codes = r.get("statusCodeDistribution", {})
    n = sum(codes.values())
    bad = sum(v for k, v in codes.items() if not k.startswith("2"))
    bad += sum(r.get("errorDistribution", {}).values())
    cpu_s = (float(after) - float(before)) / float(ticks)
    cpu = f"{cpu_s * 1000 / n:.3f}" if n and cpu_s > 0 else "-"

    def ms(v):
        return "-" if v is None else f"{v * 1000:.2f}"

    print(
        f"{name:<10} {rate:>8} {s['requestsPerSec']:>9.0f} {ms(p.get('p50')):>9} "
        f"{ms(p.get('p95')):>9} {ms(p.get('p99')):>9} {ms(s.get('slowest')):>9} {bad:>8} {cpu:>10}"
    )


if __name__ == "__main__":
    cmd, args = sys.argv[1], sys.argv[2:]
    if cmd == "store-gigs":
        store_gigs(*args)
    elif cmd == "id-regex":
        print(id_regex(int(args[0])))
    elif cmd == "report":
        report(*args)
    else:
        sys.exit(f"unknown command {cmd!r}")
