"""References: ``fingerprint``, ``verify-integrity``, ``match`` (the rules are :mod:`nnw.tracker`'s).

* **References** (``fingerprint``, used by ``verify-integrity`` and ``match``) are keys in
  fingerprint mode of the built-in method that fingerprints (the registry's, by its ``fingerprints``
  tag: NCT) — θ_I, the values of the model at N random weight positions (§7.2.2, passive: the
  weights are not touched) — with a ``reference`` entry in the key config: architecture, model
  file name, and a sha256 digest of the model file's stored tensors (weights and buffers, per
  tensor and overall; :func:`nnw.tracker.weights_digest`). ``N`` defaults to 4096 (fewer if the
  model has fewer weights).
* **Algorithmic Integrity** (``verify-integrity``): :func:`nnw.tracker.verify_integrity` (θ_I
  bit-identical, the integrity clause's rule) and :func:`nnw.tracker.verify_file_integrity` (the
  file's stored tensors bit-identical: digest of names, dtypes, shapes and bytes, taken before the
  tensors are loaded into the architecture, so a float64 re-save is not "bit-identical"; a changed
  stored dtype is reported): intact iff both. A change of a single bit anywhere is "modified", so
  Gaussian noise S = 0.001, 16-bit quantization and 1% pruning are all detected. The report adds
  which tensors changed, the number of changed values at the N fingerprint positions and their
  max |Δ|, and the method's detection of the reference in the model (for NCT: Spearman's rho
  stays near 1 for a slight modification of the same model: the model was *modified*, it is not
  *another* model).
* **match**: the query model is read at each database entry's own positions (so entries taken
  with different seeds can share a database; ``--key`` fixes the positions and then only entries
  taken at them are compared); :func:`nnw.tracker.match_entries`: the best entry is a match when
  it matches by the method's own rule (``method.match``, the rule of the fingerprint clauses:
  for NCT one-sided Spearman on within-layer quantiles at 5%, given the entry's Key; no
  correction for the number of entries). Each entry's score and whether it matches alone are
  reported. Files in a database *directory* that are
  not fingerprints, or made for another architecture, are skipped and listed; a file named
  explicitly that cannot be read is an input error.
"""
from __future__ import annotations

import argparse
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from nnw import tracker
from nnw.cli.common import (DEFAULT_FINGERPRINT_N, EXIT_NEGATIVE, EXIT_OK, REFERENCE_FORMAT, CLIError, Result,
                                fmt, fmt_p, parse_kv, refuse_clashes, write_outputs)
from nnw.cli.loading import (_reference_info, check_key, fingerprinting_method, load_model, load_model_and_state,
                                 read_key)



def _read_fingerprint(method, model, key) -> None:
    """Fill a fingerprint-mode key with the model's values (in place when the method offers
    ``insert_``, else through ``embed``; the weights are not touched)."""
    insert_ = getattr(method, "insert_", None)
    if callable(insert_):
        insert_(model, key)
    else:
        method.embed(model, key)


def cmd_fingerprint(args: argparse.Namespace) -> Result:
    refuse_clashes([("--out", args.out)], [("--model", args.model)])
    if args.name is not None and not (0 < len(args.name) <= 1000 and args.name.isprintable()):
        raise CLIError("--name must be a printable name of 1 to 1000 characters")
    from nnw.methods.keys import model_signature, save_key

    arch_kw = parse_kv(args.arch_kw, "--arch-kw")
    model, _, file_state = load_model_and_state(args.model, args.arch, arch_kw)
    total = model_signature(model)["n_weight_params"]
    n = args.N if args.N is not None else min(DEFAULT_FINGERPRINT_N, total)
    method = fingerprinting_method()
    try:
        key = method.keygen(model, seed=args.seed, config={"N": n, "mode": "fingerprint"})
    except ValueError as exc:
        raise CLIError(f"fingerprint: {exc}") from None
    _read_fingerprint(method, model, key)  # θ_I into key.tensors["original"], weights untouched
    overall, per = tracker.weights_digest(file_state)  # the file's tensors as stored (dtypes included)
    name = args.name or Path(args.model).stem
    key.config["reference"] = {
        "format": REFERENCE_FORMAT,
        "name": name,
        "arch": args.arch,
        "arch_kw": arch_kw,
        "model_file": Path(args.model).name,
        "weights_sha256": overall,
        "tensor_sha256": per,
        "tensor_dtypes": tracker.stored_dtypes(file_state),
    }
    write_outputs([(args.out, lambda tmp: save_key(tmp, key))])
    result = {
        "command": "fingerprint",
        "status": "ok",
        "name": name,
        "model": args.model,
        "reference_file": args.out,
        "N": n,
        "weights_sha256": overall,
    }
    text = (
        f"wrote the reference {args.out} for {name!r}: {method.name} fingerprint at {n} weight positions "
        f"(seed {args.seed}) + sha256 {overall[:16]}... of {len(per)} tensors"
    )
    return EXIT_OK, result, text


def cmd_verify_integrity(args: argparse.Namespace) -> Result:
    method = fingerprinting_method()
    ref = read_key(args.reference, "reference file")
    info = _reference_info(ref)
    if ref.method != method.name or info is None or "weights_sha256" not in info or "original" not in ref.tensors:
        raise CLIError(
            f"reference file {args.reference!r} is not an integrity reference (it is a {ref.method} key without "
            "a weights digest); make one with 'nnw fingerprint'"
        )
    arch_kw = parse_kv(args.arch_kw, "--arch-kw")
    model, _, file_state = load_model_and_state(args.model, args.arch, arch_kw)
    check_key(method, model, ref, "the reference")
    # the file's own tensors (dtypes as stored), not the architecture's copy: loading casts a float64
    # re-save back to float32, which would hide the change
    file = tracker.verify_file_integrity(info, file_state)
    data = tracker.verify_integrity(method, model, ref, ref.tensors["original"])
    det = tracker.detect(method, model, ref)
    if file.intact and not data.intact:
        raise CLIError(
            f"reference file {args.reference!r} is inconsistent: the weights digest matches but "
            f"{data.changed_values} fingerprint values differ (corrupt or tampered reference)"
        )
    intact = file.intact and data.intact
    status = "intact" if intact else "modified"
    changed = file.changed_tensors
    result = {
        "command": "verify-integrity",
        "status": status,
        "intact": intact,
        "model": args.model,
        "reference_file": args.reference,
        "reference_name": info.get("name"),
        "weights_sha256": file.digest,
        "reference_sha256": info["weights_sha256"],
        "changed_tensors": changed,
        "dtype_changes": file.dtype_changes,
        "n_tensors": file.tensors,
        "N": data.values,
        "changed_positions": data.changed_values,
        "max_abs_deviation": data.max_abs_change,
        "spearman_rho": det.details.get("rho"),
        "p_value": det.p_value,
        "pearson": det.details.get("pearson"),
    }
    if intact:
        text = f"intact: {args.model} is bit-identical to the reference {info.get('name')!r} (sha256 {file.digest[:16]}...)"
    else:
        text = (
            f"modified: {args.model} differs from the reference {info.get('name')!r} "
            f"(sha256 {file.digest[:16]}... != {info['weights_sha256'][:16]}...)"
        )
        if changed is not None:
            shown = ", ".join(changed[:5]) + (f", ... ({len(changed) - 5} more)" if len(changed) > 5 else "")
            text += f"\n  changed tensors: {len(changed)} of {file.tensors} ({shown})"
        if file.dtype_changes:
            dc = file.dtype_changes
            shown = ", ".join(f"{n} {a} -> {b}" for n, (a, b) in list(dc.items())[:3])
            text += f"\n  stored dtype changed: {len(dc)} tensor(s) ({shown}{', ...' if len(dc) > 3 else ''})"
    text += (
        f"\n  at the {data.values} fingerprint positions: {data.changed_values} values changed, "
        f"max |deviation| {fmt(data.max_abs_change)}, Spearman rho {fmt(det.details.get('rho'), 6)} "
        f"(p-value {fmt_p(det.p_value)})"
    )
    return (EXIT_OK if intact else EXIT_NEGATIVE), result, text


def _database_files(paths: Sequence[str]) -> list[tuple[Path, bool]]:
    """(file, named explicitly) for each database argument; a directory gives its visible files."""
    out: list[tuple[Path, bool]] = []
    for p in paths:
        path = Path(p)
        if path.is_dir():
            out.extend((f, False) for f in sorted(path.iterdir()) if f.is_file() and not f.name.startswith("."))
        elif path.is_file():
            out.append((path, True))
        else:
            raise CLIError(f"database entry {p!r} does not exist")
    return out


def _same_positions(a, b) -> bool:
    import torch

    ka, kb = a.tensors.get("K"), b.tensors.get("K")
    return (
        ka is not None and kb is not None and a.config.get("key_seed") == b.config.get("key_seed")
        and ka.shape == kb.shape and bool(torch.equal(ka, kb))
    )


def _database(args, method, model, query_key) -> tuple[dict[str, Any], list[dict[str, Any]], list[dict[str, str]]]:
    """({entry name: its key}, [entry info], [skipped file and why]) of ``--database``."""
    from nnw.methods.base import KeyMismatchError
    from nnw.methods.keys import KeyFileError, load_key

    keys: dict[str, Any] = {}
    info: list[dict[str, Any]] = []
    skipped: list[dict[str, str]] = []
    for path, explicit in _database_files(args.database):
        try:
            entry = load_key(path)
        except KeyFileError as exc:
            if explicit:
                raise CLIError(f"database {exc}") from None
            skipped.append({"file": str(path), "reason": "not an nnw key file"})
            continue
        if entry.method != method.name or "original" not in entry.tensors:
            skipped.append({"file": str(path),
                            "reason": f"not a fingerprint ({entry.method} key without {method.name} values)"})
            continue
        try:
            method.check_key(model, entry)
        except KeyMismatchError:
            skipped.append({"file": str(path), "reason": "made for another architecture"})
            continue
        if query_key is not None and not _same_positions(query_key, entry):
            skipped.append({"file": str(path), "reason": "taken at other positions than --key"})
            continue
        ref = _reference_info(entry) or {}
        name = ref.get("name") or path.stem
        uid = f"{name}\0{len(keys)}"  # entries may share a name: each is kept (ties rank by name)
        keys[uid] = entry
        info.append({"uid": uid, "name": name, "file": str(path),
                     "weights_sha256": ref.get("weights_sha256")})
    return keys, info, skipped


def cmd_match(args: argparse.Namespace) -> Result:
    method = fingerprinting_method()
    arch_kw = parse_kv(args.arch_kw, "--arch-kw")
    model, _ = load_model(args.model, args.arch, arch_kw)
    query_key = None
    if args.key:
        query_key = read_key(args.key)
        if query_key.method != method.name:
            raise CLIError(f"--key {args.key!r} is a {query_key.method} key; match needs a {method.name} "
                           "fingerprint key")
        check_key(method, model, query_key)
    keys, info, skipped = _database(args, method, model, query_key)
    if not keys:
        reasons = "; ".join(f"{s['file']}: {s['reason']}" for s in skipped[:3]) or "the database is empty"
        raise CLIError(f"no database entry can be compared with this model ({reasons})")
    digest, _ = tracker.weights_digest(model.state_dict())
    by_uid = {i["uid"]: i for i in info}
    matched_entry, rows = tracker.match_entries(method, model, keys)
    entries = []
    for row in rows:
        i = by_uid[row.name]
        entries.append({"name": i["name"], "file": i["file"], "rho": row.score, "N": row.values,
                        "matches": row.matches,
                        "identical": (i["weights_sha256"] == digest) if i["weights_sha256"] else None})
    best = entries[0]
    matched = matched_entry is not None
    status = "matched" if matched else "no match"
    result = {
        "command": "match",
        "status": status,
        "matched": matched,
        "model": args.model,
        "best": best if matched else None,
        "best_candidate": best,
        "rule": f"{method.name}.match (the rule of the fingerprint clauses)",
        "entries": entries,
        "skipped": skipped,
    }
    if matched:
        text = (f"matched: {args.model} is {best['name']!r} ({best['file']}): score {fmt(best['rho'])}"
                + (", bit-identical" if best["identical"] else ""))
    else:
        text = f"no match: the closest entry is {best['name']!r} with score {fmt(best['rho'])}"
    text += f"\n  (a match: the best of {len(entries)} entries compared matches by {method.name}'s own rule)"
    text += f"\n  {'rank':>4}  {'score':>8}  {'matches':>7}  name (file)"
    for i, e in enumerate(entries[:10], 1):
        text += f"\n  {i:>4}  {fmt(e['rho']):>8}  {fmt(e['matches']):>7}  {e['name']} ({e['file']})"
    if len(entries) > 10:
        text += f"\n  ... {len(entries) - 10} more"
    if skipped:
        text += f"\n  skipped {len(skipped)} file(s): " + "; ".join(
            f"{Path(s['file']).name} ({s['reason']})" for s in skipped[:5]
        )
    return (EXIT_OK if matched else EXIT_NEGATIVE), result, text
