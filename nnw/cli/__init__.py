"""The ``nnw`` command: NN traceability use cases of NNW-TEC on the command line.

For Trackers and Distributors who work on model *files* outside pytest (NNW-TEC §5: Mark
embedding, Detection, Decoding, fingerprint extraction and matching; §3 "Algorithmic Integrity").
Also runs as ``python -m nnw``.

Synopsis::

    nnw keygen  --method NAME|pkg.mod:Obj --arch A [--arch-kw k=v ...] [--model FILE]
                --seed S [--config k=v ...] --out KEY
    nnw embed   --model IN --arch A [--arch-kw k=v ...] --key KEY --out OUT [--key-out KEY2] [--method M]
    nnw detect  --model FILE --arch A [--arch-kw k=v ...] --key KEY [--method M]
    nnw decode  --model FILE --arch A [--arch-kw k=v ...] --key KEY [--method M]
    nnw fingerprint      --model FILE --arch A [--arch-kw k=v ...] --seed S [--N 4096] [--name NAME] --out REF
    nnw verify-integrity --model FILE --arch A [--arch-kw k=v ...] --reference REF
    nnw match            --model FILE --arch A [--arch-kw k=v ...] [--key REF] --database DIR_OR_FILE ...
    nnw make-cifar10     --root DIR [--train 50000] [--test 10000] [--seed 0] [--force]

Every subcommand takes ``--json`` (one JSON object on stdout instead of the human-readable text).

Exit status: 0 = found / decoded / intact / matched / done; 1 = not found / corrupt payload /
modified / no match; 2 = usage or input error; 3 = internal error (a bug in nnw or in the method
under test); 130 = interrupted. A usage or input error (bad options, missing or corrupt model or
key file, a pickle that would execute code, NaN/Inf weights, a key made for another architecture
or naming an unknown method, a malformed or out-of-range key or config value, a size above its
bound, an output that would overwrite an input) prints ONE line ``nnw <command>: error: ...`` on
stderr (and, with ``--json``, ``{"status": "error", ...}`` on stdout), never a traceback, and
writes nothing; set ``NNW_TRACEBACK=1`` to get the traceback when debugging.

Untrusted files
---------------
* **A file never selects code.** The method is ``--method`` (a built-in, an installed
  ``nnw.methods`` entry point, or ``package.module:Object``: the caller's choice), else the key's
  ``method`` field, which must name a built-in or an installed entry point: never an import path.
* **Key configs** of the built-in methods are checked on loading against
  ``nnw/schemas/key-config.schema.json`` (types, ranges, bounded sizes, tensor dtypes and shapes;
  errors name the file and the field), and a key never sets its decision threshold: the detection
  rules are the spec's (``detection_rules`` in ``nnw/spec/nnw-tec-v1.0.json``).
* **Outputs** never overwrite an input (``embed --out`` = ``--key`` or ``--model``, ``--key-out`` =
  ``--out`` or ``--model``, ``keygen``/``fingerprint --out`` = ``--model`` are refused before
  anything is written, comparing the files themselves, through links). All outputs of a command
  are written to temporary files beside their targets, then renamed: all or none. They get the
  usual mode (0666 less the umask). ``make-cifar10`` writes into a temporary folder under
  ``--root`` and renames it at the end; it refuses to replace an existing
  ``cifar-10-batches-bin/`` without ``--force``.
* **Sizes** from a command line or a key are bounded: key configs by the schema, architectures to
  ``MAX_MODEL_PARAMS`` parameters (counted on the meta device before anything is allocated),
  ``make-cifar10`` to CIFAR-10's own sizes.

Model files are read with :func:`nnw.io.load_state` (safetensors, or a PyTorch state dict loaded
with ``weights_only=True``: a pickle that would run code is refused, not run) and loaded into the
architecture built by :func:`nnw.models.build_model` ``(--arch, **--arch-kw)`` with
:func:`nnw.io.load_into`. Key files are :func:`nnw.methods.keys.save_key` files.

Layout
------
=============================  =====================================================================
module                         what it holds
=============================  =====================================================================
``nnw/cli/parser.py``          the parser of every command, :func:`main` (exit statuses, one-line errors)
``nnw/cli/marks.py``           ``keygen``, ``embed``, ``detect``, ``decode``
``nnw/cli/references.py``      ``fingerprint``, ``verify-integrity``, ``match``
``nnw/cli/data.py``            ``make-cifar10``
``nnw/cli/loading.py``         architectures, model and key files, the method (a file never selects code)
``nnw/cli/common.py``          exit statuses, bounds, option values, formatting, safe outputs
``nnw/tracker.py``             the rules of detect, decode, match and verify integrity (shared with the clauses)
=============================  =====================================================================
"""
from nnw.cli.common import (DEFAULT_FINGERPRINT_N, EXIT_ERROR, EXIT_INTERNAL, EXIT_INTERRUPTED, EXIT_NEGATIVE,
                            EXIT_OK, MAX_CIFAR_TEST, MAX_CIFAR_TRAIN, MAX_MODEL_PARAMS, REFERENCE_FORMAT, CLIError,
                            jsonable, parse_kv, parse_value, refuse_clashes, same_file, write_outputs)
from nnw.cli.loading import _BUILTIN_NAMES, read_key, resolve_method
from nnw.cli.parser import build_parser, main
from nnw.tracker import weights_digest

__all__ = ["main", "build_parser", "weights_digest", "parse_kv", "parse_value", "CLIError", "same_file",
           "refuse_clashes", "write_outputs", "MAX_MODEL_PARAMS", "MAX_CIFAR_TRAIN", "MAX_CIFAR_TEST",
           "DEFAULT_FINGERPRINT_N", "REFERENCE_FORMAT", "EXIT_OK", "EXIT_NEGATIVE", "EXIT_ERROR", "EXIT_INTERNAL",
           "EXIT_INTERRUPTED", "jsonable", "read_key", "resolve_method", "_BUILTIN_NAMES"]
