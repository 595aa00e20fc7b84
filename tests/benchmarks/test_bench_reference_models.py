"""The reference-model benchmark (``python -m tests.benchmarks.reference_models``) runs end to end.

The real measurement is the script on the embedded profile with 5 seeds (figures in the README's
Performance section); here it runs on the tiny profile with one seed, so the table it prints keeps
working. Nothing is timed or asserted about speed.
"""
from __future__ import annotations

from pathlib import Path

from tests.benchmarks.reference_models import main, measure

TINY = str(Path(__file__).parents[2] / "fixtures" / "profiles" / "tiny.json")


def test_reference_models_table_runs_on_the_tiny_profile(capsys):
    result = measure(TINY, ["ResNet8", "RDN"], [0], fp32_reference=False, log=lambda m: None)
    row = result["tasks"]["ResNet8"]
    assert row["measure"] == "top1" and len(row["runs"]) == 1 and row["throughput_chosen"] > 0
    assert set(result["tasks"]["RDN"]["baselines"]) >= {"bicubic"}
    assert main(["--profile", TINY, "--tasks", "VGG16", "--seeds", "0", "1", "--no-fp32-reference"]) == 0
    out = capsys.readouterr().out
    assert "| VGG16 |" in out and "chosen path on this CPU" in out
