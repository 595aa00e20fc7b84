"""Fine-tuning E epochs is built from the cached E − 1 (nnw.zoo.Zoo._resumed): the result equals a
straight E-epoch fine-tuning bit for bit, whichever grid value is asked first."""
from __future__ import annotations

from pathlib import Path

import torch

from nnw.cache import ModelCache
from nnw.modifications import ModificationContext, parse_modification
from nnw.profile import load_profile
from nnw.training import train
from nnw.zoo import Zoo

TINY = load_profile(str(Path(__file__).parent.parent / "fixtures" / "profiles" / "tiny.json"))
IDENTITY = {"name": "ResNet8 init 0", "init": 0}


def _same(a: torch.nn.Module, b: torch.nn.Module) -> bool:
    sa, sb = a.state_dict(), b.state_dict()
    return sa.keys() == sb.keys() and all(torch.equal(sa[k], sb[k]) for k in sa)


def test_resumed_finetuning_equals_a_straight_one_in_any_order(tmp_path):
    torch.set_num_threads(1)
    zoo = Zoo(TINY, ModelCache(tmp_path / "a"), torch.device("cpu"))
    task = zoo.task("ResNet8")
    model = task.build_model(0).eval()
    e3 = parse_modification("finetuning(E=3)")
    straight = e3.apply(model, seed=5, context=ModificationContext(task=task, train=train, device="cpu"))
    via_cache = zoo.modified("ResNet8", model, e3, seed=5, identity=IDENTITY)  # builds E = 1, 2, 3
    assert _same(straight, via_cache)
    assert not _same(model, via_cache)  # it trained
    # another cache, E = 1 asked after E = 3 (its entry was published on the way) and E = 1 first
    other = Zoo(TINY, ModelCache(tmp_path / "b"), torch.device("cpu"))
    e1 = parse_modification("finetuning(E=1)")
    first = other.modified("ResNet8", model, e1, seed=5, identity=IDENTITY)
    assert _same(first, zoo.modified("ResNet8", model, e1, seed=5, identity=IDENTITY))
    assert _same(via_cache, other.modified("ResNet8", model, e3, seed=5, identity=IDENTITY))
