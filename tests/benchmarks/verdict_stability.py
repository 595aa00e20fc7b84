"""Do the verdicts hold on other seeds? Certify a method twice — on model seeds {0, 1, 2} and on
{3, 4, 5} (or two disjoint key-seed sets) — and list every clause whose verdict differs.

    python tests/benchmarks/verdict_stability.py NCT --profile embedded --split model
    python tests/benchmarks/verdict_stability.py NCT --profile embedded --split key --task ResNet8

Both certificates go through nnw.checks.run.check_method (the model cache is shared with pytest
runs). Exit status 0 when every verdict agrees, 1 otherwise.

Or compare two certificates written by pytest runs (both cores; a profile file that changes only
``model_seeds`` or ``key_seeds`` is a size change, not a policy change):

    python tests/benchmarks/verdict_stability.py --compare A.json B.json
    python tests/benchmarks/verdict_stability.py --write-profile model other.json   # for pytest --nnw-profile
"""
from __future__ import annotations

import argparse
import json
import sys
from dataclasses import replace


def _shifted(seeds: list[int]) -> list[int]:
    """As many seeds again, after the largest: a disjoint set."""
    return list(range(max(seeds) + 1, max(seeds) + 1 + len(seeds)))


def _other_seeds(profile, split: str):
    """``profile`` on a disjoint set of model seeds (``split="model"``) or of Key seeds and null Keys
    (``"key"``), every task's own ``population`` shifted the same way."""
    data = json.loads(json.dumps(profile.data))
    field = "model_seeds" if split == "model" else "key_seeds"
    data[field] = _shifted(data[field])
    for task in data["tasks"].values():
        if field in task.get("population", {}):
            task["population"][field] = _shifted(task["population"][field])
    if split == "key":  # another set of null Keys too
        data["null_key_start"] = int(data.get("null_key_start", 0)) + int(data["decisions"]["null_keys"])
    return replace(profile, data=data, name=f"{profile.name}-other-{split}-seeds")


def main(argv=None) -> int:
    from nnw.checks.run import check_method
    from nnw.profile import load_profile

    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("method", nargs="?")
    ap.add_argument("--compare", nargs=2, metavar=("A", "B"), help="compare two certificates instead")
    ap.add_argument("--profile", default="embedded")
    ap.add_argument("--split", choices=("model", "key"), default="model")
    ap.add_argument("--task", action="append", help="restrict to these tasks (repeatable)")
    ap.add_argument("--cache-dir", default=None)
    ap.add_argument("--write-profile", nargs=2, metavar=("SPLIT", "PATH"),
                    help="write the profile on the other seed set (model or key) for a pytest run, and stop")
    args = ap.parse_args(argv)
    if args.write_profile:
        split, path = args.write_profile
        if split not in ("model", "key"):
            ap.error("--write-profile takes model or key")
        other = _other_seeds(load_profile(args.profile), split)
        with open(path, "w", encoding="utf-8") as fh:
            json.dump({**other.data, "name": other.name}, fh, indent=1)
        return 0
    if args.compare:
        return compare(*[json.loads(open(p, encoding="utf-8").read()) for p in args.compare], labels=args.compare)
    if not args.method:
        ap.error("a method, or --compare A B")
    base = load_profile(args.profile)
    profiles = [base, _other_seeds(base, args.split)]
    sets = [(p.model_seeds, p.key_seeds) for p in profiles]
    select = (lambda c: c.task in args.task) if args.task else None
    certs = [check_method(args.method, p, cache_dir=args.cache_dir, select=select) for p in profiles]
    verdicts = [{c["nodeid"]: c["verdict"] for c in cert["clauses"]} for cert in certs]
    flips = sorted(n for n in verdicts[0] if verdicts[0][n] != verdicts[1].get(n))
    print(f"{args.method} on {args.profile}: {len(verdicts[0])} clauses; seeds {sets[0]} vs {sets[1]}")
    for n in flips:
        print(f"  {verdicts[0][n]:>14} | {verdicts[1].get(n, '-'):<14} {n}")
    print(f"{len(flips)} verdict(s) differ; grades: {certs[0]['summary']['grade']} / {certs[1]['summary']['grade']}")
    return 0 if not flips else 1


def compare(a: dict, b: dict, labels=("A", "B")) -> int:
    """Print every clause whose verdict differs between certificates ``a`` and ``b``."""
    va = {c["nodeid"]: c["verdict"] for c in a["clauses"]}
    vb = {c["nodeid"]: c["verdict"] for c in b["clauses"]}
    common = sorted(set(va) & set(vb))
    flips = [n for n in common if va[n] != vb[n]]
    print(f"{len(common)} common clauses ({labels[0]}: seeds {a['seeds']}; {labels[1]}: seeds {b['seeds']})")
    for n in flips:
        print(f"  {va[n]:>14} | {vb[n]:<14} {n}")
    pf = sum({va[n], vb[n]} == {"pass", "fail"} for n in flips)
    print(f"{len(flips)} verdict(s) differ ({pf} pass <-> fail); grades: {a['summary']['grade']} / {b['summary']['grade']}")
    return 0 if not flips else 1


if __name__ == "__main__":
    sys.exit(main())
