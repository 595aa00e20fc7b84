"""Fingerprinting (NNW-TEC §5.3: Unicity, Robustness, matching against a database; NCT passive mode).

The fingerprint of each of the M independently trained models is extracted with one key (same
positions for every model of the architecture) and stored in a database. Unicity: each model
matches itself and no other. Robustness: after a Modification, a still-useful model is matched to
its own database entry.
"""
from __future__ import annotations

from typing import Any, Mapping, Sequence

from nnw.checks.common import unmarked_identity
from nnw.checks.robustness import degradation
from nnw.profile import for_measure
from nnw.checks.result import FAIL, PASS, ClauseResult
from nnw.metrics import false_alarm_rate


def _database(zoo, method, task_name, config, model_seeds, key_seed):
    models = {s: zoo.unmarked(task_name, s) for s in model_seeds}
    key = method.keygen(models[model_seeds[0]][0], seed=key_seed, config={**config, "mode": "fingerprint"})
    db = {f"seed {s}": method.extract(m, key) for s, (m, _) in models.items()}
    return models, key, db


def check_fingerprint_unicity(zoo, method, task_name: str, config: Mapping[str, Any], *,
                              model_seeds: Sequence[int], key_seeds: Sequence[int] = (0,),
                              nominal: float = 0.05) -> ClauseResult:
    """Each model is identified as itself (its own entry is the best match), and fingerprints of
    *other* models match at a rate consistent with the matcher's 5% level: like the false-alarm
    clause, it fails only when that rate is significantly above it (Clopper–Pearson lower bound)."""
    rows, failures, cross, cross_matches = [], [], 0, 0
    for k in key_seeds:
        _, _, db = _database(zoo, method, task_name, config, model_seeds, k)
        for s in model_seeds:
            fp = db[f"seed {s}"]
            found, score = method.match(fp, db)
            for other, ref in db.items():
                if other != f"seed {s}":
                    hit, other_score = method.match(fp, {other: ref})
                    cross += 1
                    cross_matches += hit is not None
            rows.append({"key_seed": k, "model": f"seed {s}", "matched": found, "score": score})
            if found != f"seed {s}":
                failures.append(f"key {k}: seed {s} identified as {found!r}")
    rate = false_alarm_rate(cross_matches, cross)
    if rate.low > nominal:
        failures.append(f"{cross_matches}/{cross} matches between different models: rate {rate.value:.2f}, "
                        f"CI [{rate.low:.3f}, {rate.high:.3f}] above the nominal {nominal}")
    title = f"Unicity of the {method.name} fingerprint over {len(model_seeds)} independently trained {task_name} models"
    measured = {"cross_matches": cross_matches, "cross_comparisons": cross, "cross_match_rate": rate.value,
                "cross_match_ci": [rate.low, rate.high]}
    verdict = FAIL if failures else PASS
    msg = "; ".join(failures) if failures else (
        f"each model identified as itself with {len(key_seeds)} keys; {cross_matches}/{cross} cross-model matches "
        f"(consistent with {nominal})")
    return ClauseResult("NNW-TEC §5.3.1 Unicity", title, verdict, msg, measured,
                        {"match": "Spearman one-sided 5%", "nominal_cross_match_rate": nominal}, rows)


def check_fingerprint_robustness(zoo, method, task_name: str, config: Mapping[str, Any], modification, *,
                                 model_seeds: Sequence[int], tolerance, key_seed: int = 0) -> ClauseResult:
    task = zoo.task(task_name)
    models, key, db = _database(zoo, method, task_name, config, model_seeds, key_seed)
    rows, failures = [], []
    for s, (model, record) in models.items():
        identity = unmarked_identity(task_name, s)
        modified = zoo.modified(task_name, model, modification, seed=1000 + s, identity=identity, method=method, key=key)
        perf = zoo.evaluate(task_name, modified, {**identity, "modification": modification.cache_id, "seed": 1000 + s})
        err, useful = degradation(perf, record["performance"], task.performance_keys, tolerance)
        found, score = method.match(method.extract(modified, key), db)
        row = {"model": f"seed {s}", "matched": found, "score": score, "error_percent": 100 * err,
               "useful": useful}
        rows.append(row)
        if row["useful"] and found != f"seed {s}":
            failures.append(f"seed {s} after {modification.name} (error {100 * err:.2f}%) matched {found!r} "
                            f"(score {score:.3f})")
    title = f"Robustness of the {method.name} fingerprint against {modification.name} on {task_name}"
    measured = {"score": [r["score"] for r in rows], "matched": [r["matched"] for r in rows]}
    verdict = FAIL if failures else PASS
    msg = "; ".join(failures) if failures else f"{sum(r['useful'] for r in rows)} useful Modified models matched to their source"
    return ClauseResult("NNW-TEC §5.3.1 Robustness", title, verdict, msg, measured,
                        {"useful_error_tolerance_percent": 100 * for_measure(tolerance, task.performance_keys[0])}, rows)
