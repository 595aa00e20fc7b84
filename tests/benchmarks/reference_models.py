"""Reference models of a profile, measured: task performance per seed and its spread, against a baseline,
training time per model and training throughput in plain fp32 and in the chosen numerics path.

    python -m tests.benchmarks.reference_models                       # embedded profile, 5 seeds, all tasks
    python -m tests.benchmarks.reference_models --seeds 0 --tasks ResNet8 VGG16 --json out.json

It prints a Markdown table (the README's "Reference models" table). Times are process CPU seconds of the
training thread (``time.thread_time``) on the profile's ``cpu_threads``, so other jobs on the machine
inflate them less than wall-clock times; wall seconds are printed too. Nothing is asserted: the figures
go to the README (``tests/benchmarks/test_bench_reference_models.py`` only checks that the script runs).

Baselines: chance (classification), the most frequent class per pixel position of the training set
(segmentation), bicubic up-sampling of the LR input (up-sampling), the mean training photo and, as a
stronger one, the mean training colour of each label colour (generation).

Throughput: training images per second over a few full batches of the task's recipe (best of
``--rounds``), for ``fp32`` (the recipe with bf16 autocast and channels_last off) and for the path
the profile chooses on this machine (``nnw.device.cpu_bf16``: bf16 autocast where the CPU has native
bf16, else fp32; channels_last inputs where the recipe sets them). ``--bf16-probe`` also times forced
bf16 autocast (``NNW_CPU_BF16=1``), which on a CPU without native bf16 shows why the fallback exists.
"""
from __future__ import annotations

import argparse
import contextlib
import json
import os
import statistics
import sys
import time
from dataclasses import replace
from typing import Any, Iterator

import torch
import torch.nn.functional as F

from nnw.device import CPU_BF16_ENV, cpu_bf16
from nnw.profile import load_profile
from nnw.tasks import Task, build_task
from nnw.training import train

MEASURE = {"classification": "top1", "segmentation": "miou", "upsampling": "psnr", "generation": "psnr"}


@contextlib.contextmanager
def bf16_setting(value: str | None) -> Iterator[None]:
    """Run a block with ``NNW_CPU_BF16`` set to ``value`` (None: leave it as it is)."""
    if value is None:
        yield
        return
    before = os.environ.get(CPU_BF16_ENV)
    os.environ[CPU_BF16_ENV] = value
    try:
        yield
    finally:
        if before is None:
            os.environ.pop(CPU_BF16_ENV, None)
        else:
            os.environ[CPU_BF16_ENV] = before


def baselines(task: Task) -> dict[str, float]:
    """What a model must beat on ``task.test`` (see the module docstring)."""
    from nnw import metrics

    test, tr = task.test, task.train
    if task.kind == "classification":
        return {"chance": 1.0 / int(task.num_classes or 10)}
    if task.kind == "segmentation":
        counts = F.one_hot(tr.y.clamp(max=task.num_classes - 1), task.num_classes).sum(0)  # H x W x C
        prior = counts.argmax(-1).expand_as(test.y)
        return {"position prior": metrics.mean_iou(prior, test.y, num_classes=task.num_classes, ignore_index=255)}
    if task.kind == "upsampling":
        scale = test.y.shape[-1] // test.x.shape[-1]
        up = F.interpolate(test.x.float(), scale_factor=scale, mode="bicubic", align_corners=False).clamp(0, 255).round()
        return {"bicubic": metrics.psnr(up, test.y.float()), "bicubic ssim": metrics.ssim_global(up, test.y.float())}
    mean = tr.y.float().mean(0, keepdim=True).expand_as(test.y).round()
    out = {"mean photo": metrics.psnr(mean, test.y.float())}
    key = lambda x: (x[:, 0].long() * 65536 + x[:, 1].long() * 256 + x[:, 2].long()).flatten()  # noqa: E731
    k_tr, k_te = key(tr.x), key(test.x)
    y_tr = tr.y.float().permute(1, 0, 2, 3).reshape(3, -1)
    pred = y_tr.mean(1, keepdim=True).expand(3, k_te.numel()).clone()
    for k in k_te.unique():
        sel = k_tr == k
        if sel.any():
            pred[:, k_te == k] = y_tr[:, sel].mean(1, keepdim=True)
    pred = pred.reshape(3, test.y.shape[0], *test.y.shape[2:]).permute(1, 0, 2, 3).round()
    out["label-colour mean"] = metrics.psnr(pred, test.y.float())
    return out


def train_once(task: Task, seed: int, recipe=None) -> dict[str, Any]:
    model = task.build_model(seed)
    t0, w0 = time.thread_time(), time.perf_counter()
    res = train(model, task, recipe=recipe, seed=seed, device="cpu")
    cpu, wall = time.thread_time() - t0, time.perf_counter() - w0
    e0 = time.thread_time()
    perf = task.evaluate(model)
    recipe = recipe or task.recipe
    return {"seed": seed, "performance": perf, "train_cpu_s": cpu, "train_wall_s": wall,
            "eval_cpu_s": time.thread_time() - e0, "steps": res.steps,
            "images": res.steps * min(recipe.batch_size, len(task.train))}


def throughput(task: Task, recipe, batches: int = 6, rounds: int = 2) -> float:
    """Training images per second over ``batches`` full batches (best of ``rounds``; one warm-up round)."""
    n = min(len(task.train), batches * recipe.batch_size)
    small = replace(task, train=task.train.subset(n))
    best = float("inf")
    for r in range(rounds + 1):
        model = task.build_model(0)
        t0 = time.thread_time()
        res = train(model, small, recipe=replace(recipe, epochs=1), seed=0, device="cpu")
        if r:
            best = min(best, (time.thread_time() - t0) / (res.steps * min(recipe.batch_size, n)))
    return 1.0 / best


def measure(profile_name: str, tasks: list[str], seeds: list[int], *, fp32_reference: bool = True,
            bf16_probe: bool = False, log=print) -> dict[str, Any]:
    profile = load_profile(profile_name)
    threads = int(profile.data.get("cpu_threads", 0))
    if threads > 0:
        torch.set_num_threads(threads)
    out: dict[str, Any] = {"profile": profile.name, "threads": torch.get_num_threads(), "cpu_bf16": cpu_bf16(),
                           "torch": torch.__version__, "tasks": {}}
    for name in tasks:
        task = build_task(name, profile.tasks[name])
        key = MEASURE[task.kind]
        row: dict[str, Any] = {"kind": task.kind, "measure": key, "n_train": len(task.train),
                               "n_test": len(task.test), "epochs": task.recipe.epochs, "baselines": baselines(task)}
        log(f"{name}: {len(task.train)} train / {len(task.test)} test, baselines {row['baselines']}")
        fp32 = replace(task.recipe, bf16=False, channels_last=False)
        row["throughput_fp32"] = throughput(task, fp32)
        row["throughput_chosen"] = throughput(task, task.recipe)
        if bf16_probe:
            with bf16_setting("1"):
                row["throughput_bf16_forced"] = throughput(task, replace(task.recipe, bf16=True), rounds=1)
        log(f"  throughput img/s: fp32 {row['throughput_fp32']:.0f}, chosen {row['throughput_chosen']:.0f}"
            + (f", bf16 forced {row['throughput_bf16_forced']:.0f}" if bf16_probe else ""))
        runs = []
        for seed in seeds:
            r = train_once(task, seed)
            runs.append(r)
            log(f"  seed {seed}: {key} {r['performance'][key]:.4f}  train {r['train_cpu_s']:.1f} CPU-s "
                f"({r['train_wall_s']:.1f} s wall, {r['steps']} steps), evaluation {r['eval_cpu_s']:.2f} CPU-s")
        row["runs"] = runs
        values = [r["performance"][key] for r in runs]
        row["mean"] = statistics.fmean(values)
        row["spread"] = max(values) - min(values)
        row["train_cpu_s"] = statistics.median(r["train_cpu_s"] for r in runs)
        if fp32_reference:
            ref = train_once(task, seeds[0], recipe=fp32)
            row["train_cpu_s_fp32"] = ref["train_cpu_s"]
            log(f"  fp32 reference (seed {seeds[0]}): {key} {ref['performance'][key]:.4f}, "
                f"train {ref['train_cpu_s']:.1f} CPU-s")
        out["tasks"][name] = row
    return out


def markdown(result: dict[str, Any]) -> str:
    path = "bf16 autocast" if result["cpu_bf16"] else "fp32 (no native bf16: fallback)"
    lines = [f"Profile `{result['profile']}`, {result['threads']} thread(s), torch {result['torch']}, "
             f"chosen path on this CPU: {path}.", "",
             "| model | measure per seed | mean | spread | baseline | train set / test set | "
             "training per model (CPU-s): fp32 → chosen | throughput (img/s): fp32 → chosen |",
             "|---|---|---|---|---|---|---|---|"]
    for name, row in result["tasks"].items():
        pct = row["kind"] == "classification"
        fmt = (lambda v: f"{100 * v:.1f} %") if pct else (lambda v: f"{v:.3f}") if row["measure"] == "miou" \
            else (lambda v: f"{v:.2f} dB")
        spread = f"{100 * row['spread']:.1f} points" if pct else f"{row['spread']:.3f}" if row["measure"] == "miou" \
            else f"{row['spread']:.2f} dB"
        per_seed = " / ".join(fmt(r["performance"][row["measure"]]) for r in row["runs"])
        base = ", ".join(f"{k} {fmt(v) if 'ssim' not in k else f'{v:.3f}'}" for k, v in row["baselines"].items())
        fp32_s = f"{row['train_cpu_s_fp32']:.0f} → " if "train_cpu_s_fp32" in row else ""
        lines.append(f"| {name} | {per_seed} | {fmt(row['mean'])} | {spread} | {base} | "
                     f"{row['n_train']} / {row['n_test']} | {fp32_s}{row['train_cpu_s']:.0f} "
                     f"({row['epochs']} epochs) | {row['throughput_fp32']:.0f} → {row['throughput_chosen']:.0f}"
                     + (f" (bf16 forced: {row['throughput_bf16_forced']:.0f})" if "throughput_bf16_forced" in row else "")
                     + " |")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--profile", default="embedded")
    ap.add_argument("--tasks", nargs="*", help="task names (default: all of the profile)")
    ap.add_argument("--seeds", type=int, nargs="*", default=[0, 1, 2, 3, 4])
    ap.add_argument("--no-fp32-reference", action="store_true", help="skip the fp32 training of the first seed")
    ap.add_argument("--bf16-probe", action="store_true", help="also time forced bf16 autocast")
    ap.add_argument("--json", help="write the measurements here")
    args = ap.parse_args(argv)
    tasks = args.tasks or list(load_profile(args.profile).tasks)
    result = measure(args.profile, tasks, args.seeds, fp32_reference=not args.no_fp32_reference,
                     bf16_probe=args.bf16_probe, log=lambda m: print(m, file=sys.stderr, flush=True))
    if args.json:
        with open(args.json, "w") as f:
            json.dump(result, f, indent=1)
    print(markdown(result))
    return 0


if __name__ == "__main__":
    sys.exit(main())
