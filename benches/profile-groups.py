#!/usr/bin/env python3
"""Groups the samples of a `perf record --call-graph dwarf` profile of MussikOn nodes.

Usage (beside a benchmark, e.g. `CLIENTS=64 WORKLOADS=put-change DURATION=25 NO_FAILOVER=1
benches/cluster.sh --no-etcd`):

    perf record -F 299 --call-graph dwarf,16384 -p PID1,PID2,PID3 -o /tmp/p.data -- sleep 6
    perf script -i /tmp/p.data > /tmp/p.txt
    python3 benches/profile-groups.py /tmp/p.txt                       # share of each group
    python3 benches/profile-groups.py /tmp/p.txt --under tantivy --depth 2   # what is under a frame

Without `--under`, each sample counts in the first group of GROUPS (in that order) one of whose
patterns matches any frame of its stack, so a sample of tantivy's merge thread is a merge even
though tokio frames are beneath it. With `--under PATTERN`, the samples with a frame matching
PATTERN are counted by that outermost matching frame and the `--depth` frames it called.
Shares are of all samples.
"""

import argparse
import collections
import re
import sys

GROUPS = [
    ("tantivy merges", r"IndexMerger|merge_segments|MergeOperation"),
    ("tantivy indexing and commits",
     r"tantivy::indexer::(segment_writer|index_writer|segment_serializer|segment_updater)"
     r"|tantivy::postings::postings_writer|tantivy_stacker|tantivy_fst::raw::build"),
    ("tantivy, other", r"tantivy"),
    ("engine indexer thread", r"mussikon_engine::index"),
    ("engine apply (sled transaction)", r"apply_batch|mussikon_engine::store"),
    ("raft log store", r"log_store"),
    ("raft state machine", r"state_machine"),
    ("peer RPC client", r"mussikon_cluster::network"),
    ("openraft", r"openraft"),
    ("cluster node, other", r"mussikon_cluster"),
    ("HTTP handler", r"mussikon_server"),
    ("hyper, reqwest", r"hyper|h1::|reqwest"),
    ("warp", r"warp"),
    ("sled I/O threads", r"sled::pagecache::iobuf|IoBufs|sled::threadpool"),
    ("sled, other", r"sled"),
    ("tracing", r"tracing"),
    ("tokio (scheduler, parking)", r"tokio"),
    ("rayon", r"rayon"),
]


def samples(lines):
    """Each sample's stack, leaf first, as frame names."""
    stack, in_sample = [], False
    for line in lines:
        if not line.strip():
            if in_sample:
                yield stack
            stack, in_sample = [], False
        elif not line.startswith((" ", "\t")):
            in_sample = True
        else:
            parts = line.strip().split(None, 1)
            if len(parts) == 2:
                stack.append(re.sub(r"\+0x[0-9a-f]+.*", "", parts[1]))
    if in_sample:
        yield stack


def groups(stacks):
    rules = [(name, re.compile(p)) for name, p in GROUPS]
    counts, total = collections.Counter(), 0
    for stack in stacks:
        total += 1
        name = next((n for n, p in rules if any(p.search(f) for f in stack)), "other")
        counts[name] += 1
    return counts, total


def under(stacks, pattern, depth):
    pat = re.compile(pattern)
    counts, total = collections.Counter(), 0
    for stack in stacks:
        total += 1
        hits = [i for i, f in enumerate(stack) if pat.search(f)]
        if hits:
            i = hits[-1]
            counts[" <- ".join(f[:90] for f in reversed(stack[max(0, i - depth):i + 1]))] += 1
    return counts, total


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("script", help="`perf script` output (- for stdin)")
    ap.add_argument("--under", help="a frame pattern (regex) to break down")
    ap.add_argument("--depth", type=int, default=3, help="frames shown below --under's frame")
    ap.add_argument("--top", type=int, default=25)
    args = ap.parse_args()
    lines = sys.stdin if args.script == "-" else open(args.script, encoding="utf-8", errors="replace")
    stacks = samples(lines)
    counts, total = under(stacks, args.under, args.depth) if args.under else groups(stacks)
    if total == 0:
        sys.exit("no samples")
    if args.under:
        print(f"{100 * sum(counts.values()) / total:5.1f}% of {total} samples have a frame matching {args.under!r}")
    for name, n in counts.most_common(args.top):
        print(f"{100 * n / total:5.1f}%  {name}")


if __name__ == "__main__":
    main()
