"""The golden certificate: the tiny profile certified on a synthetic population (tests/synthetic.py:
a detector at 5 % false alarms that never misses), through ``nnw.checks.run.check_method``.

Regenerate it with one command, after a deliberate change of the certificate or of a decision::

    python tests/golden.py

``tests/test_golden.py`` diffs a fresh certificate against the file. Fields that describe the
machine (``environment``) or the code (``methods[].sha256``) are left out of both; each clause's
rows are kept as their number and sha256.
"""
from __future__ import annotations

import hashlib
import json
import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent
GOLDEN = HERE.parent / "fixtures" / "golden" / "certificate-tiny-synthetic.json"
TINY = HERE.parent / "fixtures" / "profiles" / "tiny.json"


def synthetic_certificate() -> dict:
    sys.path.insert(0, str(HERE))
    from synthetic import SyntheticDetector, SyntheticZoo

    from nnw.checks.run import check_method
    from nnw.profile import load_profile

    profile = load_profile(str(TINY))
    cert = check_method(SyntheticDetector(0.05), profile, zoo=SyntheticZoo(profile),
                        select=lambda case: case.task == "ResNet8")
    cert.pop("environment")
    for c in cert["clauses"]:  # the rows are hundreds of reads: their number and digest stand for them
        rows = c.pop("rows")
        c["rows_count"] = len(rows)
        c["rows_sha256"] = hashlib.sha256(json.dumps(rows, sort_keys=True).encode()).hexdigest()
    for m in cert["methods"]:
        m.pop("sha256")
    cert["profile"].pop("sha256")
    cert["profile"]["source"] = "fixtures/profiles/tiny.json"
    return cert


def render(cert: dict) -> str:
    return json.dumps(cert, indent=1, sort_keys=True, allow_nan=False) + "\n"


if __name__ == "__main__":
    GOLDEN.parent.mkdir(parents=True, exist_ok=True)
    GOLDEN.write_text(render(synthetic_certificate()))
    print(f"wrote {GOLDEN}")
