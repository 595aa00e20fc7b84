"""Do the verdicts hold on other seeds? Certify a method twice — on model seeds {0, 1, 2} and on
{3, 4, 5} (or two disjoint key-seed sets) — and list every clause whose verdict differs.

    python tests/benchmarks/verdict_stability.py NCT --profile embedded --split model
    python tests/benchmarks/verdict_stability.py NCT --profile embedded --split key --task ResNet8

Both certificates go through nnw.checks.run.check_method (the model cache is shared with pytest
runs). Exit status 0 when every verdict agrees, 1 otherwise.

Or compare two certificates written by pytest runs (both cores; a profile file that changes only
``model_seeds`` or ``key_seeds`` is a size change, not a policy change):

    python tests/benchmarks/verdict_stability.py --compare A.json B.json
"""
from __future__ import annotations

import argparse
import json
import sys
from dataclasses import replace


def _with_seeds(profile, model_seeds, key_seeds):
    data = json.loads(json.dumps(profile.data))
    data["model_seeds"], data["key_seeds"] = list(model_seeds), list(key_seeds)
    return replace(profile, data=data, name=f"{profile.name}-seeds-{model_seeds}-{key_seeds}")


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
    args = ap.parse_args(argv)
    if args.compare:
        return compare(*[json.loads(open(p, encoding="utf-8").read()) for p in args.compare], labels=args.compare)
    if not args.method:
        ap.error("a method, or --compare A B")
    base = load_profile(args.profile)
    m, d = len(base.model_seeds), len(base.key_seeds)
    if args.split == "model":
        sets = [(list(range(m)), base.key_seeds), (list(range(m, 2 * m)), base.key_seeds)]
    else:
        sets = [(base.model_seeds, list(range(d))), (base.model_seeds, list(range(d, 2 * d)))]
    select = (lambda c: c.task in args.task) if args.task else None
    certs = [check_method(args.method, _with_seeds(base, ms, ks), cache_dir=args.cache_dir, select=select)
             for ms, ks in sets]
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
