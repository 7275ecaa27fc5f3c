#!/usr/bin/env python3
"""Merge parts/<author>.jsonl into openings.jsonl; the split is by author (split.toml).

Every item of a held-out author is "test", every other item "train". Whole authors are held
out, so the rules and the model never see the wording, style or habits of a held-out author.
Rule authors tune on train only (`scamscreen eval --split train`); `make train` trains the
learned model on train only. Checks what the issue asks of the corpus and fails loudly."""
import collections
import json
import pathlib
import sys
import tomllib

here = pathlib.Path(__file__).parent
split = tomllib.loads((here / "split.toml").read_text(encoding="utf-8"))
held_out = set(split["held_out"])
FIELDS = ("id", "author", "label", "type", "lang", "variety", "style", "hard", "garbled",
          "split", "source", "text")
SCAM_TYPES = {"tech_support", "refund", "government", "police_legal", "bank_fraud",
              "one_time_code", "retail_order", "utility_telecom", "delivery", "debt_relief",
              "card_interest", "warranty_insurance", "prize_travel", "investment_crypto",
              "family_emergency", "charity", "energy_rebate", "other"}
LEGIT_TYPES = {"bank_legit", "pharmacy_ivr", "school_ivr", "doctor", "isp_technician",
               "vendor_callback", "police_real", "courier", "debt_collector",
               "family_work_line", "utility_legit", "government_legit", "insurance_legit",
               "sales_legit", "appointment", "work", "personal", "survey", "other_legit"}

rows, problems = [], []
for part in sorted((here / "parts").glob("*.jsonl")):
    for n, line in enumerate(part.open(encoding="utf-8"), 1):
        if not line.strip():
            continue
        try:
            r = json.loads(line)
        except json.JSONDecodeError as e:
            problems.append(f"{part.name}:{n}: {e}")
            continue
        where = f"{part.name}:{n}"
        if r.get("author") != part.stem:
            problems.append(f"{where}: author {r.get('author')!r} in {part.name}")
        types = SCAM_TYPES if r.get("label") == "scam" else LEGIT_TYPES
        if r.get("label") not in ("scam", "legit") or r.get("type") not in types:
            problems.append(f"{where}: label/type {r.get('label')!r}/{r.get('type')!r}")
        if r.get("lang") not in ("en", "de") or not str(r.get("text", "")).strip():
            problems.append(f"{where}: lang or text")
        r["split"] = "test" if r.get("author") in held_out else "train"
        r.setdefault("source", "")
        rows.append({k: r.get(k) for k in FIELDS})
ids = collections.Counter(r["id"] for r in rows)
problems += [f"duplicate id {i}" for i, c in ids.items() if c > 1]
texts = collections.Counter(r["text"].strip().lower() for r in rows)
problems += [f"duplicate text: {t[:60]}" for t, c in texts.items() if c > 1]
if problems:
    print("\n".join(problems), file=sys.stderr)
    sys.exit(1)
rows.sort(key=lambda r: r["id"])
with (here / "openings.jsonl").open("w", encoding="utf-8") as f:
    for r in rows:
        f.write(json.dumps(r, ensure_ascii=False) + "\n")
c = collections.Counter((r["split"], r["label"], r["lang"]) for r in rows)
for k in sorted(c):
    print(*k, c[k])
print("items", len(rows))
