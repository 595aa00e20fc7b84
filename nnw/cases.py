"""The conformance cases of a profile: method × task × configuration × Modification × Parameter.

Each case has a readable, deterministic id (``NCT-ResNet8-alpha5-pruning-P50``) so ``-k NCT``,
``-k "RTW and quantization"``, ``-k VGG16`` select what a user expects, and an ``xdist_group``
shared by every case that uses the same marked models. Which cases exist for a method follows
its capability tags (``nnw.methods.base.Tags``) and the profile's grids (``nnw/profiles/*.json``).
"""
from __future__ import annotations

import itertools
from dataclasses import dataclass, field
from typing import Any

from nnw.profile import Profile



@dataclass(frozen=True)
class Case:
    property: str                 # imperceptibility | robustness | false_alarms | overwriting | fingerprint_*
    method: str
    task: str
    config: tuple = ()            # ((key, value), ...) — hashable
    modification: str | None = None   # canonical Modification name
    table: str | None = None
    id: str = ""
    group: str = ""
    extra: tuple = field(default=())

    def __repr__(self) -> str:  # stable and short: allure's history id and parameters use it
        return self.id

    @property
    def config_dict(self) -> dict[str, Any]:
        return dict(self.config)


def _num(v) -> str:
    return f"{v:g}" if isinstance(v, float) else str(v)


def configs(grid: dict[str, list]) -> list[tuple[tuple, str]]:
    """All configurations of a grid, with the id part naming only the varying keys."""
    keys = list(grid)
    out = []
    for values in itertools.product(*(grid[k] for k in keys)):
        cfg = tuple(zip(keys, values))
        label = "-".join(f"{k}{_num(v)}" for k, v in cfg if len(grid[k]) > 1)
        out.append((cfg, label))
    return out


def case_id(*parts: str) -> str:
    return "-".join(p for p in parts if p)


def table_for(method: str, family: str, task: str) -> str | None:
    """The NNW-TEC robustness table that (method, Modification family, task) reproduces (spec data)."""
    from nnw.spec.technologies import robustness_table

    return robustness_table(method, family, task)


def method_grid(profile: Profile, method, section: str) -> dict[str, list]:
    """The profile's grid of ``method`` for ``section``, else its default configuration."""
    grid = profile.method_grid(method.name, section)
    if grid:
        return grid
    if section == "imperceptibility_other_tasks":
        return method_grid(profile, method, "robustness")
    default = dict(getattr(method, "default_config", None) or {})
    return {k: [v] for k, v in default.items()}


def modifications(profile: Profile) -> list[str]:
    from nnw.modifications import make_modification

    names = []
    for family, grid in profile.modification_grid().items():
        for values in itertools.product(*grid.values()):
            names.append(make_modification(family, **dict(zip(grid.keys(), values))).name)
    return names


# The weakest value of each family's Parameter (integrity must catch even these).
_WEAKEST = {"noise": ("S", min), "pruning": ("P", min), "random_pruning": ("P", min), "quantization": ("B", max),
            "finetuning": ("E", min), "distillation": ("E", min)}


def weakest(profile: Profile) -> list:
    from nnw.modifications import make_modification

    out = []
    for family, grid in profile.modification_grid().items():
        if family in _WEAKEST:
            name, pick = _WEAKEST[family]
            params = {k: v[0] for k, v in grid.items()}
            params[name] = pick(grid[name])
            out.append(make_modification(family, **params))
    return out


def inserts(method) -> bool:
    """Whether ``method`` can insert a mark, whatever its tags say: it offers ``embed`` or
    ``training_hook`` beyond the protocol's defaults. Such a method is certified as active: a
    "passive" declaration removes no mandatory clause (the certificate issue)."""
    from nnw.methods.base import TraceabilityMethod

    cls = type(method)
    return any(callable(getattr(cls, n, None)) and getattr(cls, n) is not getattr(TraceabilityMethod, n)
               for n in ("embed", "training_hook"))


def is_active(method) -> bool:
    """Active (watermark) clauses apply: declared active, or able to insert (:func:`inserts`)."""
    return method.tags.kind == "active" or inserts(method)


def build_cases(profile: Profile, methods: list) -> dict[str, list[Case]]:
    """Every applicable case of the profile for the given method objects, by property."""
    from nnw.modifications import parse_modification
    from nnw.spec.technologies import imperceptibility_table

    out: dict[str, list[Case]] = {k: [] for k in ("imperceptibility", "robustness", "false_alarms", "cross_actor",
                                                   "overwriting",
                                                   "fingerprint_unicity", "fingerprint_robustness", "integrity")}
    mods = [parse_modification(n) for n in modifications(profile)]
    for method in methods:
        tags = method.tags
        active = is_active(method)
        tasks = [t for t in profile.tasks if profile.tasks[t]["task"] in tags.tasks]
        rob_grid = method_grid(profile, method, "robustness")
        rob_cfgs = configs(rob_grid)
        for task in tasks:
            classification = profile.tasks[task]["task"] == "classification"
            if active:
                section = "imperceptibility" if classification else "imperceptibility_other_tasks"
                # an imperceptibility case whose configuration is a robustness one shares its marked models
                rob_groups = {tuple(sorted(c)): case_id(method.name, task, lab) for c, lab in rob_cfgs}
                for cfg, label in configs(method_grid(profile, method, section)):
                    tid = case_id(method.name, task, label)
                    group = rob_groups.get(tuple(sorted(cfg)), tid) if classification else tid
                    out["imperceptibility"].append(Case("imperceptibility", method.name, task, cfg, None,
                                                        imperceptibility_table(method.name, classification),
                                                        tid, group))
            if not classification and active:
                continue  # robustness tables of NNW-TEC cover the classification task
            if active:  # mandatory for every active method, whatever it declares: a
                # method that neither detects nor decodes fails them (nnw.checks.campaign)
                figure4 = tags.multi_mark and "overwriting" in profile.data["methods"].get(method.name, {})
                for cfg, label in (rob_cfgs or [((), "")]):
                    group = case_id(method.name, task, label)
                    for mod in mods:
                        if mod.family == "overwriting" and figure4:
                            continue  # covered by the Figure 4 case
                        out["robustness"].append(Case("robustness", method.name, task, cfg, mod.name,
                                                      table_for(method.name, mod.family, task),
                                                      case_id(method.name, task, label, mod.id), group))
                    for mod in [None] + [m for m in mods if m.family != "overwriting"]:
                        out["false_alarms"].append(Case("false_alarms", method.name, task, cfg,
                                                        None if mod is None else mod.name, None,
                                                        case_id(method.name, task, label, "unmodified" if mod is None else mod.id),
                                                        group))
                    out["cross_actor"].append(Case("cross_actor", method.name, task, cfg, None, None,
                                                   case_id(method.name, task, label, "cross-Actor"), group))
                if figure4:
                    cfg, label = rob_cfgs[0]
                    out["overwriting"].append(Case("overwriting", method.name, task, cfg, None, "F4",
                                                   case_id(method.name, task, "overwriting"), case_id(method.name, task)))
            if (tags.integrity or tags.fingerprints) and classification:
                # integrity (§3): unmodified, and each family at its weakest grid value. Fingerprinting
                # methods verify fingerprinted (unmarked) models, watermarks their marked models.
                if tags.fingerprints:
                    icfgs = [(tuple((k, v[0]) for k, v in rob_grid.items() if k != "alpha"), None)]
                else:
                    icfgs = rob_cfgs
                for cfg, label in icfgs:
                    group = (case_id(method.name, task, "fingerprint") if label is None
                             else case_id(method.name, task, label))
                    for mod in [None] + weakest(profile):
                        out["integrity"].append(Case("integrity", method.name, task, cfg,
                                                     None if mod is None else mod.name, None,
                                                     case_id(method.name, task, label or "", "integrity", "unmodified" if mod is None else mod.id),
                                                     group))
            if tags.fingerprints:
                cfg = tuple((k, v[0]) for k, v in rob_grid.items() if k != "alpha")
                group = case_id(method.name, task, "fingerprint")
                out["fingerprint_unicity"].append(Case("fingerprint_unicity", method.name, task, cfg, None, None,
                                                       case_id(method.name, task), group))
                for mod in mods:
                    if mod.family == "overwriting":
                        continue
                    out["fingerprint_robustness"].append(Case("fingerprint_robustness", method.name, task, cfg,
                                                              mod.name, None, case_id(method.name, task, mod.id), group))
    return out


_FAMILY_SIZES: dict = {}


def family_size(profile: Profile, method, prop: str) -> int:
    """How many clauses of property ``prop`` the profile defines for ``method``: the size of the
    family a multiple-testing correction divides its level by (whatever ``-k`` selects). Built once
    per (profile, method) object, not once per clause."""
    key = (id(profile), id(method))
    if key not in _FAMILY_SIZES:  # the objects are kept beside their sizes, so their ids stay theirs
        sizes = {k: len(v) for k, v in build_cases(profile, [method]).items()}
        _FAMILY_SIZES[key] = (profile, method, sizes)
    return _FAMILY_SIZES[key][2][prop]


# the former private names, still imported by nnw/stress.py


def run_profile(config):
    """The profile of a pytest run (``--nnw-profile``)."""
    from nnw.profile import load_profile

    return load_profile(config.getoption("--nnw-profile"))


def run_methods(config) -> dict:
    """The methods of a pytest run (``--nnw-method``, default: the built-ins of the registry), by
    name; loaded once per run (kept on ``config``)."""
    if not hasattr(config, "_nnw_methods"):
        import pytest

        from nnw.methods.registry import BUILTINS, MethodLoadError, get_method

        names = config.getoption("--nnw-method") or list(BUILTINS)
        try:
            config._nnw_methods = {m.name: m for m in (get_method(n) for n in names)}
        except MethodLoadError as e:
            raise pytest.UsageError(f"--nnw-method: {e}") from None
    return config._nnw_methods


def schedule_rank(case: Case, profile) -> int:
    """Where a clause goes in the run's order (longest first, so that xdist workers finish together):
    0, the imperceptibility of the tasks judged on imperceptibility alone (each builds its own
    population of unmarked and marked models, shared with nothing else); 1, the other
    imperceptibility clauses (they build the marked populations the robustness clauses share);
    2, everything else."""
    if case.property == "imperceptibility":
        return 0 if case.task not in profile.classification_tasks else 1
    return 2
