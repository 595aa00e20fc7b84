"""NCT insertion + detection cost at the spec's largest key, N = 16144 (NNW-TEC §7.2.7, Table 2).

Target (issue: computational cost): under 1 ms on CPU. Also Spearman detection against
scipy.stats.spearmanr on the same vectors, in the same run.
"""
import pytest
import scipy.stats as st
import torch

from nnw.methods.nct import NCT
from nnw.metrics import correlation_detection
from nnw.models import build_model

N = 16144


def _skip_if_disabled(benchmark):
    if benchmark.disabled:
        pytest.skip("benchmarks need a serial run (pytest-benchmark is disabled under xdist)")


@pytest.fixture(scope="module")
def vgg16():
    return build_model("VGG16", seed=0)


def test_nct_insert_and_detect_n16144(benchmark, vgg16):
    _skip_if_disabled(benchmark)
    nct = NCT()
    model = vgg16

    seeds = iter(range(1, 10_000))

    def setup():  # a fresh single-use key per round; key generation is not timed
        return (nct.keygen(model, seed=next(seeds), config={"N": N}),), {}

    def run(key):
        nct.insert_(model, key)
        return nct.detect(model, key)

    det = benchmark.pedantic(run, setup=setup, rounds=20, warmup_rounds=2)
    assert det.present


def test_spearman_detection_n16144(benchmark):
    _skip_if_disabled(benchmark)
    x = torch.randn(N, generator=torch.Generator().manual_seed(0))
    y = x + torch.randn(N, generator=torch.Generator().manual_seed(1))
    det = benchmark.pedantic(lambda: correlation_detection(x, y), rounds=50, warmup_rounds=3)
    assert det.present


def test_scipy_spearmanr_n16144(benchmark):
    _skip_if_disabled(benchmark)
    x = torch.randn(N, generator=torch.Generator().manual_seed(0)).double().numpy()
    y = x + torch.randn(N, generator=torch.Generator().manual_seed(1)).double().numpy()
    res = benchmark.pedantic(lambda: st.spearmanr(x, y), rounds=50, warmup_rounds=3)
    assert res.statistic > 0.5
