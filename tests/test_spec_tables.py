"""The transcription of NNW-TEC V1.0's published result tables (nnw/spec/nnw-tec-v1.0.json).

Expected values below were read by hand from nnw-tec-v1.0.md (Tables 2-23), not from the JSON.
"""
from __future__ import annotations

import json
from importlib import resources

import pytest

from nnw.spec import SpecTableError, load_spec_tables, published_rows, table_columns

S = [0.001, 0.005, 0.01, 0.05, 0.1, 0.5, 1]
E = [1, 3, 5, 7, 10]
B = [16, 8, 6, 4, 2]
P = [10, 20, 50, 80, 90]
ALPHA = [0, 5, 50, 90]


@pytest.fixture(scope="module")
def spec():
    return load_spec_tables()


def test_file_parses_and_header():
    raw = resources.files("nnw.spec").joinpath("nnw-tec-v1.0.json").read_text(encoding="utf-8")
    data = json.loads(raw)
    assert data["spec_version"] == "NNW-TEC-V1.0"
    assert data["source"] == "nnw-tec-v1.0.md"
    assert data["defects_applied"] and all(isinstance(d, str) for d in data["defects_applied"])
    assert any(d.startswith("Table 21") for d in data["defects_applied"])
    assert data["thresholds"] == {"nct_alpha": 0.05, "rtw_ber": 0.0, "tbw_share": 0.40}
    assert sorted(data["tables"], key=int) == [str(n) for n in range(2, 24)]


def test_loader_is_cached(spec):
    assert load_spec_tables() is spec
    assert load_spec_tables("NNW-TEC-V1.0") is spec


def test_grids(spec):
    g = spec["grids"]
    assert g["NCT"] == {"alpha": ALPHA, "N": [64, 512, 4096, 16144], "robustness_N": 512}
    assert g["RTW"] == {"lam": [0.001, 0.01, 0.1, 1], "robustness_lam": 0.01}
    assert g["TBW"] == {"rho": [1, 5, 10, 50, 100], "robustness_rho": 10}
    assert g["noise"]["S"] == S
    assert g["finetuning"]["E"] == E
    assert g["quantization"]["B"] == B
    assert g["pruning"]["P"] == P


ROW_COUNTS = {
    "2": 32, "3": 5,
    "4": 28, "5": 28, "6": 20, "7": 20, "8": 20, "9": 20, "10": 20, "11": 20,
    "12": 8, "13": 14, "14": 10, "15": 10, "16": 10,
    "17": 10, "18": 14, "19": 10, "20": 10, "21": 10,
    "22": 8, "23": 3,
}


@pytest.mark.parametrize("num,count", sorted(ROW_COUNTS.items(), key=lambda kv: int(kv[0])))
def test_row_counts_and_shape(spec, num, count):
    t = spec["tables"][num]
    assert len(t["rows"]) == count
    assert all(len(r) == len(t["columns"]) for r in t["rows"])
    assert t["title"] and isinstance(t.get("notes", []), list)


NCT_ROB = {"4": ("noise", "S", "VGG16"), "5": ("noise", "S", "ResNet8"),
           "6": ("finetuning", "E", "VGG16"), "7": ("finetuning", "E", "ResNet8"),
           "8": ("quantization", "B", "VGG16"), "9": ("quantization", "B", "ResNet8"),
           "10": ("pruning", "P", "VGG16"), "11": ("pruning", "P", "ResNet8")}
GRID = {"S": S, "E": E, "B": B, "P": P}


@pytest.mark.parametrize("num", sorted(NCT_ROB, key=int))
def test_nct_robustness_layout(spec, num):
    mod, param, model = NCT_ROB[num]
    t = spec["tables"][num]
    assert (t["method"], t["property"], t["modification"], t["param"], t["model"]) == \
        ("NCT", "robustness", mod, param, model)
    assert t["columns"] == [param, "alpha", "corr", "error"]
    assert t["error_unit"] == "percent"
    assert [(r[0], r[1]) for r in t["rows"]] == [(p, a) for p in GRID[param] for a in ALPHA]


@pytest.mark.parametrize("num,mod,param,fig", [
    ("13", "noise", "S", "ber"), ("14", "finetuning", "E", "ber"), ("15", "quantization", "B", "ber"),
    ("16", "pruning", "P", "ber"), ("18", "noise", "S", "share_percent"),
    ("19", "finetuning", "E", "share_percent"), ("20", "quantization", "B", "share_percent"),
    ("21", "pruning", "P", "share_percent")])
def test_rtw_tbw_robustness_layout(spec, num, mod, param, fig):
    t = spec["tables"][num]
    assert (t["property"], t["modification"], t["param"]) == ("robustness", mod, param)
    assert t["method"] == ("RTW" if int(num) <= 16 else "TBW")
    assert t["columns"] == [param, "model", fig, "error"]
    assert t["error_unit"] == "percent"
    assert [(r[0], r[1]) for r in t["rows"]] == [(p, m) for p in GRID[param] for m in ("VGG16", "ResNet8")]


def one(table, col, **filters):
    rows = published_rows(table, **filters)
    assert len(rows) == 1, (table, filters, rows)
    return rows[0][col]


# (table, column, filters, value as printed in nnw-tec-v1.0.md)
SPOT = [
    ("2", "impact_top1", dict(model="ResNet8", alpha=90, N=16144), 175),
    ("2", "impact_top1", dict(model="VGG16", alpha=0, N=16144), 14),
    ("2", "impact_top1", dict(model="ResNet8", alpha=90, N=4096), 30),
    ("2", "impact_top1", dict(model="ResNet8", alpha=50, N=16144), 26),
    ("3", "impact", dict(model="DeepLabV3", metric="mIoU"), 8.7),
    ("3", "impact", dict(model="pix2pix", metric="SSIM"), 3.4),
    ("3", "impact", dict(model="RDN", metric="PSNR"), 0),
    ("4", "error", dict(S=1, alpha=50), 6.571),
    ("4", "corr", dict(S=1, alpha=5), 0.996),
    ("4", "error", dict(S=0.5, alpha=0), 85.3),
    ("5", "error", dict(S=0.05, alpha=50), 1.7),   # printed "01.7"
    ("5", "corr", dict(S=0.01, alpha=5), 0.820),
    ("5", "corr", dict(S=1, alpha=90), 0.887),
    ("6", "error", dict(E=10, alpha=5), 0.1),
    ("7", "corr", dict(E=1, alpha=50), 0.983),
    ("8", "corr", dict(B=4, alpha=90), 0.99),
    ("8", "error", dict(B=2, alpha=0), 841),
    ("9", "error", dict(B=2, alpha=50), 161),
    ("10", "error", dict(P=80, alpha=90), 288),
    ("10", "corr", dict(P=10, alpha=5), 0.996),
    ("11", "error", dict(P=50, alpha=5), 100),
    ("11", "corr", dict(P=90, alpha=50), 0.940),
    ("12", "ber", dict(model="ResNet8", lam=0.001), 0.25),
    ("12", "impact_top1", dict(model="VGG16", lam=1), 11),
    ("13", "error", dict(S=0.1, model="ResNet8"), 19),
    ("13", "error", dict(S=1, model="VGG16"), 407),
    ("15", "error", dict(B=6, model="ResNet8"), 1.7),
    ("16", "error", dict(P=50, model="VGG16"), 10.9),
    ("17", "impact_top1", dict(model="VGG16", rho=50), 28),
    ("17", "share_percent", dict(model="ResNet8", rho=10), 100),
    ("18", "share_percent", dict(S=0.05, model="ResNet8"), 92),
    ("18", "error", dict(S=1, model="VGG16"), 597),
    ("20", "share_percent", dict(B=4, model="ResNet8"), 54),
    ("20", "error", dict(B=2, model="VGG16"), 683),
    # Table 21: VGG16 columns swapped in the source, stored corrected
    ("21", "share_percent", dict(P=80, model="VGG16"), 14),
    ("21", "error", dict(P=80, model="VGG16"), 600),
    ("21", "share_percent", dict(P=10, model="VGG16"), 100),
    ("21", "error", dict(P=90, model="VGG16"), 682),
    ("21", "share_percent", dict(P=50, model="ResNet8"), 30),   # ResNet8 not swapped
    ("21", "error", dict(P=50, model="ResNet8"), 161),
    ("22", "impact", dict(method="NCT", model="ResNet8", N=16144, alpha=90), 192),
    ("22", "impact", dict(method="RTW", model="ResNet8"), 5),
    ("22", "impact", dict(method="TBW", model="VGG16", rho=10), 7),
    ("23", "batch_iterations_to_insert", dict(method="TBW"), 504),
    ("23", "increased_batch_iteration_time_percent", dict(method="RTW"), 16.64),
    ("23", "increased_batch_iteration_time_percent", dict(method="TBW"), 62.69),
]


@pytest.mark.parametrize("table,col,filters,expected", SPOT,
                         ids=[f"T{t}-{c}-{'-'.join(f'{k}={v}' for k, v in f.items())}" for t, c, f, _ in SPOT])
def test_spot_values(table, col, filters, expected):
    assert one(table, col, **filters) == pytest.approx(expected)


def test_table21_vgg16_columns_corrected():
    vgg = published_rows("21", model="VGG16")
    assert [r["share_percent"] for r in vgg] == [100, 100, 93, 14, 14]
    assert [r["error"] for r in vgg] == [0, 2, 15, 600, 682]


def test_whole_columns_by_hand():
    assert [r["error"] for r in published_rows("13", model="ResNet8")] == [0, 0.3, 0.1, 3, 19, 240, 354]
    assert all(r["ber"] == 0 for n in ("13", "14", "15", "16") for r in published_rows(n))
    assert all(r["share_percent"] == 100 and r["error"] == 0 for r in published_rows("19"))
    assert [r["corr"] for r in published_rows("9", alpha=0)] == [0.748, 0.748, 0.747, 0.744, 0.644]


def test_published_rows_filtering():
    rows = published_rows("4", S=0.1, alpha=5)
    assert rows == [{"S": 0.1, "alpha": 5, "corr": 0.999, "error": 1.5}]
    assert len(published_rows("4")) == 28
    assert len(published_rows("4", S=0.1)) == 4
    assert len(published_rows("2", model="VGG16")) == 16
    assert published_rows("2", model="VGG16", N=3) == []
    assert published_rows(4, S=0.1, alpha=5) == rows   # int table number accepted
    # float tolerance: 0.1 computed differently still matches
    assert len(published_rows("13", S=0.3 - 0.2)) == 2
    # returned dicts are copies
    rows[0]["error"] = -1
    assert published_rows("4", S=0.1, alpha=5)[0]["error"] == 1.5
    assert table_columns("17") == ["model", "rho", "impact_top1", "share_percent"]


def test_unknown_table_column_version():
    with pytest.raises(ValueError, match="unknown table"):
        published_rows("1")
    with pytest.raises(KeyError):
        published_rows("24")
    with pytest.raises(SpecTableError, match="no column"):
        published_rows("4", lam=0.01)
    with pytest.raises(ValueError, match="unknown spec version"):
        load_spec_tables("NNW-TEC-V9")
