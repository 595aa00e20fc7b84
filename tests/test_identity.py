"""A method's identity is its code: a method that changes its code but not its ``version`` gets new
cache entries (nnw/methods/identity.py)."""
from __future__ import annotations

import importlib
import sys
import textwrap

from nnw.checks.common import marked_identity
from nnw.methods.identity import method_identity

METHOD = """
from nnw.methods.registry import get_method

class Mine(type(get_method("NCT"))):
    name, version = "Mine", "1.0"
    {extra}
"""


def _load(tmp_path, package: str, extra: str):
    root = tmp_path / package
    root.mkdir()
    (root / "__init__.py").write_text("")
    (root / "method.py").write_text(textwrap.dedent(METHOD.format(extra=extra)))
    sys.path.insert(0, str(tmp_path))
    try:
        return importlib.import_module(f"{package}.method").Mine()
    finally:
        sys.path.remove(str(tmp_path))


def test_changed_code_same_version_is_another_method(tmp_path):
    a = _load(tmp_path, "nnw_identity_a", "pass")
    b = _load(tmp_path, "nnw_identity_b", "def detect(self, model, key, *, prepare=None):\n        return None")
    same = _load(tmp_path, "nnw_identity_c", "pass")
    assert (a.name, a.version) == (b.name, b.version)
    assert method_identity(a) != method_identity(b)  # the cache can never hand b a's models
    assert method_identity(a) == method_identity(same)  # same code: same models
    assert marked_identity("ResNet8", a, {}, 0, 0) != marked_identity("ResNet8", b, {}, 0, 0)
