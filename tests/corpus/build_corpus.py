#!/usr/bin/env python3
"""Merge parts/*.jsonl into openings.jsonl and assign the held-out split.

A fifth of each (label, language, category) group, chosen by a hash of the item id, is
marked "test"; the rest "train". Rule authors tune on train only (`scamscreen eval
--split train`); the test split is evaluated once rules are settled, and reported."""
import collections
import hashlib
import json
import pathlib

here = pathlib.Path(__file__).parent
rows = []
for part in sorted((here / "parts").glob("*.jsonl")):
    rows += [json.loads(l) for l in part.open(encoding="utf-8") if l.strip()]
ids = [r["id"] for r in rows]
assert len(ids) == len(set(ids)), "duplicate ids"
groups = collections.defaultdict(list)
for r in rows:
    groups[(r["label"], r["lang"], r["category"])].append(r)
for members in groups.values():
    members.sort(key=lambda r: hashlib.sha256(r["id"].encode()).hexdigest())
    n_test = round(len(members) / 5)
    for i, r in enumerate(members):
        r["split"] = "test" if i < n_test else "train"
rows.sort(key=lambda r: r["id"])
with (here / "openings.jsonl").open("w", encoding="utf-8") as f:
    for r in rows:
        f.write(json.dumps({k: r[k] for k in ("id", "label", "category", "lang", "split", "text")}, ensure_ascii=False) + "\n")
c = collections.Counter((r["label"], r["lang"], r["split"]) for r in rows)
for k in sorted(c):
    print(*k, c[k])
