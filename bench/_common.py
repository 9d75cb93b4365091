"""Helpers shared by the bench scripts: phases in child processes, peak memory, analyze's timing block, cached runs.

A bench runs each phase in a fresh ``python SCRIPT --phase ...`` child (so its peak RSS is its own); the child
prints one JSON object as its last stdout line, which ``run_phase`` returns.
"""

from __future__ import annotations

import json
import os
import re
import resource
import subprocess
import sys
import time
from pathlib import Path

# Idle OpenMP threads sleep instead of spinning (shared CPUs); set before torch loads.
os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")


def memory(device: str) -> dict:
    """This process's peak RSS (and peak CUDA memory on ``cuda``), in MB."""
    out = {"peak_rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024}
    if device == "cuda":
        import torch

        out["peak_cuda_mb"] = torch.cuda.max_memory_allocated() / 2**20
    return out


def sync(device: str) -> None:
    if device == "cuda":
        import torch

        torch.cuda.synchronize()


def load_average() -> list[float]:
    """os.getloadavg() (1, 5, 15 min), rounded: recorded with every figure (shared machines)."""
    return [round(x, 2) for x in os.getloadavg()]


def run_phase(script: Path, arguments: list[str], timeout: float | None = None) -> dict:
    """Run ``python script *arguments`` and return the JSON object it prints last, with the wall time and the load
    averages before and after. A failing child (or one past ``timeout``, or killed for memory) exits this process
    unless ``timeout`` is given, in which case the error is returned as ``{"error": ...}`` for the caller to report."""
    before, tick = load_average(), time.perf_counter()
    try:
        done = subprocess.run([sys.executable, str(script), *arguments], capture_output=True, text=True,
                              timeout=timeout)
    except subprocess.TimeoutExpired:
        return {"error": f"did not finish in {timeout:.0f} s", "loadavg_before": before,
                "loadavg_after": load_average()}
    record = {"wall_s": time.perf_counter() - tick, "loadavg_before": before, "loadavg_after": load_average()}
    if done.returncode != 0:
        why = f"exit code {done.returncode}" + (" (killed: out of memory?)" if done.returncode in (-9, 137) else "")
        if timeout is None:
            sys.exit(f"{script.name} {' '.join(arguments[:2])} failed ({why}):\n{done.stderr[-3000:]}")
        return {"error": why, "stderr": done.stderr[-3000:], **record}
    return {**json.loads(done.stdout.strip().splitlines()[-1]), **record}


def analyze_timing(document: dict) -> dict:
    """The figures a bench reads from an analyze document: its own timing split and the probed steps."""
    timing, probe = document["timing"], document["probe"]
    budget = probe.get("budget") or {}
    return {"load_s": timing["load_s"], "sampling_s": timing["sampling_s"], "probing_s": timing["probing_s"],
            "null_s": timing.get("null_s", 0.0), "analysis_s": timing["analysis_s"],
            "probed_steps": probe["probed_steps"], "probe_method": probe["method"],
            "probe_points": probe["probe_points"], "shell_gain": probe.get("shell_gain", "directions"),
            "probing_forwards": budget.get("probing_forwards"), "sampling_forwards": budget.get("sampling_forwards")}


def cached_analyze(cache: Path, model: str, **options) -> dict:
    """``diffcrit.analyze(model, **options).to_dict()``, kept as JSON in ``cache`` under a name made of the model and
    the options, so a rerun of a bench reads it instead of sampling again."""
    import diffcrit

    key = model + "".join(f"_{k}{v}" for k, v in sorted(options.items()))
    path = cache / f"{re.sub(r'[^A-Za-z0-9._-]+', '_', key)}.json"  # a path among the options stays one name
    if path.exists():
        return json.loads(path.read_text())
    doc = diffcrit.analyze(model, **options).to_dict()
    path.write_text(json.dumps(doc))
    return doc
