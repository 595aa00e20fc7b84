"""Marks: ``keygen``, ``embed``, ``detect``, ``decode``.

* ``embed`` refuses a key in fingerprint mode (a reference inserts nothing).
* ``embed`` is for methods with a post-training insertion (a method class that overrides
  ``TraceabilityMethod.embed``; NCT does, even though its tag says "in-training" since it can
  also insert at epoch α). Methods that insert in training only (RTW, TBW) are refused (exit 2)
  with the advice to train with the method's training hook. An insertion that writes the
  Original Traceability Data into the Key (NCT) makes ``embed`` rewrite the key file (or write
  ``--key-out``); such a key is single-use, a second embed with it is refused.
* ``detect`` and ``decode`` are the Tracker's use cases of :mod:`nnw.tracker` (the rules the
  clauses apply): ``detect`` exits 0 when the mark is found, 1 when not; ``decode`` exits 0 when
  the payload decodes (CRC valid; for a method without a CRC: BER = 0), 1 when it is corrupt.
"""
from __future__ import annotations

import argparse

from nnw import tracker
from nnw.cli.common import (EXIT_NEGATIVE, EXIT_OK, CLIError, Result, fmt, fmt_p, parse_kv, refuse_clashes,
                                write_outputs)
from nnw.cli.loading import (_has_embed, _unknown_key_method, build_arch, check_key, load_model, read_key,
                                 resolve_method)


def cmd_keygen(args: argparse.Namespace) -> Result:
    arch_kw = parse_kv(args.arch_kw, "--arch-kw")
    config = parse_kv(args.config, "--config")
    overlap_file = config.get("overlap_with") if isinstance(config.get("overlap_with"), str) else None
    refuse_clashes([("--out", args.out)], [("--model", args.model), ("--config overlap_with", overlap_file)])
    method = resolve_method(args.method)
    if overlap_file is not None:  # NCT watermark overwriting: an earlier key file
        config["overlap_with"] = read_key(overlap_file, "overlap_with key file")
    if args.model:
        model, _ = load_model(args.model, args.arch, arch_kw)
    else:
        model = build_arch(args.arch, arch_kw)
    try:
        key = method.keygen(model, seed=args.seed, config=config or None)
    except (ValueError, TypeError) as exc:
        raise CLIError(f"{method.name} keygen: {exc}") from None
    from nnw.methods.keys import save_key

    write_outputs([(args.out, lambda tmp: save_key(tmp, key))])
    result = {
        "command": "keygen",
        "status": "ok",
        "method": method.name,
        "arch": args.arch,
        "arch_kw": arch_kw,
        "seed": args.seed,
        "config": key.config,
        "key_file": args.out,
    }
    shown = ", ".join(f"{k}={v}" for k, v in key.config.items() if k not in ("key_seed",))
    text = f"wrote {method.name} key for {args.arch} ({shown}) to {args.out}"
    if method.tags.insertion == "in-training" and not _has_embed(method):
        text += f"\n  {method.name} inserts its mark in training: use this key with the method's training hook"
    return EXIT_OK, result, text


def cmd_embed(args: argparse.Namespace) -> Result:
    key_out = args.key_out or args.key
    refuse_clashes([("--out", args.out), ("--key-out", key_out)], [("--model", args.model), ("--key", args.key)],
                   allowed=[("--key-out", "--key")])
    if args.method is None:
        _unknown_key_method(args.key)
    key = read_key(args.key)
    method = resolve_method(args.method, key)
    if key.config.get("mode") == "fingerprint":
        raise CLIError(
            f"{args.key!r} is a {key.method} key in fingerprint mode (a reference: it reads the model's values "
            "and inserts nothing), so there is nothing to embed; draw a watermark key with "
            f"'nnw keygen --method {key.method}' (mode=watermark, the default)"
        )
    if not _has_embed(method):
        if method.tags.insertion == "none":
            raise CLIError(
                f"{method.name} is a passive (fingerprinting) method: it inserts nothing, there is nothing "
                "to embed; use 'nnw detect' with its key, or 'nnw fingerprint'"
            )
        raise CLIError(
            f"{method.name} has no post-training insertion: its mark is inserted in training "
            f"(tags.insertion={method.tags.insertion!r}), 'nnw embed' cannot insert it; train the model "
            "with the method's training hook (method.training_hook(key) with nnw.training.train)"
        )
    arch_kw = parse_kv(args.arch_kw, "--arch-kw")
    model, metadata = load_model(args.model, args.arch, arch_kw)
    check_key(method, model, key)
    try:
        marked = method.embed(model, key)
    except NotImplementedError as exc:
        raise CLIError(str(exc)) from None
    except ValueError as exc:  # e.g. a key that was already inserted (single-use keys, such as NCT's)
        said = str(exc).replace(f"{method.name}.keygen", "'nnw keygen'")
        raise CLIError(f"{method.name} embed: {said}") from None
    from nnw.io import save_state
    from nnw.methods.keys import save_key

    state = marked.state_dict()
    write_outputs([
        (args.out, lambda tmp: save_state(tmp, state, metadata=metadata or None)),
        (key_out, lambda tmp: save_key(tmp, key)),
    ])
    result = {
        "command": "embed",
        "status": "ok",
        "method": method.name,
        "model": args.model,
        "marked_model": args.out,
        "key_file": key_out,
        "key_updated": True,
    }
    what = "its Original Traceability Data" if "original" in key.tensors else "what it recorded"
    text = (
        f"wrote the {method.name}-marked model to {args.out}\n"
        f"  {'rewrote' if key_out == args.key else 'wrote'} the key file {key_out} with {what}: "
        "detection needs this updated key"
    )
    return EXIT_OK, result, text


def _verify_setup(args: argparse.Namespace):
    if args.method is None:
        _unknown_key_method(args.key)
    key = read_key(args.key)
    method = resolve_method(args.method, key)
    arch_kw = parse_kv(args.arch_kw, "--arch-kw")
    model, _ = load_model(args.model, args.arch, arch_kw)
    check_key(method, model, key)
    return key, method, model


def cmd_detect(args: argparse.Namespace) -> Result:
    key, method, model = _verify_setup(args)
    try:
        det = tracker.detect(method, model, key)
    except (ValueError, NotImplementedError, tracker.CannotAnswer) as exc:
        raise CLIError(f"{method.name} detect: {exc}") from None
    status = "found" if det.present else "not found"
    result = {
        "command": "detect",
        "status": status,
        "present": bool(det.present),
        "method": method.name,
        "model": args.model,
        "key_file": args.key,
        "score": det.score,
        "threshold": det.threshold,
        "p_value": det.p_value,
        "details": det.details,
    }
    text = (
        f"{status}: {method.name} mark of {args.key} in {args.model}\n"
        f"  score {fmt(det.score)}, threshold {fmt(det.threshold)}, p-value {fmt_p(det.p_value)}"
    )
    extra = {
        k: v for k, v in det.details.items()
        if (isinstance(v, (int, float, str, bool)) or v is None) and k not in ("p_value", "critical_value", "threshold")
    }
    if extra:
        text += "\n  " + ", ".join(f"{k} {fmt(v)}" for k, v in extra.items())
    return (EXIT_OK if det.present else EXIT_NEGATIVE), result, text


def cmd_decode(args: argparse.Namespace) -> Result:
    key, method, model = _verify_setup(args)
    if not method.tags.decodes:
        raise CLIError(f"{method.name} carries no payload bits: it detects, it does not decode; use 'nnw detect'")
    try:
        dec, ok = tracker.decode(method, model, key)
    except (ValueError, NotImplementedError) as exc:
        raise CLIError(f"{method.name} decode: {exc}") from None
    bits = "".join(str(int(b)) for b in dec.payload.reshape(-1).tolist())
    status = "decoded" if ok else "corrupt"
    expected_actor = key.config.get("actor")
    result = {
        "command": "decode",
        "status": status,
        "method": method.name,
        "model": args.model,
        "key_file": args.key,
        "payload": bits,
        "actor_id": dec.actor_id,
        "valid": dec.valid,
        "ber": dec.ber,
        "key_actor": expected_actor,
        "details": dec.details,
    }
    if dec.actor_id is not None:
        who = f"actor id {dec.actor_id}"
    elif dec.valid is False:
        who = "no actor: the payload is corrupt (CRC check failed)"
    else:
        who = "no actor id in this payload"
    text = (
        f"{status}: {method.name} payload of {args.key} in {args.model}\n"
        f"  {who}\n"
        f"  payload bits {bits}\n"
        f"  BER vs the key's payload {fmt(dec.ber)}"
        + (f" (the key was made for actor {expected_actor})" if expected_actor is not None else "")
    )
    return (EXIT_OK if ok else EXIT_NEGATIVE), result, text

