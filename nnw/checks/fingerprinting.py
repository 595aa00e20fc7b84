"""Fingerprinting (NNW-TEC §5.3: Unicity, Robustness, matching against a database; NCT passive mode).

The fingerprint of each of the M independently trained models is extracted with one key (same
positions for every model of the architecture) and stored in a database. Unicity: each model
matches itself and no other. Robustness: after a Modification, a still-useful model is matched to
its own database entry.
"""
from __future__ import annotations

from typing import Any, Mapping, Sequence

from nnw.checks.common import worst_relative_error
from nnw.checks.result import FAIL, PASS, ClauseResult


def _database(zoo, method, task_name, config, model_seeds, key_seed):
    models = {s: zoo.unmarked(task_name, s) for s in model_seeds}
    key = method.keygen(models[model_seeds[0]][0], seed=key_seed, config={**config, "mode": "fingerprint"})
    db = {f"seed {s}": method.extract(m, key) for s, (m, _) in models.items()}
    return models, key, db


def check_fingerprint_unicity(zoo, method, task_name: str, config: Mapping[str, Any], *,
                              model_seeds: Sequence[int], key_seed: int = 0) -> ClauseResult:
    models, key, db = _database(zoo, method, task_name, config, model_seeds, key_seed)
    rows, failures = [], []
    for s in model_seeds:
        fp = db[f"seed {s}"]
        others = {k: v for k, v in db.items() if k != f"seed {s}"}
        best_other, other_score = method.match(fp, others)
        found, score = method.match(fp, db)
        rows.append({"model": f"seed {s}", "matched": found, "score": score, "best_other": best_other,
                     "other_score": other_score})
        if found != f"seed {s}":
            failures.append(f"seed {s} matched {found!r}")
        if best_other is not None:
            failures.append(f"seed {s} also matches {best_other!r} (score {other_score:.3f})")
    title = f"Unicity of the {method.name} fingerprint over {len(model_seeds)} independently trained {task_name} models"
    measured = {"max_cross_score": max(r["other_score"] for r in rows)}
    verdict = FAIL if failures else PASS
    msg = "; ".join(failures) if failures else f"each of {len(rows)} models matches itself and only itself"
    return ClauseResult("NNW-TEC §5.3.1 Unicity", title, verdict, msg, measured, {"match": "Spearman 5%"}, rows)


def check_fingerprint_robustness(zoo, method, task_name: str, config: Mapping[str, Any], modification, *,
                                 model_seeds: Sequence[int], tolerance: float, key_seed: int = 0) -> ClauseResult:
    task = zoo.task(task_name)
    models, key, db = _database(zoo, method, task_name, config, model_seeds, key_seed)
    rows, failures = [], []
    for s, (model, record) in models.items():
        identity = {"task": task_name, "unmarked_seed": s, "name": f"{task_name} unmarked seed {s}"}
        modified = zoo.modified(task_name, model, modification, seed=1000 + s, identity=identity, method=method, key=key)
        perf = zoo.evaluate(task_name, modified, {**identity, "modification": modification.name, "seed": 1000 + s})
        err = worst_relative_error(perf, record["performance"], task.performance_keys)
        found, score = method.match(method.extract(modified, key), db)
        row = {"model": f"seed {s}", "matched": found, "score": score, "error_percent": 100 * err,
               "useful": err <= tolerance}
        rows.append(row)
        if row["useful"] and found != f"seed {s}":
            failures.append(f"seed {s} after {modification.name} (error {100 * err:.2f}%) matched {found!r} "
                            f"(score {score:.3f})")
    title = f"Robustness of the {method.name} fingerprint against {modification.name} on {task_name}"
    measured = {"score": [r["score"] for r in rows], "matched": [r["matched"] for r in rows]}
    verdict = FAIL if failures else PASS
    msg = "; ".join(failures) if failures else f"{sum(r['useful'] for r in rows)} useful Modified models matched to their source"
    return ClauseResult("NNW-TEC §5.3.1 Robustness", title, verdict, msg, measured,
                        {"useful_error_tolerance_percent": 100 * tolerance}, rows)
