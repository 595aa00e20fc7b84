"""Function-preserving transformations: attacks beyond the standard (adversarial stress section).

A network computes the same function after (i) permuting the units of a hidden layer together
with the next layer's inputs (Hecht-Nielsen 1990), (ii) rescaling a positively homogeneous (ReLU)
unit's incoming weights by c > 0 and its outgoing weights by 1/c (Neyshabur et al. 2015; Dinh et
al. 2017), (iii) flipping a unit's sign where the path is odd, or into a following BatchNorm,
(iv) adding units whose outgoing weights are zero (Yan et al., USENIX Security 2023, "neural
structural obfuscation"). Marks read at fixed weight positions (Uchida-style RTW, NCT) lose
them at no accuracy cost (Pegoraro et al., USENIX Security 2024, "DeepEclipse").

**Where they apply.** The model is traced with ``torch.fx`` (conv/linear/BatchNorm as leaves) and
its hidden tensors are grouped into *channel spaces*: the outputs of the conv/linear layers that
*produce* the space, the channel-wise ops after them (BatchNorm, activations, pooling, flatten of
a 1×1 map) and every tensor added to them (a residual sum joins the spaces of its operands, so
both branches and the identity shortcut are transformed consistently), up to the conv/linear
layers that *consume* it. Spaces that reach the model's input or output, a concatenation, a
grouped convolution or an op this analysis does not know are frozen (left unchanged).

Validity per space: permutation and dummy units need channel-wise ops only; rescaling by c > 0
needs positively homogeneous ops (ReLU, LeakyReLU, max/avg pooling, sums; BatchNorm absorbs it
through its running statistics and affine parameters); a sign flip needs odd ops (identity, tanh,
average pooling, sums) — it is **not valid through ReLU, max pooling, sigmoid, GELU, SiLU**, so in
ReLU networks the only valid flips are *into a BatchNorm*: a conv whose only user is a BatchNorm
has its unit's weights and bias negated, the BatchNorm's running mean and γ negated.

One module over 400 lines on purpose: the four transformations share one tracing of the
network's channel spaces (torch.fx), which is most of the code.
"""
from __future__ import annotations

import math
import operator
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any, ClassVar

import torch
import torch.nn.functional as F
from torch import nn

from nnw.modifications.base import Modification, ModificationContext, check_real, layer_generator, register

_WEIGHT_TYPES = (nn.Conv1d, nn.Conv2d, nn.Conv3d, nn.ConvTranspose1d, nn.ConvTranspose2d, nn.Linear)
_BN_TYPES = (nn.BatchNorm1d, nn.BatchNorm2d, nn.BatchNorm3d)

# Op tags of a channel space: "relu" = positively homogeneous, not odd; "linear" = both;
# "odd" = odd, not homogeneous; "other" = channel-wise only; "bn" = BatchNorm (handled explicitly).
_MODULE_TAGS: dict[type, str] = {
    nn.ReLU: "relu", nn.LeakyReLU: "relu", nn.MaxPool1d: "relu", nn.MaxPool2d: "relu",
    nn.AdaptiveMaxPool2d: "relu", nn.PReLU: "relu",
    nn.Identity: "linear", nn.Dropout: "linear", nn.Dropout2d: "linear", nn.AvgPool1d: "linear",
    nn.AvgPool2d: "linear", nn.AdaptiveAvgPool1d: "linear", nn.AdaptiveAvgPool2d: "linear",
    nn.Upsample: "linear", nn.UpsamplingNearest2d: "linear", nn.UpsamplingBilinear2d: "linear",
    nn.Tanh: "odd", nn.Hardtanh: "odd", nn.Softsign: "odd", nn.Tanhshrink: "odd",
    nn.Sigmoid: "other", nn.GELU: "other", nn.SiLU: "other", nn.Hardswish: "other", nn.ELU: "other",
    nn.ReLU6: "other", nn.Softplus: "other", nn.Mish: "other", nn.Hardsigmoid: "other",
}
_FUNCTION_TAGS: dict[Any, str] = {
    F.relu: "relu", torch.relu: "relu", F.relu_: "relu", torch.relu_: "relu", F.leaky_relu: "relu",
    F.max_pool1d: "relu", F.max_pool2d: "relu", F.adaptive_max_pool2d: "relu",
    F.avg_pool1d: "linear", F.avg_pool2d: "linear", F.adaptive_avg_pool1d: "linear",
    F.adaptive_avg_pool2d: "linear", F.dropout: "linear", F.interpolate: "linear",
    torch.tanh: "odd", F.tanh: "odd", F.hardtanh: "odd",
    torch.sigmoid: "other", F.sigmoid: "other", F.gelu: "other", F.silu: "other", F.hardswish: "other",
    F.relu6: "other", F.elu: "other",
}
_METHOD_TAGS = {"relu": "relu", "relu_": "relu", "tanh": "odd", "tanh_": "odd", "sigmoid": "other",
                "contiguous": "linear", "clone": "linear"}
_ADDS = {operator.add, operator.iadd, torch.add, operator.sub, operator.isub, torch.sub}
_SCALAR_MULS = {operator.mul, operator.imul, torch.mul, operator.truediv, operator.itruediv, torch.div}
_POOL_TO_ONE = {F.adaptive_avg_pool2d, F.adaptive_max_pool2d, F.adaptive_avg_pool1d}
_META_METHODS = {"size", "dim"}
_FLATTENS = {"flatten", "view", "reshape"}


@dataclass
class ChannelSpace:
    """One hidden channel space: who writes it, what runs on it, who reads it."""

    key: str                                               # first producer's weight name (seeding, reports)
    producers: list[str] = field(default_factory=list)     # module names of conv/linear layers writing it
    consumers: list[str] = field(default_factory=list)     # module names reading it as their input
    bns: list[str] = field(default_factory=list)           # BatchNorm modules on it
    tags: set[str] = field(default_factory=set)            # op tags (see _MODULE_TAGS)
    frozen: list[str] = field(default_factory=list)        # reasons it must be left unchanged
    channels: int = 0

    @property
    def transformable(self) -> bool:
        return not self.frozen and bool(self.producers) and bool(self.consumers) and self.channels > 0

    @property
    def positively_homogeneous(self) -> bool:
        return self.tags <= {"relu", "linear", "bn"}

    @property
    def odd(self) -> bool:
        return self.tags <= {"linear", "odd", "bn"}


@dataclass
class Analysis:
    """The channel spaces of a model and the producer→BatchNorm pairs (sign flips into a BN)."""

    spaces: list[ChannelSpace]
    bn_pairs: list[tuple[str, str]]    # (producer module, BatchNorm module) where the BN is the producer's only user

    def transformable(self) -> list[ChannelSpace]:
        return [s for s in self.spaces if s.transformable]


class _Tracer:
    """``torch.fx`` symbolic tracing with conv/linear/BatchNorm modules (and their subclasses) as leaves."""

    @staticmethod
    def trace(model: nn.Module):
        import torch.fx as fx

        class Tracer(fx.Tracer):
            def is_leaf_module(self, m: nn.Module, qualname: str) -> bool:
                if isinstance(m, _WEIGHT_TYPES + _BN_TYPES):
                    return True
                return super().is_leaf_module(m, qualname)

        try:
            return Tracer().trace(model)
        except Exception as exc:  # noqa: BLE001 — data-dependent control flow etc.
            raise ValueError(f"cannot trace {type(model).__name__} with torch.fx to find its channel spaces: "
                             f"{type(exc).__name__}: {exc}") from None


@dataclass
class _Value:
    space: int | None          # union-find id, None for non-tensors / untracked
    layout: str | None = None  # where its units are: "first" (dim 1: conv), "last" (linear), "flat" (2-D: both)
    pooled: bool = False       # spatial size known to be 1 (after a global pool)
    meta: bool = False         # a size/shape value (no channel semantics)


def analyse(model: nn.Module) -> Analysis:
    """Trace ``model`` and return its channel spaces (see the module docstring)."""
    graph = _Tracer.trace(model)
    modules = dict(model.named_modules())
    parent: list[int] = []
    spaces: list[ChannelSpace] = []

    def new(key: str, frozen: str | None = None) -> int:
        parent.append(len(parent))
        spaces.append(ChannelSpace(key=key, frozen=[frozen] if frozen else []))
        return len(parent) - 1

    def find(i: int) -> int:
        while parent[i] != i:
            parent[i] = parent[parent[i]]
            i = parent[i]
        return i

    def union(a: int, b: int) -> int:
        a, b = find(a), find(b)
        if a != b:
            parent[b] = a
            sa, sb = spaces[a], spaces[b]
            sa.producers += sb.producers
            sa.consumers += sb.consumers
            sa.bns += sb.bns
            sa.tags |= sb.tags
            sa.frozen += sb.frozen
        return a

    def freeze(v: _Value | None, reason: str) -> None:
        if v is not None and v.space is not None:
            spaces[find(v.space)].frozen.append(reason)

    values: dict[Any, _Value] = {}

    def arg_values(args: Iterable[Any]) -> list[_Value]:
        out = []
        for a in args:
            if isinstance(a, (list, tuple)):
                out += arg_values(a)
            elif isinstance(a, dict):
                out += arg_values(a.values())
            elif hasattr(a, "op") and a in values:
                out.append(values[a])
        return out

    def channelwise(v: _Value, tag: str, *, pooled: bool | None = None, layout: str | None = None) -> _Value:
        if v.space is None:
            return _Value(None, meta=v.meta)
        spaces[find(v.space)].tags.add(tag)
        return _Value(v.space, v.layout if layout is None else layout, v.pooled if pooled is None else pooled)

    def unknown(node, vals: list[_Value]) -> _Value:
        reason = f"op {node.op}:{getattr(node.target, '__name__', node.target)} not analysed"
        for v in vals:
            freeze(v, reason)
        return _Value(new(str(node.name), reason))

    producer_users: dict[str, list] = {}
    calls: dict[str, int] = {}
    for node in graph.nodes:
        vals = arg_values(list(node.args) + list(node.kwargs.values()))
        tensors = [v for v in vals if v.space is not None]
        if node.op == "placeholder":
            values[node] = _Value(new(node.name, "model input"))
        elif node.op == "output":
            for v in vals:
                freeze(v, "model output")
        elif node.op == "get_attr":
            values[node] = _Value(new(node.name, "constant tensor"))
        elif node.op == "call_module":
            m = modules[node.target]
            x = tensors[0] if len(tensors) == 1 and len(node.args) >= 1 else None
            if isinstance(m, _WEIGHT_TYPES):
                if x is None:
                    values[node] = unknown(node, vals)
                    continue
                conv = not isinstance(m, nn.Linear)
                if conv and getattr(m, "groups", 1) != 1:
                    freeze(x, f"grouped convolution {node.target}")
                    values[node] = _Value(new(node.target, f"grouped convolution {node.target}"))
                    continue
                if not conv and x.layout not in ("last", "flat"):
                    freeze(x, f"{node.target} reads a tensor that is not (batch, features)")
                spaces[find(x.space)].consumers.append(node.target)
                sid = new(f"{node.target}.weight")
                spaces[sid].producers.append(node.target)
                values[node] = _Value(sid, "first" if conv else ("flat" if x.layout == "flat" else "last"))
                calls[node.target] = calls.get(node.target, 0) + 1
                producer_users[node.target] = list(node.users)
            elif isinstance(m, _BN_TYPES) and x is not None:
                if x.layout == "last":
                    freeze(x, f"{node.target} normalizes dim 1, the units are in the last one")
                spaces[find(x.space)].bns.append(node.target)
                values[node] = channelwise(x, "bn")
            elif type(m) in _MODULE_TAGS and x is not None:
                pooled = (isinstance(m, (nn.AdaptiveAvgPool2d, nn.AdaptiveMaxPool2d, nn.AdaptiveAvgPool1d))
                          and m.output_size in (1, (1, 1), (1,)))
                values[node] = channelwise(x, _MODULE_TAGS[type(m)], pooled=pooled or None)
            else:
                values[node] = unknown(node, vals)
        elif node.op == "call_function":
            f = node.target
            x = tensors[0] if tensors else None
            if f in _ADDS and len(tensors) == 2:
                sid = union(tensors[0].space, tensors[1].space)
                spaces[sid].tags.add("linear")
                values[node] = _Value(sid, tensors[0].layout, tensors[0].pooled and tensors[1].pooled)
            elif f in _ADDS and len(tensors) == 1 and not any(v.meta for v in vals):
                values[node] = channelwise(x, "other")  # x + constant: not homogeneous
            elif f in _SCALAR_MULS and len(tensors) == 1 and _times_scalar(node, values):
                values[node] = channelwise(x, "linear")
            elif f in _FUNCTION_TAGS and len(tensors) == 1 and node.args and values.get(node.args[0]) is x:
                pooled = f in _POOL_TO_ONE and (node.args[1:2] in ((1,), ((1, 1),)) or
                                                node.kwargs.get("output_size") in (1, (1, 1)))
                values[node] = channelwise(x, _FUNCTION_TAGS[f], pooled=pooled or None)
            elif f is torch.flatten and len(tensors) == 1 and x.pooled and _flatten_from_1(node):
                values[node] = channelwise(x, "linear", layout="flat")
            elif f is getattr and vals and node.args[1] == "shape":
                values[node] = _Value(None, meta=True)
            elif f is operator.getitem and vals and vals[0].meta:
                values[node] = _Value(None, meta=True)
            else:
                values[node] = unknown(node, vals)
        elif node.op == "call_method":
            name = node.target
            x = tensors[0] if len(tensors) == 1 and node.args and values.get(node.args[0]) is tensors[0] else None
            if name in _META_METHODS and x is not None:
                values[node] = _Value(None, meta=True)
            elif name in _METHOD_TAGS and x is not None:
                values[node] = channelwise(x, _METHOD_TAGS[name])
            elif name in _FLATTENS and x is not None and x.pooled and _flatten_method_ok(node, name):
                values[node] = channelwise(x, "linear", layout="flat")
            elif name in ("add", "add_", "sub", "sub_") and len(tensors) == 2:
                sid = union(tensors[0].space, tensors[1].space)
                spaces[sid].tags.add("linear")
                values[node] = _Value(sid, tensors[0].layout)
            else:
                values[node] = unknown(node, vals)
    # collect the roots, check channel counts and modules used in two spaces
    roots: dict[int, ChannelSpace] = {}
    for i in range(len(spaces)):
        roots.setdefault(find(i), spaces[find(i)])
    where: dict[tuple[str, str], set[int]] = {}
    for r, s in roots.items():
        for role, names in (("p", s.producers), ("c", s.consumers), ("b", s.bns)):
            for n in names:
                where.setdefault((role, n), set()).add(r)
    for (role, n), rs in where.items():
        if len(rs) > 1:
            for r in rs:
                roots[r].frozen.append(f"module {n} is used in several places")
    for s in roots.values():
        s.producers, s.consumers, s.bns = (list(dict.fromkeys(x)) for x in (s.producers, s.consumers, s.bns))
        counts = {_out_channels(modules[p]) for p in s.producers}
        counts |= {_in_channels(modules[c]) for c in s.consumers}
        counts |= {modules[b].num_features for b in s.bns}
        if len(counts) == 1:
            s.channels = counts.pop()
        elif counts:
            s.frozen.append(f"inconsistent channel counts {sorted(counts)}")
        for b in s.bns:
            if not modules[b].affine or not modules[b].track_running_stats:
                s.tags.add("other")  # no affine parameters to absorb a rescaling
        if s.producers:
            s.key = f"{s.producers[0]}.weight"
    pairs = []
    for p, users in producer_users.items():
        if (calls[p] == 1 and len(users) == 1 and users[0].op == "call_module"
                and isinstance(modules[users[0].target], _BN_TYPES)):
            bn = modules[users[0].target]
            if bn.affine and bn.track_running_stats and bn.num_features == _out_channels(modules[p]):
                pairs.append((p, users[0].target))
    return Analysis(list(roots.values()), pairs)


def _times_scalar(node, values) -> bool:
    """``x * a``, ``a * x`` or ``x / a`` with a number ``a`` (homogeneous and odd)."""
    if len(node.args) != 2 or node.kwargs:
        return False
    a, b = node.args
    if node.target in (operator.truediv, operator.itruediv, torch.div):
        return a in values and isinstance(b, (int, float))
    return (a in values and isinstance(b, (int, float))) or (b in values and isinstance(a, (int, float)))


def _flatten_from_1(node) -> bool:
    start = node.args[1] if len(node.args) > 1 else node.kwargs.get("start_dim", 0)
    return start == 1


def _flatten_method_ok(node, name: str) -> bool:
    if name == "flatten":
        return _flatten_from_1(node)
    return len(node.args) == 3 and node.args[2] == -1  # x.view(x.size(0), -1)


def _out_channels(m: nn.Module) -> int:
    if isinstance(m, nn.Linear):
        return m.out_features
    return m.out_channels


def _in_channels(m: nn.Module) -> int:
    if isinstance(m, nn.Linear):
        return m.in_features
    return m.in_channels


def _dims(m: nn.Module) -> tuple[int, int]:
    """(output-unit dim, input-unit dim) of a weight: ConvTranspose stores (in, out, ...)."""
    return (1, 0) if isinstance(m, (nn.ConvTranspose1d, nn.ConvTranspose2d)) else (0, 1)


# -- the transformations (in place, under no_grad) ---------------------------------------------------
def _shape(n: int, dim: int, rank: int) -> list[int]:
    s = [1] * rank
    s[dim] = n
    return s


@torch.no_grad()
def permute_space(modules: dict[str, nn.Module], space: ChannelSpace, perm: torch.Tensor) -> None:
    """New unit i of the space is old unit ``perm[i]`` (producers' rows, BatchNorms, consumers' columns)."""
    for p in space.producers:
        m = modules[p]
        out_dim, _ = _dims(m)
        idx = perm.to(m.weight.device)
        m.weight.copy_(m.weight.index_select(out_dim, idx))
        if m.bias is not None:
            m.bias.copy_(m.bias[idx])
    for b in space.bns:
        m = modules[b]
        idx = perm.to(m.weight.device)
        for t in (m.weight, m.bias, m.running_mean, m.running_var):
            t.copy_(t[idx])
    for c in space.consumers:
        m = modules[c]
        _, in_dim = _dims(m)
        m.weight.copy_(m.weight.index_select(in_dim, perm.to(m.weight.device)))


@torch.no_grad()
def scale_space(modules: dict[str, nn.Module], space: ChannelSpace, s: torch.Tensor) -> None:
    """Every tensor of the space multiplied by ``s`` per unit: producers' rows (and biases) × s,
    BatchNorms: running mean × s, running var + eps × s², γ × |s|, β × s; consumers' columns ÷ s.
    Exact when s > 0 on a positively homogeneous space, or s = ±1 on an odd one."""
    for p in space.producers:
        m = modules[p]
        out_dim, _ = _dims(m)
        f = s.to(m.weight)
        m.weight.mul_(f.view(_shape(len(f), out_dim, m.weight.dim())))
        if m.bias is not None:
            m.bias.mul_(f)
    for b in space.bns:
        m = modules[b]
        f = s.to(m.weight)
        m.running_mean.mul_(f)
        m.running_var.add_(m.eps).mul_(f * f).sub_(m.eps)
        m.weight.mul_(f.abs())
        m.bias.mul_(f)
    for c in space.consumers:
        m = modules[c]
        _, in_dim = _dims(m)
        f = s.to(m.weight)
        m.weight.div_(f.view(_shape(len(f), in_dim, m.weight.dim())))


@torch.no_grad()
def scale_into_bn(producer: nn.Module, bn: nn.Module, s: torch.Tensor) -> None:
    """Producer's units × s (any nonzero s), absorbed by the BatchNorm that is their only user:
    running mean × s, running var + eps × s², γ × sign(s). The BatchNorm's output is unchanged."""
    out_dim, _ = _dims(producer)
    f = s.to(producer.weight)
    producer.weight.mul_(f.view(_shape(len(f), out_dim, producer.weight.dim())))
    if producer.bias is not None:
        producer.bias.mul_(f)
    g = s.to(bn.weight)
    bn.running_mean.mul_(g)
    bn.running_var.add_(bn.eps).mul_(g * g).sub_(bn.eps)
    bn.weight.mul_(torch.sign(g))


def _min_factor(modules: dict[str, nn.Module], bns: Iterable[str], n: int) -> torch.Tensor:
    """Per unit, the smallest factor s > 0 keeping every BatchNorm's running variance >= 0."""
    low = torch.zeros(n, dtype=torch.float64)
    for b in bns:
        m = modules[b]
        var = m.running_var.detach().double().cpu().clamp_min(0)
        low = torch.maximum(low, torch.sqrt(m.eps / (var + m.eps)))
    return low


@torch.no_grad()
def insert_units(modules: dict[str, nn.Module], space: ChannelSpace, slots: torch.Tensor,
                 g: torch.Generator) -> None:
    """Insert ``len(slots)`` units at positions ``slots`` of the enlarged space: incoming weights drawn
    like the layer's (N(0, std) of its weights), BatchNorm entries copied from random existing units,
    outgoing weights zero — so the function is unchanged."""
    n, k = space.channels, int(slots.numel())
    total = n + k
    is_new = torch.zeros(total, dtype=torch.bool)
    is_new[slots] = True
    old_slots = torch.nonzero(~is_new).squeeze(1)

    def grow(t: torch.Tensor, dim: int, fill: torch.Tensor) -> torch.Tensor:
        shape = list(t.shape)
        shape[dim] = total
        out = torch.empty(shape, dtype=t.dtype, device=t.device)
        out.index_copy_(dim, old_slots.to(t.device), t)
        out.index_copy_(dim, slots.to(t.device), fill.to(t))
        return out

    for p in space.producers:
        m = modules[p]
        out_dim, _ = _dims(m)
        shape = list(m.weight.shape)
        shape[out_dim] = k
        std = float(m.weight.detach().float().std()) if m.weight.numel() > 1 else 0.0
        fill = torch.randn(shape, generator=g) * std
        m.weight = nn.Parameter(grow(m.weight.detach(), out_dim, fill))
        if m.bias is not None:
            bstd = float(m.bias.detach().float().std()) if m.bias.numel() > 1 else 0.0
            m.bias = nn.Parameter(grow(m.bias.detach(), 0, torch.randn(k, generator=g) * bstd))
        _set_out(m, total)
    src = torch.randint(0, n, (k,), generator=g)
    for b in space.bns:
        m = modules[b]
        m.weight = nn.Parameter(grow(m.weight.detach(), 0, m.weight.detach().cpu()[src]))
        m.bias = nn.Parameter(grow(m.bias.detach(), 0, m.bias.detach().cpu()[src]))
        m.running_mean = grow(m.running_mean, 0, m.running_mean.cpu()[src])
        m.running_var = grow(m.running_var, 0, m.running_var.cpu()[src])
        m.num_features = total
    for c in space.consumers:
        m = modules[c]
        _, in_dim = _dims(m)
        shape = list(m.weight.shape)
        shape[in_dim] = k
        m.weight = nn.Parameter(grow(m.weight.detach(), in_dim, torch.zeros(shape)))
        _set_in(m, total)


def _set_out(m: nn.Module, n: int) -> None:
    if isinstance(m, nn.Linear):
        m.out_features = n
    else:
        m.out_channels = n


def _set_in(m: nn.Module, n: int) -> None:
    if isinstance(m, nn.Linear):
        m.in_features = n
    else:
        m.in_channels = n


def _count(p: float, n: int) -> int:
    return int(round(p / 100.0 * n))


def cyclic_permutation(n: int, k: int, g: torch.Generator) -> torch.Tensor:
    """A permutation of range(n) moving ``k`` randomly chosen units along one random cycle (every
    chosen unit moves; k < 2 gives the identity)."""
    perm = torch.arange(n)
    if k < 2:
        return perm
    chosen = torch.randperm(n, generator=g)[:k]
    perm[chosen] = chosen.roll(1)
    return perm


class _FunctionPreserving(Modification):
    """Common part: trace, transform each valid space, record where it applied and why not elsewhere."""

    needs_training: ClassVar[bool] = False

    def coverage(self, model: nn.Module) -> dict[str, Any]:
        """Where this transformation applies to ``model`` and where not (with the reason)."""
        analysis = analyse(model)
        applied, skipped = self._plan(analysis)
        return {"applied": applied, "not_valid": skipped}

    def _plan(self, analysis: Analysis) -> tuple[list[str], dict[str, str]]:
        applied, skipped = [], {}
        for s in analysis.spaces:
            if not s.producers:
                continue
            if s.transformable:
                applied.append(s.key)
            else:
                skipped[s.key] = "; ".join(dict.fromkeys(s.frozen)) or "no consumer"
        return applied, skipped


@register
class Permutation(_FunctionPreserving):
    """``permutation(P=...)``: in every hidden channel space, P % of the units moved along one random
    cycle, together with the next layers' inputs (and the BatchNorms, residual branches in between)."""

    family: ClassVar[str] = "permutation"

    def __init__(self, P: float = 100.0) -> None:
        super().__init__({"P": check_real("P", P, low=0.0, high=100.0, what="percentage of units permuted")})

    def _modify(self, model: nn.Module, *, seed: int, context: ModificationContext | None) -> None:
        analysis = analyse(model)
        modules = dict(model.named_modules())
        for s in analysis.transformable():
            g = layer_generator(seed, f"permutation:{s.key}")
            permute_space(modules, s, cyclic_permutation(s.channels, _count(self._params["P"], s.channels), g))


@register
class Rescaling(_FunctionPreserving):
    """``rescaling(c=...)``: each unit of every positively homogeneous (ReLU) space scaled by a factor
    drawn log-uniformly in [1/c, c] — incoming weights × f, outgoing ÷ f, BatchNorms in between
    adjusted. Not valid (left unchanged) on spaces with non-homogeneous ops (sigmoid, tanh, GELU)."""

    family: ClassVar[str] = "rescaling"

    def __init__(self, c: float = 4.0) -> None:
        super().__init__({"c": check_real("c", c, low=1.0, high=1e6, what="largest rescaling factor")})

    def _plan(self, analysis: Analysis) -> tuple[list[str], dict[str, str]]:
        applied, skipped = super()._plan(analysis)
        for s in analysis.spaces:
            if s.key in applied and not s.positively_homogeneous:
                applied.remove(s.key)
                skipped[s.key] = f"not positively homogeneous (ops {sorted(s.tags - {'relu', 'linear', 'bn'})})"
        return applied, skipped

    def _modify(self, model: nn.Module, *, seed: int, context: ModificationContext | None) -> None:
        analysis = analyse(model)
        modules = dict(model.named_modules())
        log_c = math.log(self._params["c"])
        for s in analysis.transformable():
            if not s.positively_homogeneous:
                continue
            g = layer_generator(seed, f"rescaling:{s.key}")
            f = torch.exp((torch.rand(s.channels, generator=g, dtype=torch.float64) * 2 - 1) * log_c)
            f = torch.maximum(f, _min_factor(modules, s.bns, s.channels))
            scale_space(modules, s, f)


@register
class SignFlip(_FunctionPreserving):
    """``sign_flip(P=...)``: P % of the units of each layer negated where that is valid: into the
    BatchNorm that is a conv's only user (γ and running mean negated), and through odd spaces
    (identity, tanh, average pooling: outgoing weights negated too). Not valid through ReLU,
    max pooling, sigmoid, GELU, SiLU (ReLU(-x) ≠ -ReLU(x))."""

    family: ClassVar[str] = "sign_flip"

    def __init__(self, P: float = 50.0) -> None:
        super().__init__({"P": check_real("P", P, low=0.0, high=100.0, what="percentage of units negated")})

    def _plan(self, analysis: Analysis) -> tuple[list[str], dict[str, str]]:
        applied, skipped = super()._plan(analysis)
        into_bn = {p for p, _ in analysis.bn_pairs}
        out = [f"{p}.weight (into {b})" for p, b in analysis.bn_pairs]
        for s in analysis.spaces:
            if s.key in applied and s.odd:
                out.append(s.key)
            elif s.key in applied:
                skipped[s.key] = (f"not odd (ops {sorted(s.tags - {'linear', 'odd', 'bn'})}); "
                                  + ("flipped into its BatchNorm instead" if any(p in into_bn for p in s.producers)
                                     else "left unchanged"))
        return out, skipped

    def _modify(self, model: nn.Module, *, seed: int, context: ModificationContext | None) -> None:
        analysis = analyse(model)
        modules = dict(model.named_modules())
        p = self._params["P"]

        def signs(n: int, key: str) -> torch.Tensor:
            g = layer_generator(seed, f"sign_flip:{key}")
            s = torch.ones(n, dtype=torch.float64)
            s[torch.randperm(n, generator=g)[:_count(p, n)]] = -1.0
            return s

        for prod, bn in analysis.bn_pairs:
            scale_into_bn(modules[prod], modules[bn], signs(_out_channels(modules[prod]), f"{prod}.weight"))
        for s in analysis.transformable():
            if s.odd:
                scale_space(modules, s, signs(s.channels, f"space:{s.key}"))


@register
class DummyNeurons(_FunctionPreserving):
    """``dummy_neurons(P=...)``: P % more units in every hidden channel space, inserted at random
    positions, with random incoming weights and zero outgoing weights (the model's shapes change)."""

    family: ClassVar[str] = "dummy_neurons"

    def __init__(self, P: float = 25.0) -> None:
        super().__init__({"P": check_real("P", P, low=0.0, high=1000.0, what="percentage of units added")})

    def _modify(self, model: nn.Module, *, seed: int, context: ModificationContext | None) -> None:
        analysis = analyse(model)
        modules = dict(model.named_modules())
        for s in analysis.transformable():
            k = _count(self._params["P"], s.channels)
            if k == 0:
                continue
            g = layer_generator(seed, f"dummy_neurons:{s.key}")
            slots = torch.randperm(s.channels + k, generator=g)[:k].sort().values
            insert_units(modules, s, slots, g)


__all__ = ["Analysis", "ChannelSpace", "DummyNeurons", "Permutation", "Rescaling", "SignFlip", "analyse",
           "cyclic_permutation", "insert_units", "permute_space", "scale_into_bn", "scale_space"]
