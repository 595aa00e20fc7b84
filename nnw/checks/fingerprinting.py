"""Fingerprinting (NNW-TEC §5.3: Unicity, Robustness, matching against a database; NCT passive mode).

The fingerprint of each of the M independently trained models is extracted with one key (same
positions for every model of the architecture) and stored in a database, one database per key.
Every extraction and every matching goes through the blind runner (:func:`nnw.checks.campaign.run_blind`):
the method gets copies, in a shuffled order, from one call site in a thread of its own, and sees the
database under opaque names; both clauses ask the same two kinds of match (a query against the whole
database, a query against one entry), so the shape of a call does not tell them apart.

**Unicity** (two parts, both must pass):

- *identification*: with each of the profile's D keys, each model's fingerprint matched against the
  whole database is identified as its own entry; a wrong identification is a miss, decided like a
  missed detection (:func:`nnw.checks.decision.excess_rate` against ``max_miss_rate``, power against
  ``miss_rate_power_at``);
- *cross-model matches*: fingerprints of *different* models matched one against the other (one
  direction per pair of models, drawn with a seed) with ``null_keys`` keys (at least the D ones):
  K × M(M − 1)/2 comparisons, decided like false alarms (``nominal_false_alarm_rate``, level
  ``family_alpha`` / the number of unicity clauses, power against ``false_alarm_power_at``), so a
  small sample is *inconclusive*, never a pass.

**Robustness**: after a Modification, each still-useful model (eq. 2, :func:`nnw.checks.robustness.degradation`)
is matched, with each of the D keys, against the database of the unmodified models and must be
identified as its own entry; the missed-identification rate is decided like robustness's missed
detections (:func:`nnw.checks.decision.missed_detections`: *not assessed* when no Modified model is
useful, or fewer than half and they cannot decide). A random weight Modification is drawn anew for
each of the D keys (D Modified versions per model, as in the marked population).
"""
from __future__ import annotations

import hashlib
import json
import random
from typing import Any, Mapping, Sequence

from nnw.checks.campaign import Read, fail_on_misbehaviour, model_digest, run_blind
from nnw.checks.common import fmt, reads_spec, unmarked_identity
from nnw.checks.decision import FAIL, INCONCLUSIVE, NOT_ASSESSED, PASS, Decision, excess_rate, missed_detections
from nnw.checks.result import ClauseResult
from nnw.checks.robustness import degradation, tolerance_record

#: Seeds of the keys drawn beyond the profile's D for the cross-model match rate.
EXTRA_KEY_SEED = 20_000_000


def _seed(*parts) -> int:
    return int(hashlib.sha256(json.dumps(parts, default=str).encode()).hexdigest()[:8], 16)


def _name(s: int) -> str:
    return f"seed {s}"


def _keys(method, model, config, key_seeds: Sequence[int]) -> dict[int, Any]:
    return {k: method.keygen(model, seed=k, config={**config, "mode": "fingerprint"}) for k in key_seeds}


def _extract(method, reads: list[Read], seed) -> dict[tuple, Any]:
    """Blind extraction: ``{info["at"]: fingerprint}``."""
    rows = run_blind(method, reads, seed=_seed("extract", seed), operation="extract")
    return {r["at"]: r["fingerprint"] for r in rows}


def _cached_reads(zoo, method, task_name: str, what: Mapping[str, Any], run) -> list[dict[str, Any]]:
    """``run()``'s rows (the blind matches of one clause), kept in the model cache like a campaign's:
    deterministic given the method's code, the models, the Keys and the Modification's seeds, so a
    warm run neither extracts nor matches again."""
    if getattr(zoo, "cache", None) is None:  # a zoo without a model cache (the suite's own tests)
        return run()
    spec = reads_spec(zoo, method, task_name, "fingerprint-reads", f"fingerprint {what['clause']} {task_name} {method.name}",
                      **what)
    _, record = zoo.cache.get_or_build(spec, lambda: ({}, {"rows": run()}))
    return [dict(r) for r in record["rows"]]


def _miss_decision(pol, misses: int, n: int, clauses_in_family: int, what: str, population: int | None = None) -> Decision:
    """The missed-detection rule; with ``population`` (robustness: a Modified population, part of
    which may lie beyond the useful range) :func:`missed_detections`, else :func:`excess_rate`."""
    kw = dict(nominal=float(pol["max_miss_rate"]), alpha=float(pol["family_alpha"]) / max(1, clauses_in_family),
              power_at=float(pol["miss_rate_power_at"]), target_power=float(pol["power_target"]),
              what=what, confidence=float(pol["confidence"]))
    return excess_rate(misses, n, **kw) if population is None else missed_detections(misses, n, population, **kw)


def combine(parts: Mapping[str, Decision]) -> dict[str, Any]:
    """One verdict from the parts of a clause: fail if any part fails; else not assessed if any
    part is; else inconclusive if any part is; else pass. The decision record keeps every part."""
    verdicts = [d.verdict for d in parts.values()]
    verdict = next(v for v in (FAIL, NOT_ASSESSED, INCONCLUSIVE, PASS) if v in verdicts or v == PASS)
    out = {"verdict": verdict, "rule": "; ".join(f"{name}: {d.rule}" for name, d in parts.items()),
           "message": "; ".join(f"{name}: {d.message}" for name, d in parts.items()),
           "statistic": {name: d.statistic for name, d in parts.items()},
           "power": {name: d.power for name, d in parts.items()}}
    out["policy"] = next(iter(parts.values())).as_dict()["policy"]
    return out


@fail_on_misbehaviour
def check_fingerprint_unicity(zoo, method, task_name: str, config: Mapping[str, Any], *,
                              model_seeds: Sequence[int], key_seeds: Sequence[int] = (0,),
                              nominal: float | None = None, clauses_in_family: int = 1) -> ClauseResult:
    """Each model is identified as itself with each of the D keys, and fingerprints of *other*
    models match at a rate not significantly above the nominal one, with stated power."""
    pol = zoo.profile.decisions
    nominal = float(pol["nominal_false_alarm_rate"] if nominal is None else nominal)
    models = {s: zoo.unmarked(task_name, s)[0] for s in model_seeds}
    first = models[model_seeds[0]]
    extra = max(0, int(pol["null_keys"]) - len(key_seeds))
    all_seeds = list(key_seeds) + [EXTRA_KEY_SEED + j for j in range(extra)]
    tag = ("unicity", task_name, method.name, json.dumps(dict(config), sort_keys=True, default=str))

    def reads_of_the_clause() -> list[dict[str, Any]]:
        zoo.progress(f"fingerprinting {len(models)} {task_name} models with {len(all_seeds)} {method.name} keys")
        keys = _keys(method, first, config, all_seeds)
        fps = _extract(method, [Read(models[s], keys[k], {"at": (k, s)}) for k in all_seeds for s in model_seeds], tag)
        dbs = {k: {_name(s): fps[(k, s)] for s in model_seeds} for k in all_seeds}
        rng = random.Random(_seed("pairs", *tag))
        reads = [Read(fps[(k, s)], dbs[k], {"kind": "identify", "key_seed": k, "model": _name(s)}, keys[k])
                 for k in key_seeds for s in model_seeds]
        for k in all_seeds:
            for i, a in enumerate(model_seeds):
                for b in model_seeds[i + 1:]:
                    q, r = (a, b) if rng.random() < 0.5 else (b, a)  # one direction per pair: independent comparisons
                    reads.append(Read(fps[(k, q)], {_name(r): dbs[k][_name(r)]},
                                      {"kind": "cross", "key_seed": k, "model": _name(q), "reference": _name(r)}, keys[k]))
        return run_blind(method, reads, seed=_seed("match", *tag), operation="match")

    rows = _cached_reads(zoo, method, task_name, {"clause": "unicity", "config": tag[3], "model_seeds": list(model_seeds),
                                                  "key_seeds": list(key_seeds), "all_key_seeds": all_seeds},
                         reads_of_the_clause)
    ident = [r for r in rows if r["kind"] == "identify"]
    cross = [r for r in rows if r["kind"] == "cross"]
    wrong = [r for r in ident if r["matched"] != r["model"]]
    cross_matches = sum(r["matched"] is not None for r in cross)
    d_ident = _miss_decision(pol, len(wrong), len(ident), clauses_in_family, "missed self-identification")
    d_cross = excess_rate(cross_matches, len(cross), nominal=nominal,
                          alpha=float(pol["family_alpha"]) / max(1, clauses_in_family),
                          power_at=float(pol["false_alarm_power_at"]), target_power=float(pol["power_target"]),
                          what="cross-model identification", confidence=float(pol["confidence"]))
    decision = combine({"identification": d_ident, "cross-model matches": d_cross})
    title = f"Unicity of the {method.name} fingerprint over {len(model_seeds)} independently trained {task_name} models"
    st = d_cross.statistic
    measured = {"identified": len(ident) - len(wrong), "identifications": len(ident),
                "cross_matches": cross_matches, "cross_comparisons": len(cross), "cross_match_rate": st.get("rate"),
                "cross_match_ci": st.get("ci", [0.0, 1.0]), "p_value": st.get("p_value"),
                "power": d_cross.power.get("power"), "keys": len(all_seeds), "M": len(model_seeds),
                "max_cross_score": max((r["score"] for r in cross), default=None)}
    detail = "; ".join(f"key {r['key_seed']}: {r['model']} identified as {r['matched']!r} (score {fmt(r['score'])})"
                       for r in wrong[:5])
    message = decision["message"] + (f" — {detail}" if detail else "")
    threshold = {"match": "the method's own matching rule", "nominal_cross_match_rate": nominal,
                 "level": st.get("alpha"), "max_miss_rate": pol["max_miss_rate"],
                 "clauses_in_family": clauses_in_family}
    return ClauseResult("NNW-TEC §5.3.1 Unicity", title, decision["verdict"], message, measured, threshold,
                        ident + cross, decision=decision)


def _modification_seeds(zoo, task_name: str, model, modification, s: int, key_seeds,
                        identity) -> tuple[dict[int, int], dict[int, Any]]:
    """The seed of the Modified version of unmarked model ``s`` read with each of the D keys: a
    random weight Modification (noise, random pruning) and one that trains a fresh model
    (distillation) are drawn anew for each key, so the D reads see D Modified versions, as the D
    marked versions of the robustness population do (a distilled VGG16 student is useful about
    4 times in 10: with one per model, often none was, and the clause could not be assessed); a
    deterministic one (the same model whatever the seed) and one that continues the model's
    training (fine-tuning: its versions stay close to the model) give one Modified model per model
    seed. The first key's version is the never-marked model of the false-alarm campaign
    (seed 1000 + s). Also returns the Modified models the probe built, by seed."""
    seeds = {k: 1000 + s for k in key_seeds}
    per_key = {k: 1000 + s + 100_000 * i for i, k in enumerate(key_seeds)}
    if len(key_seeds) < 2:
        return seeds, {}
    if getattr(modification, "needs_training", False):
        return (per_key if getattr(modification, "fresh_model", False) else seeds), {}
    probe = {x: zoo.modified(task_name, model, modification, seed=x, identity=identity, method=None, key=None)
             for x in (1000 + s, 1000 + s + 100_000)}
    if len({model_digest(m) for m in probe.values()}) == 1:
        return seeds, {1000 + s: probe[1000 + s]}
    return per_key, probe


@fail_on_misbehaviour
def check_fingerprint_robustness(zoo, method, task_name: str, config: Mapping[str, Any], modification, *,
                                 model_seeds: Sequence[int], tolerance, key_seeds: Sequence[int] | None = None,
                                 key_seed: int | None = None, clauses_in_family: int = 1) -> ClauseResult:
    """Each still-useful Modified model is identified as its own entry of the database of the
    unmodified models, with each of the D keys (``key_seeds``; default the profile's)."""
    task = zoo.task(task_name)
    pol = zoo.profile.decisions
    if key_seeds is None:
        key_seeds = [key_seed] if key_seed is not None else list(zoo.profile.key_seeds)
    models = {s: zoo.unmarked(task_name, s) for s in model_seeds}
    keys = _keys(method, models[model_seeds[0]][0], config, key_seeds)
    modified, useful, err = {}, {}, {}  # per (model seed, key): (Modified model, its seed), drop, usefulness
    for s, (model, record) in models.items():
        identity = unmarked_identity(task_name, s)
        built = {}
        seeds, probed = _modification_seeds(zoo, task_name, model, modification, s, key_seeds, identity)
        for k, seed in seeds.items():
            if seed not in built:
                m = probed.get(seed)
                if m is None:
                    m = zoo.modified(task_name, model, modification, seed=seed, identity=identity, method=method,
                                     key=keys[key_seeds[0]])
                perf = zoo.evaluate(task_name, m, {**identity, "modification": modification.cache_id, "seed": seed})
                built[seed] = (m, *degradation(perf, record["performance"], task.performance_keys, tolerance))
            m, err[(s, k)], useful[(s, k)] = built[seed]
            modified[(s, k)] = (m, seed)
    tag = ("robustness", task_name, method.name, json.dumps(dict(config), sort_keys=True, default=str),
           modification.cache_id)

    def reads_of_the_clause() -> list[dict[str, Any]]:
        # the database and the queries are extracted in one blind campaign: a method cannot tell them apart
        fps = _extract(method, [Read(models[s][0], keys[k], {"at": ("db", k, s)}) for k in key_seeds for s in model_seeds]
                       + [Read(modified[(s, k)][0], keys[k], {"at": ("query", k, s)})
                          for k in key_seeds for s in model_seeds], tag)
        dbs = {k: {_name(s): fps[("db", k, s)] for s in model_seeds} for k in key_seeds}
        reads = []
        for k in key_seeds:
            for s in model_seeds:
                q = fps[("query", k, s)]
                reads.append(Read(q, dbs[k], {"kind": "identify", "key_seed": k, "model": _name(s)}, keys[k]))
                for r in model_seeds:  # one entry at a time, as unicity asks too (the Modified model's matches)
                    reads.append(Read(q, {_name(r): dbs[k][_name(r)]},
                                      {"kind": "pair", "key_seed": k, "model": _name(s), "reference": _name(r)}, keys[k]))
        return run_blind(method, reads, seed=_seed("match", *tag), operation="match")

    out = _cached_reads(zoo, method, task_name, {"clause": "robustness", "config": tag[3], "modification": tag[4],
                                                 "model_seeds": list(model_seeds), "key_seeds": list(key_seeds),
                                                 "modification_seeds": [[s, k, modified[(s, k)][1]] for s in model_seeds
                                                                        for k in key_seeds]},
                        reads_of_the_clause)
    pairs = [r for r in out if r["kind"] == "pair"]
    rows = []
    for r in (r for r in out if r["kind"] == "identify"):
        s = model_seeds[[_name(x) for x in model_seeds].index(r["model"])]
        sk = (s, r["key_seed"])
        row = {"model": r["model"], "key_seed": r["key_seed"], "matched": r["matched"], "score": r["score"],
               "modification_seed": modified[sk][1], "error_percent": 100 * err[sk], "useful": useful[sk]}
        row["outcome"] = ("not assessable" if not row["useful"] else
                          "identified" if row["matched"] == row["model"] else "missed")
        rows.append(row)
    assessable = [r for r in rows if r["useful"]]
    misses = [r for r in assessable if r["outcome"] == "missed"]
    decision = _miss_decision(pol, len(misses), len(assessable), clauses_in_family, "missed identification",
                              population=len(rows))
    tol_rec, tol_text = tolerance_record(tolerance, task.performance_keys)
    title = f"Robustness of the {method.name} fingerprint against {modification.name} on {task_name}"
    other = [p for p in pairs if p["reference"] != p["model"]]
    measured = {"score": [r["score"] for r in rows], "matched": [r["matched"] for r in rows],
                "population": len(rows), "useful_rows": len(assessable), "not_assessable": len(rows) - len(assessable),
                "missed": len(misses), "missed_identification_rate": decision.statistic.get("rate"),
                "missed_identification_ci": decision.statistic.get("ci", [0.0, 1.0]),
                "M": len(model_seeds), "D": len(key_seeds),
                "own_entry_matched_alone": sum(p["matched"] is not None for p in pairs if p["reference"] == p["model"]),
                "cross_matches_after": sum(p["matched"] is not None for p in other),
                "cross_comparisons_after": len(other)}
    detail = "; ".join(f"{r['model']} key {r['key_seed']} after {modification.name} (error {r['error_percent']:.2f}%) "
                       f"matched {r['matched']!r} (score {r['score']:.3f})" for r in misses[:5])
    message = decision.message + (f" — {detail}" if detail else "")
    if not assessable:
        message = (f"every one of the {len(model_seeds)} Modified models lost more than {tol_text}: "
                   "nothing to assess")
    threshold = {**tol_rec, "max_miss_rate": pol["max_miss_rate"],
                 "clauses_in_family": clauses_in_family}
    return ClauseResult("NNW-TEC §5.3.1 Robustness", title, decision.verdict, message, measured, threshold, rows,
                        decision=decision.as_dict())
