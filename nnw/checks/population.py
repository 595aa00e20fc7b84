"""The standard's population for one (task, method, configuration, Modification value).

NNW-NNT: M unmarked models (the profile's ``model_seeds``), each with D marked versions (the
profile's ``key_seeds``, made distinct per model seed by :func:`population_key_seed`); a task's
``population`` entry may set its own M and D (:meth:`nnw.profile.Profile.model_seeds_of`), so
M × (D + 1) models per Modification value. Every clause reads this whole population, through the
blind runner of :mod:`nnw.checks.campaign`; the campaign is computed once per process and shared by
the clauses that read it (robustness, false alarms, cross-Actor interference, imperceptibility).
"""
from __future__ import annotations

import json
from typing import Any, Mapping

from nnw.checks.campaign import Read, null_keys, population_key_seed, run_blind
from nnw.checks.common import marked_identity, reads_spec, unmarked_identity


def _memo(zoo) -> dict:
    memo = getattr(zoo, "_nnw_population_memo", None)
    if memo is None:
        memo = {}
        setattr(zoo, "_nnw_population_memo", memo)
    return memo


def marked_population(zoo, method, task_name: str, config: Mapping[str, Any], key_seeds=None):
    """``{(s, d): Marked}`` for the M model seeds × D key seeds of the profile (or ``key_seeds``)."""
    p = zoo.profile
    return {(s, d): zoo.marked(task_name, method, config, s, population_key_seed(s, d))
            for s in p.model_seeds_of(task_name) for d in (p.key_seeds_of(task_name) if key_seeds is None else key_seeds)}


def _null_keys(zoo, method, task_name: str, config: Mapping[str, Any], s: int):
    """Null Keys for never-marked model seed ``s``, drawn on a donor: the next model seed of the profile."""
    memo = _memo(zoo)
    k = ("null-keys", task_name, method.name, json.dumps(dict(config), sort_keys=True, default=str), s)
    if k not in memo:
        seeds = zoo.profile.model_seeds_of(task_name)
        donor_seed = seeds[(seeds.index(s) + 1) % len(seeds)] if len(seeds) > 1 else None
        count = int(zoo.profile.decisions["null_keys"])
        start = int(getattr(zoo.profile, "data", {}).get("null_key_start", 0))

        def draw():
            if donor_seed is not None:
                donor, _ = zoo.unmarked(task_name, donor_seed)
            else:  # one model seed: a model of the architecture that was never trained on the task
                donor = zoo.task(task_name).build_model(1_000_003).to(zoo.device).eval()
            zoo.progress(f"drawing {count} null Keys of {method.name} for {task_name} seed {s}")
            return null_keys(method, donor, model_seed=s, count=count, config=config, start=start)

        memo[k] = _cached_keys(zoo, method, task_name, config, s, donor_seed, count, start, draw)
    return memo[k]


def _cached_keys(zoo, method, task_name, config, s, donor_seed, count, start, draw):
    """The null Keys, kept in the model cache (a Key is data: tensors and JSON, never code), so the
    xdist workers and a warm run draw them once: NCT inserts each in a copy of the donor."""
    if getattr(zoo, "cache", None) is None:
        return draw()
    from nnw.zoo import key_from_entry, key_to_entry

    spec = reads_spec(zoo, method, task_name, "null-keys", f"null keys {task_name} {method.name} seed {s}",
                      config=dict(config), model_seed=s, donor_seed=donor_seed, count=count, start=start)

    def build():
        state, metas = {}, []
        for j, key in enumerate(draw()):
            st, meta = key_to_entry(key)
            state.update({f"{j}.{name}": t for name, t in st.items()})
            metas.append(meta)
        return state, {"keys": metas}

    state, record = zoo.cache.get_or_build(spec, build)
    per_key: list[dict] = [{} for _ in record["keys"]]
    for name, t in state.items():
        j, _, rest = name.partition(".")
        per_key[int(j)][rest] = t
    return [key_from_entry(st, meta) for st, meta in zip(per_key, record["keys"])]


def campaign(zoo, method, task_name: str, config: Mapping[str, Any], modification=None, *,
             key_seeds=None, null: bool = True) -> dict[str, Any]:
    """All detections for one Modification value (``None``: unmodified), run blind and memoized.

    ``key_seeds`` restricts the marked versions (default: the profile's D); ``null=False`` leaves
    out the never-marked and cross-Actor reads (configurations judged on imperceptibility only).

    Returns ``{"marked": rows, "null": rows, "cross": rows}`` (cached in the model cache); marked rows
    carry ``model_seed``, ``key_seed``, the performance of the marked model before and after the
    Modification (``perf_ref``, ``perf``); null rows ``model_seed``, ``null_key``; cross rows
    ``model_seed``, ``key_seed`` (the model's) and ``null_key`` (the other Actor's Key read with).
    """
    memo = _memo(zoo)
    mod_id = None if modification is None else modification.cache_id
    mk = ("campaign", task_name, method.name, json.dumps(dict(config), sort_keys=True, default=str), mod_id,
          None if key_seeds is None else tuple(key_seeds), null)
    if mk in memo:
        return memo[mk]
    # the rows are deterministic given the method's code, the models and the Keys: cached, so a warm
    # run neither loads a model nor runs a detection it has run before
    p = zoo.profile
    if getattr(zoo, "cache", None) is None:  # a zoo without a model cache (the suite's own tests)
        memo[mk] = _run_campaign(zoo, method, task_name, config, modification, key_seeds, null, mk)
        return memo[mk]
    spec = reads_spec(zoo, method, task_name, "campaign", f"campaign {task_name} {method.name} {mod_id or 'unmodified'}",
                      config=dict(config), modification=mod_id, model_seeds=p.model_seeds_of(task_name),
                      key_seeds=p.key_seeds_of(task_name) if key_seeds is None else list(key_seeds), null=null,
                      null_keys=int(p.decisions["null_keys"]) if null else 0)
    if null and p.data.get("null_key_start"):  # another set of null Keys (seed-set stability runs)
        spec["null_key_start"] = int(p.data["null_key_start"])
    _, record = zoo.cache.get_or_build(spec, lambda: ({}, _run_campaign(zoo, method, task_name, config,
                                                                          modification, key_seeds, null, mk)))
    memo[mk] = record
    return record


def _run_campaign(zoo, method, task_name, config, modification, key_seeds, null, mk) -> dict[str, Any]:
    task = zoo.task(task_name)
    p = zoo.profile
    population = marked_population(zoo, method, task_name, config, key_seeds)
    reads: list[Read] = []
    for (s, d), m in population.items():
        identity = marked_identity(task_name, method, config, s, population_key_seed(s, d))
        model = m.model
        if modification is not None:
            if modification.family == "overwriting":
                model = zoo.overwritten(task_name, m.model, modification, seed=population_key_seed(s, d),
                                        identity=identity, method=method, key=m.key)[-1][0]
            else:
                model = zoo.modified(task_name, m.model, modification, seed=population_key_seed(s, d),
                                     identity=identity, method=method, key=m.key)
            perf = zoo.evaluate(task_name, model, {**identity, "modification": modification.cache_id,
                                                   "seed": population_key_seed(s, d)})
        else:
            perf = m.record["performance"]
        reads.append(Read(model, m.key, {"kind": "marked", "model_seed": s, "key_seed": d,
                                         "perf_ref": m.record["performance"], "perf": perf}))
    for s in (p.model_seeds_of(task_name) if null else ()):
        model, _ = zoo.unmarked(task_name, s)
        if modification is not None:
            first = next(m for (s2, _), m in population.items() if s2 == s)
            model = zoo.modified(task_name, model, modification, seed=1000 + s,
                                 identity=unmarked_identity(task_name, s), method=method, key=first.key)
        for j, key in enumerate(_null_keys(zoo, method, task_name, config, s)):
            reads.append(Read(model, key, {"kind": "null", "model_seed": s, "null_key": j}))
    if modification is None and null:  # each marked model read with other Actors' Keys: the null Keys of its
        D = len(population) // len(p.model_seeds_of(task_name))  # seed, dealt out over its D marked versions (M × null_keys reads in all)
        for (s, d), m in population.items():
            i = sorted(d2 for (s2, d2) in population if s2 == s).index(d)
            for j, key in enumerate(_null_keys(zoo, method, task_name, config, s)):
                if j % D == i:
                    reads.append(Read(m.model, key, {"kind": "cross", "model_seed": s, "key_seed": d,
                                                     "null_key": j}))
    rows = run_blind(method, reads, prepare=task.prepare, seed=_stable_seed(mk), decode=method.tags.decodes)
    out: dict[str, Any] = {"marked": [], "null": [], "cross": []}
    for r in rows:
        out[r.pop("kind")].append(r)
    return out


def _stable_seed(parts) -> int:
    import hashlib

    return int(hashlib.sha256(json.dumps(parts, default=str).encode()).hexdigest()[:8], 16)
