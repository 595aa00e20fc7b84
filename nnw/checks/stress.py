"""Adversarial stress: attacks beyond the standard, measured beside the conformance verdicts.

Never a conformance clause: each check returns a plain record for the certificate's separate
"stress" section (:mod:`nnw.stress`).

**Removal attacks** (:func:`check_attack`). For each key: the attack is applied to the marked
model, its top-1 accuracy and the detector's verdict are measured. The rule is the
Watermark-Robustness-Toolbox's (Lukas et al., IEEE S&P 2022): an attack *removes* the mark only
if the mark is no longer detected **and** the attacked model lost less than
``max_accuracy_drop_points`` (5) points of accuracy; a mark lost at a higher cost is "too costly".
A key that no longer fits the attacked model (e.g. dummy neurons change the layer shapes) counts
as not detected — the verifier cannot read the mark.

**Claimed invariances.** A method may declare ``claims`` (e.g. ``("permutation",)``, names of
attack families or of the groups in :data:`CLAIM_GROUPS`). A claim holds for an attack when the mark
is detected in every attacked model that is still useful (lost < the accuracy budget); a claim
that does not hold is reported as a *failed claim*.

**False claims** (:func:`check_false_claims`; Liu et al., "False Claims against Model Ownership
Resolution", USENIX Security 2024). A dishonest claimant trains its own surrogate model(s) and
crafts keys from them; the check reports how often such a key "detects" in the independently trained,
never-marked models of the profile. Crafting, per key type:

- trigger-set keys (TBW): the claimant's own abstract images and random labels, perturbed by a
  targeted momentum PGD (MI-FGSM, Dong et al., CVPR 2018; Madry et al., ICLR 2018) with input
  diversity (Xie et al., CVPR 2019) on its surrogate(s) within an L∞ ball of ``eps`` (pixel levels
  out of 255) — transferable adversarial examples; ``eps = 0`` is the unperturbed control;
- NCT: a key drawn on the surrogate and inserted into it (the claimant marks its own model);
- RTW: X drawn on the surrogate and b set to the bits the surrogate's layer already gives
  (Fan et al.'s ambiguity attack, NeurIPS 2019).
"""
from __future__ import annotations

from typing import Any, Mapping, Sequence

import torch
from torch import nn

from nnw.checks.common import marked_identity
from nnw.metrics import false_alarm_rate

#: Claim names that stand for several attack families.
CLAIM_GROUPS: dict[str, tuple[str, ...]] = {
    "function_preserving": ("permutation", "rescaling", "sign_flip", "dummy_neurons"),
    "input_transformations": ("query_jpeg", "query_blur", "query_shift"),
}

REMOVED, SURVIVED, TOO_COSTLY, NOT_INSERTED = "removed", "survived", "too costly", "not inserted"


def claimed_families(method) -> dict[str, str]:
    """``{attack family: claim name}`` for the invariances ``method`` declares (``method.claims``)."""
    claims = getattr(method, "claims", ()) or ()
    if isinstance(claims, str):
        claims = (claims,)
    out: dict[str, str] = {}
    for c in claims:
        for fam in CLAIM_GROUPS.get(c, (c,)):
            out.setdefault(fam, c)
    return out


def _detect_all(method, reads: Sequence[tuple[Any, Any, dict]], task, *, seed: Any) -> list[dict[str, Any]]:
    """Every detection of a stress measurement through the blind runner
    (:func:`nnw.checks.campaign.run_blind`: copies, shuffled, digest-checked, in a thread of its own):
    ``reads`` are ``(model, key, info)``; one row per read, in order, with ``key_fits`` (a Key that no
    longer fits the attacked model counts as not detected)."""
    import hashlib
    import json

    from nnw.checks.campaign import Read, run_blind

    rows = run_blind(method, [Read(m, k, dict(info)) for m, k, info in reads], prepare=task.prepare,
                     seed=int(hashlib.sha256(json.dumps(seed, default=str).encode()).hexdigest()[:8], 16),
                     decode=method.tags.decodes, key_errors=True)
    return rows


def outcome(detected: bool, drop_points: float, max_drop_points: float, detected_before: bool = True) -> str:
    """WRT rule: removed only if not detected and the accuracy drop stays below the budget (and the
    mark was detected in the marked model before the attack: else there was nothing to remove)."""
    if not detected_before:
        return NOT_INSERTED
    if detected:
        return SURVIVED
    return REMOVED if drop_points < max_drop_points else TOO_COSTLY


def summarize_attack(rows: Sequence[Mapping[str, Any]], *, max_drop_points: float,
                     claim: str | None = None) -> dict[str, Any]:
    """Counts over the keys whose mark was detected before the attack, the overall outcome and, when
    the method claims invariance to the attack, the claim's verdict."""
    drops = [r["accuracy_drop_points"] for r in rows]
    inserted = [r for r in rows if r["outcome"] != NOT_INSERTED]
    n = len(inserted)
    removed = sum(r["outcome"] == REMOVED for r in inserted)
    costly = sum(r["outcome"] == TOO_COSTLY for r in inserted)
    detected = sum(bool(r["detected"]) for r in inserted)
    if not n:
        overall = NOT_INSERTED
    elif removed == n:
        overall = REMOVED
    elif removed:
        overall = f"removed for {removed}/{n} keys"
    elif costly:
        overall = TOO_COSTLY if detected == 0 else f"survived for {detected}/{n} keys, else too costly"
    else:
        overall = SURVIVED
    out = {"keys": n, "not_inserted": len(rows) - n, "removed": removed, "too_costly": costly,
           "detected": detected, "success_rate": removed / n if n else None, "outcome": overall,
           "accuracy_drop_points": drops}
    if claim is not None:
        useful = [r for r in inserted if r["accuracy_drop_points"] < max_drop_points]
        missed = [r for r in useful if not r["detected"]]
        if not useful:
            out["claim"] = {"invariance": claim, "holds": None,
                            "message": "not tested: no key's mark was detected before the attack" if not n else
                                       "not tested: every attacked model lost the accuracy budget"}
        else:
            out["claim"] = {"invariance": claim, "holds": not missed,
                            "message": (f"mark detected in all {len(useful)} useful attacked models" if not missed else
                                        f"claimed invariance to {claim} fails: mark lost in {len(missed)} of "
                                        f"{len(useful)} useful attacked models (keys "
                                        f"{', '.join(str(r['key_seed']) for r in missed)})")}
    return out


def check_attack(zoo, method, task_name: str, config: Mapping[str, Any], attack, *, key_seeds: Sequence[int],
                 max_drop_points: float, marked_seed: int = 0) -> dict[str, Any]:
    """The record of one attack on the method's marked models of ``task_name`` (one row per key)."""
    task = zoo.task(task_name)
    if task.kind != "classification":
        raise ValueError(f"the stress section measures accuracy: {task_name} is a {task.kind} task")
    coverage = None
    meta, reads = [], []
    for d in key_seeds:
        m = zoo.marked(task_name, method, config, marked_seed, d)
        identity = marked_identity(task_name, method, config, marked_seed, d)
        if coverage is None and hasattr(attack, "coverage"):
            coverage = attack.coverage(m.model)
        attacked = zoo.modified(task_name, m.model, attack, seed=d, identity=identity, method=method, key=m.key)
        perf = zoo.evaluate(task_name, attacked, {**identity, "modification": attack.cache_id, "seed": d})
        base = float(m.record["performance"]["top1"])
        meta.append((d, base, float(perf["top1"])))
        reads += [(m.model, m.key, {"at": (d, "before")}), (attacked, m.key, {"at": (d, "after")})]
    # the marked and the attacked models are read blind, in one shuffled campaign
    out = {r.pop("at"): r for r in _detect_all(method, reads, task, seed=("stress", task_name, method.name,
                                                                          dict(config), attack.cache_id))}
    rows = []
    for d, base, top1 in meta:
        drop = 100.0 * (base - top1)
        before = bool(out[(d, "before")]["detected"])
        row = {"key_seed": d, "top1_marked": base, "top1_attacked": top1,
               "accuracy_drop_points": drop, "detected_before": before, **out[(d, "after")]}
        row["outcome"] = outcome(row["detected"], drop, max_drop_points, before)
        rows.append(row)
    claim = claimed_families(method).get(attack.family)
    record = {"kind": "attack", "method": method.name, "task": task_name, "config": dict(config),
              "attack": attack.name, "family": attack.family, "params": attack.params,
              "rule": {"max_accuracy_drop_points": max_drop_points}, "rows": rows,
              **summarize_attack(rows, max_drop_points=max_drop_points, claim=claim)}
    if coverage is not None:
        record["coverage"] = coverage
    return record


# -- false claims -------------------------------------------------------------------------------------
def _diverse(x: torch.Tensor, g: torch.Generator) -> torch.Tensor:
    """Input diversity (Xie et al., CVPR 2019): resize by a random factor in [1, 1.125), zero-pad at a
    random place to 1.125 × the size, resize back."""
    F = torch.nn.functional
    h, w = x.shape[-2:]
    big_h, big_w = int(round(1.125 * h)), int(round(1.125 * w))
    f = 1.0 + 0.125 * float(torch.rand(1, generator=g))
    rh, rw = min(big_h, int(h * f)), min(big_w, int(w * f))
    top = int(torch.randint(0, big_h - rh + 1, (1,), generator=g))
    left = int(torch.randint(0, big_w - rw + 1, (1,), generator=g))
    x = F.pad(F.interpolate(x, size=(rh, rw), mode="nearest"), (left, big_w - rw - left, top, big_h - rh - top))
    return F.interpolate(x, size=(h, w), mode="bilinear", align_corners=False)


def pgd_targeted(models: nn.Module | Sequence[nn.Module], pixels: torch.Tensor, labels: torch.Tensor, prepare, *,
                 eps: float, steps: int, momentum: float = 1.0, diversity: float = 0.0,
                 step_size: float | None = None, seed: int = 0) -> torch.Tensor:
    """Targeted MI-FGSM in pixel space on one surrogate or an ensemble (summed cross-entropies):
    minimise CE(label | x) within ‖x − x₀‖∞ ≤ eps, x in [0, 255], with input diversity applied at
    each step with probability ``diversity``; returns uint8 images (the key format). ``eps = 0``
    returns the images unchanged."""
    x0 = pixels.to(torch.uint8)
    if eps <= 0 or steps <= 0:
        return x0.clone()
    models = [models] if isinstance(models, nn.Module) else list(models)
    device = next(models[0].parameters()).device
    for m in models:
        m.eval()
    g = torch.Generator().manual_seed(int(seed))
    base = x0.to(device).float()
    y = labels.to(device)
    alpha = step_size if step_size is not None else 2.5 * eps / steps
    x = base.clone()
    velocity = torch.zeros_like(x)
    for _ in range(steps):
        x.requires_grad_(True)
        inp = prepare(x)
        if diversity > 0 and float(torch.rand(1, generator=g)) < diversity:
            inp = _diverse(inp, g)
        loss = sum(torch.nn.functional.cross_entropy(m(inp).float(), y) for m in models)
        (grad,) = torch.autograd.grad(loss, x)
        with torch.no_grad():
            grad = grad / grad.abs().mean(dim=(1, 2, 3), keepdim=True).clamp_min(1e-12)
            velocity = momentum * velocity + grad
            x = x - alpha * velocity.sign()  # descend the cross-entropy to the target label
            x = torch.min(torch.max(x, base - eps), base + eps).clamp(0, 255)
    return torch.round(x.detach()).clamp(0, 255).to(torch.uint8).cpu()


def craft_key(method, surrogates: nn.Module | Sequence[nn.Module], task, *, seed: int, config: Mapping[str, Any],
              eps: float, steps: int, momentum: float = 1.0, diversity: float = 0.0) -> tuple[Any, nn.Module, str]:
    """A key crafted by a dishonest claimant from its own surrogate model(s): ``(key, the claimant's
    model the key was made on, strategy)``. Raises NotImplementedError for a method without a
    crafting strategy here."""
    import copy

    surrogates = [surrogates] if isinstance(surrogates, nn.Module) else list(surrogates)
    surrogate = surrogates[0]
    key = method.keygen(surrogate, seed=seed, config=dict(config))
    if {"triggers", "labels"} <= set(key.tensors):
        key.tensors["triggers"] = pgd_targeted(surrogates, key.tensors["triggers"], key.tensors["labels"],
                                               task.prepare, eps=eps, steps=steps, momentum=momentum,
                                               diversity=diversity, seed=seed)
        di = " + input diversity" if diversity else ""
        what = (f"claimant's trigger images + random labels, targeted MI-FGSM{di}"
                f" on {len(surrogates)} surrogate{'s' if len(surrogates) > 1 else ''} (eps {eps:g}/255, {steps} steps)"
                if eps > 0 else "claimant's trigger images + random labels, unperturbed (control)")
        return key, surrogate, what
    try:  # a method with post-training insertion: the claimant marks its own model
        marked = method.embed(surrogate, key)
        return key, marked, "key drawn on the surrogate and inserted into it (the claimant marks its own model)"
    except NotImplementedError:
        pass
    if method.tags.decodes and "b" in key.tensors:
        bits = method.decode(surrogate, key).payload.to(key.tensors["b"].dtype)
        key = copy.deepcopy(key)
        key.tensors["b"] = bits.cpu()
        if "payload" in key.config:
            key.config["payload"] = "random"
        return key, surrogate, "X drawn on the surrogate, b := the surrogate's own bits (ambiguity attack)"
    raise NotImplementedError(f"no false-claim crafting strategy for {method.name}")


def check_false_claims(zoo, method, task_name: str, config: Mapping[str, Any], *, surrogate_seeds: Sequence[int],
                       model_seeds: Sequence[int], keys: int, eps: Sequence[float], steps: int,
                       momentum: float = 1.0, diversity: float = 0.0, confidence: float = 0.95) -> list[dict[str, Any]]:
    """How often a crafted key claims an independent, never-marked model: one record per crafting
    variant (per ``eps`` for trigger-set keys; one for the other key types), rows per key × model.
    The claimant's surrogates are models of the task trained like the reference ones, from seeds
    that none of the never-marked models uses."""
    shared = sorted(set(surrogate_seeds) & set(model_seeds))
    if shared or not surrogate_seeds:
        raise ValueError(f"the claimant's surrogates (seeds {list(surrogate_seeds)}) must be independent of the "
                         f"never-marked models (seeds {list(model_seeds)})")
    task = zoo.task(task_name)
    surrogates = [zoo.unmarked(task_name, s)[0] for s in surrogate_seeds]
    independent = [(s, zoo.unmarked(task_name, s)[0]) for s in model_seeds]
    out = []
    for e in eps:
        reads, strategy, trigger = [], None, False
        for i in range(keys):
            key, own, strategy = craft_key(method, surrogates, task, seed=2_000_000 + 1000 * surrogate_seeds[0] + i,
                                           config=config, eps=e, steps=steps, momentum=momentum, diversity=diversity)
            trigger = "triggers" in key.tensors
            reads.append((own, key, {"crafted_key": i, "model": f"claimant's own (seed {surrogate_seeds[0]})",
                                     "independent": False}))
            for s, model in independent:
                reads.append((model, key, {"crafted_key": i, "model": f"unmarked seed {s}", "independent": True}))
        # the claimant's own model and the independent ones are read blind, in one shuffled campaign
        rows = _detect_all(method, reads, task, seed=("false claims", task_name, method.name, dict(config), e))
        ind = [r for r in rows if r["independent"]]
        own = [r for r in rows if not r["independent"]]
        rate = false_alarm_rate(sum(r["detected"] for r in ind), len(ind), confidence=confidence)
        scores = [r["score"] for r in ind if r["score"] is not None]
        params = {"keys": keys, "surrogate_seeds": list(surrogate_seeds),
                  **({"eps": e, "steps": steps, "diversity": diversity} if trigger else {})}
        out.append({"kind": "false_claim", "method": method.name, "task": task_name, "config": dict(config),
                    "attack": f"false_claim(eps={e:g})" if trigger else "false_claim()", "params": params,
                    "strategy": strategy, "rows": rows, "claims": rate.k, "trials": rate.n,
                    "claim_rate": rate.value, "claim_ci": [rate.low, rate.high],
                    "own_model_claim_rate": sum(r["detected"] for r in own) / len(own),
                    "mean_score": sum(scores) / len(scores) if scores else None,
                    "max_score": max(scores) if scores else None})
        if not trigger:  # eps only shapes trigger-set keys
            break
    return out


__all__ = ["CLAIM_GROUPS", "NOT_INSERTED", "REMOVED", "SURVIVED", "TOO_COSTLY", "check_attack", "check_false_claims",
           "claimed_families", "craft_key", "outcome", "pgd_targeted", "summarize_attack"]
