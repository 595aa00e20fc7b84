"""Data: ``make-cifar10``, a CIFAR-10-sized stand-in data root (for timing the spec profile)."""
from __future__ import annotations

import argparse
import os
import shutil
import tempfile
import time
from pathlib import Path

from nnw.cli.common import EXIT_OK, Result, MAX_CIFAR_TEST, MAX_CIFAR_TRAIN, CLIError, _make_parents

def cmd_make_cifar10(args: argparse.Namespace) -> Result:
    """A CIFAR-10-sized stand-in data root in the official binary layout (for timing the spec profile).

    Written into a temporary folder under ``--root``, renamed to ``cifar-10-batches-bin/`` at the end:
    a failure leaves nothing behind (folders it created included). An existing
    ``cifar-10-batches-bin/`` is replaced only with ``--force``; a root holding CIFAR-10's python
    batches is refused (a stand-in beside the real data would be ambiguous)."""
    if args.train < 1 or args.test < 1:
        raise CLIError(f"--train and --test must be >= 1, got {args.train} and {args.test}")
    if args.train > MAX_CIFAR_TRAIN or args.test > MAX_CIFAR_TEST:
        raise CLIError(f"--train and --test are bounded by CIFAR-10's sizes, {MAX_CIFAR_TRAIN} and {MAX_CIFAR_TEST}; "
                       f"got {args.train} and {args.test}")
    from nnw.data.cifar10 import make_cifar10_stand_in

    root = Path(args.root)
    final = root / "cifar-10-batches-bin"
    if root.exists() and not root.is_dir():
        raise CLIError(f"--root {args.root!r} exists and is not a directory")
    if (root / "cifar-10-batches-py").exists():
        raise CLIError(f"--root {args.root!r} holds CIFAR-10's python batches (cifar-10-batches-py/): a stand-in "
                       "beside them would be ambiguous; choose another root")
    if (final.exists() or final.is_symlink()) and not args.force:
        raise CLIError(f"{str(final)!r} already exists; pass --force to replace it (or choose another --root)")
    t0 = time.perf_counter()
    try:
        created = _make_parents(root / "x")
        work = Path(tempfile.mkdtemp(prefix=".nnw-make-cifar10-", dir=root))
    except OSError as exc:
        raise CLIError(f"cannot write into --root {args.root!r}: {exc.strerror or exc}") from None
    try:
        staged = make_cifar10_stand_in(work, n_train=args.train, n_test=args.test, seed=args.seed)
        if final.exists() or final.is_symlink():  # --force: move the old folder aside, then swap
            os.replace(final, work / "replaced")
        os.replace(staged, final)
        folder = final
    except BaseException as exc:
        shutil.rmtree(work, ignore_errors=True)
        for d in reversed(created):
            try:
                d.rmdir()
            except OSError:
                pass
        if isinstance(exc, OSError):
            raise CLIError(f"cannot write the stand-in under --root {args.root!r}: {exc.strerror or exc} "
                           "(nothing was left behind)") from None
        raise
    shutil.rmtree(work, ignore_errors=True)
    result = {"command": "make-cifar10", "status": "ok", "folder": str(folder), "train": args.train,
              "test": args.test, "seed": args.seed, "seconds": round(time.perf_counter() - t0, 2)}
    text = (f"wrote {args.train} + {args.test} images of 32 x 32 (10 classes, embedded photos) to {folder}\n"
            f"  use it as: pytest conformance --nnw-profile spec --nnw-data-root {args.root} (timing only: "
            "not CIFAR-10, not for certification)")
    return EXIT_OK, result, text

