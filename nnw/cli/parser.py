"""The command line: the parser of every ``nnw`` command and :func:`main` (exit statuses, one-line errors)."""
from __future__ import annotations

import argparse
import json
import os
import sys
from collections.abc import Sequence

from nnw.cli.common import (DEFAULT_FINGERPRINT_N, EXIT_ERROR, EXIT_INTERNAL, EXIT_INTERRUPTED, CLIError,
                                _one_line, _Parser, _UsageError, count_value, jsonable, seed_value)
from nnw.cli.data import cmd_make_cifar10
from nnw.cli.marks import cmd_decode, cmd_detect, cmd_embed, cmd_keygen
from nnw.cli.references import cmd_fingerprint, cmd_match, cmd_verify_integrity

_EPILOG = (
    "exit status: 0 found/decoded/intact/matched/done, 1 not found/corrupt/modified/no match, "
    "2 usage or input error (one line on stderr; nothing written), 3 internal error, 130 interrupted"
)


def build_parser() -> argparse.ArgumentParser:
    common = argparse.ArgumentParser(add_help=False)
    common.add_argument("--json", action="store_true", help="print one JSON object instead of text")

    arch = argparse.ArgumentParser(add_help=False)
    arch.add_argument("--arch", required=True, help="architecture: ResNet8, VGG16, RDN, Pix2pix, PatchGAN, DeepLabV3")
    arch.add_argument("--arch-kw", action="append", metavar="K=V", default=[],
                      help="constructor argument of the architecture, e.g. width=0.5 (repeatable)")

    model_req = argparse.ArgumentParser(add_help=False)
    model_req.add_argument("--model", required=True, metavar="FILE",
                           help="model file: .safetensors, or a state dict .pt/.pth/.bin (loaded without running code)")

    method_opt = argparse.ArgumentParser(add_help=False)
    method_opt.add_argument("--method", help="method (default: the key's, if built in or installed): NCT, RTW, "
                            "TBW, an installed name, or package.module:Object")

    parser = _Parser(
        prog="nnw",
        description="Neural-network traceability (MPAI-NNW / IEEE 3304, NNW-TEC V1.0) on model files: "
        "keys, mark embedding, detection, decoding, fingerprints and integrity.",
        epilog=_EPILOG,
    )
    try:
        from importlib.metadata import version

        parser.add_argument("--version", action="version", version=f"%(prog)s {version('nnw-conformance')}")
    except Exception:  # pragma: no cover - not installed
        pass
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)

    def add(name: str, parents: list, help: str) -> argparse.ArgumentParser:
        return sub.add_parser(name, parents=[*parents, common], help=help, description=help, epilog=_EPILOG)

    p = add("keygen", [arch], "draw a new key for a method and an architecture")
    p.add_argument("--method", required=True, help="NCT, RTW, TBW, an installed name, or package.module:Object")
    p.add_argument("--model", metavar="FILE", help="model file (optional: checks the file fits the architecture)")
    p.add_argument("--seed", type=seed_value, required=True, help="key seed (same seed, same key)")
    p.add_argument("--config", action="append", metavar="K=V", default=[],
                   help="method config, e.g. N=1024, mode=fingerprint, layer=conv1.weight, T=32 (repeatable)")
    p.add_argument("--out", required=True, metavar="KEY", help="key file to write")
    p.set_defaults(func=cmd_keygen)

    p = add("embed", [model_req, arch, method_opt],
            "insert the mark after training (post-training methods, e.g. NCT); rewrites the key file")
    p.add_argument("--key", required=True, metavar="KEY", help="key file from 'nnw keygen' (updated in place)")
    p.add_argument("--out", required=True, metavar="OUT", help="marked model file to write (.safetensors)")
    p.add_argument("--key-out", metavar="KEY2", help="write the updated key here instead of rewriting --key")
    p.set_defaults(func=cmd_embed)

    p = add("detect", [model_req, arch, method_opt], "is the mark of a key present in the model?")
    p.add_argument("--key", required=True, metavar="KEY", help="key file")
    p.set_defaults(func=cmd_detect)

    p = add("decode", [model_req, arch, method_opt], "decode the payload (e.g. RTW): bits, actor id, BER")
    p.add_argument("--key", required=True, metavar="KEY", help="key file")
    p.set_defaults(func=cmd_decode)

    p = add("fingerprint", [model_req, arch], "write a reference: NCT fingerprint + sha256 of all weights")
    p.add_argument("--seed", type=seed_value, required=True, help="seed of the fingerprint positions")
    p.add_argument("--N", type=count_value, default=None,
                   help=f"number of fingerprint positions (default {DEFAULT_FINGERPRINT_N}, or all weights if fewer)")
    p.add_argument("--name", help="name of the model in a database (default: the model file's stem)")
    p.add_argument("--out", required=True, metavar="REF", help="reference file to write")
    p.set_defaults(func=cmd_fingerprint)

    p = add("verify-integrity", [model_req, arch],
            "Algorithmic Integrity: was the model modified since its reference was taken?")
    p.add_argument("--reference", required=True, metavar="REF", help="reference file from 'nnw fingerprint'")
    p.set_defaults(func=cmd_verify_integrity)

    p = add("match", [model_req, arch], "identify the model: best match of its fingerprint in a database")
    p.add_argument("--key", metavar="REF", help="fingerprint key fixing the positions (default: each entry's own)")
    p.add_argument("--database", required=True, nargs="+", metavar="DIR_OR_FILE",
                   help="reference/fingerprint files, or directories of them")
    p.set_defaults(func=cmd_match)

    p = add("make-cifar10", [], "write a CIFAR-10-sized stand-in data root (binary layout) for timing the spec profile")
    p.add_argument("--root", required=True, metavar="DIR", help="data root to write cifar-10-batches-bin/ into")
    p.add_argument("--train", type=count_value, default=50_000, help="training images (default and most: 50000)")
    p.add_argument("--test", type=count_value, default=10_000, help="test images (default and most: 10000)")
    p.add_argument("--seed", type=seed_value, default=0, help="seed of the crops (default 0)")
    p.add_argument("--force", action="store_true", help="replace an existing cifar-10-batches-bin/ under --root")
    p.set_defaults(func=cmd_make_cifar10)
    return parser


def _report_error(prog: str, msg: str, as_json: bool, code: int) -> int:
    """One line ``<prog>: error: <msg>`` on stderr (and one JSON object on stdout with ``--json``)."""
    msg = _one_line(msg)
    if as_json:
        command = prog.split(" ", 1)[1] if " " in prog else None
        print(json.dumps({"command": command, "status": "error", "error": msg, "exit_code": code}))
    print(f"{prog}: error: {msg}", file=sys.stderr)
    return code


def main(argv: Sequence[str] | None = None) -> int:
    """Run the command line ``argv`` (default ``sys.argv[1:]``); returns the exit status.

    0 found/ok, 1 not found (the detection verdicts), 2 usage or input error, 3 internal error,
    130 interrupted; every error is one line on stderr (``NNW_TRACEBACK=1`` re-raises instead)."""
    argv = list(sys.argv[1:] if argv is None else argv)
    parser = build_parser()
    try:
        args = parser.parse_args(argv)
    except _UsageError as exc:
        return _report_error(exc.prog, f"{exc} (see '{exc.prog} --help')", "--json" in argv, EXIT_ERROR)
    command = f"nnw {args.command}"
    try:
        status, result, text = args.func(args)
    except KeyboardInterrupt:
        print(f"{command}: interrupted", file=sys.stderr)
        return EXIT_INTERRUPTED
    except (CLIError, ValueError, TypeError, OSError, RuntimeError, NotImplementedError, MemoryError) as exc:
        if os.environ.get("NNW_TRACEBACK"):
            raise
        msg = str(exc) or type(exc).__name__
        if isinstance(exc, MemoryError):
            msg = f"out of memory ({msg}); a size in the input is too large for this machine"
        elif not isinstance(exc, CLIError) and type(exc).__name__ not in msg:
            msg = f"{type(exc).__name__}: {msg}"
        return _report_error(command, msg, args.json, EXIT_ERROR)
    except Exception as exc:  # a bug (in nnw or in the method under test): not an answer, not the input's fault
        if os.environ.get("NNW_TRACEBACK"):
            raise
        return _report_error(command, f"internal error ({type(exc).__name__}: {exc}); rerun with NNW_TRACEBACK=1 "
                             "for the traceback and report it", args.json, EXIT_INTERNAL)
    if args.json:
        print(json.dumps(jsonable({**result, "exit_code": status}), indent=2))
    else:
        print(text)
    return status
