"""Builders of docs/byo.md: runs on a third-party network (metrics.json), its bench JSON and
the lines scripts/make_text_classifier.py and scripts/hf_target_steps.py print."""
from __future__ import annotations

import re

from .formatting import md_table, pct, thousands
from .outputs import Outputs
from .tables_performance import edited_modules


def byo_table(o: Outputs) -> str:
    first = o.metrics(o.table.steps[0])
    rows = [["before the edit", pct(first["before"]["forget_acc"]), pct(first["before"]["retain_acc"]), "", ""]]
    for i, step in enumerate(o.table.steps):
        m, seconds = o.metrics(step), o.seconds(i)
        rows.append([step.label, pct(m["after"]["forget_acc"]), pct(m["after"]["retain_acc"]),
                     thousands(m["env_steps"]), f"{seconds:.0f} s" if seconds is not None else "n/a"])
    return md_table(["seed", "forget (test)", "retain (test)", "env steps", "wall, command to verified edit"], rows)


def mask_settings_table(o: Outputs) -> str:
    rows = []
    for step in o.table.steps:
        m = o.metrics(step)
        rows.append([*step.label.split("|"), pct(m["after"]["forget_acc"]), pct(m["after"]["retain_acc"]),
                     thousands(m["env_steps"])])
    return md_table(["mask bounds", "mask update", "seed", "forget (test)", "retain (test)", "env steps"], rows)


def byo_bench_table(o: Outputs) -> str:
    rows = []
    for c in sorted(o.last_json(0)["configs"], key=lambda c: c["name"] != "third_party"):
        one = next((r for r in c["rllib"] if r["envs_per_runner"] == 1 and r["runners"] == 0), None)
        label = {"third_party": "digit-recognizer-py's CNN", "default": "the project's CNN"}.get(c["name"], c["name"])
        rows.append([f"{c['name']} ({label}, {edited_modules(c['settings'])})", thousands(c["world_steps_per_s"]),
                     thousands(one["rllib_steps_per_s"]) if one else "n/a"])
    return md_table(["config", "world steps/s", "RLlib sampling steps/s (1 sub-env)"], rows)


HF_NOTES = {"classifier": " (MaskWorld)", "last-layer FFN output": " (MaskWorld, samples 64/set, 64 pairs)",
            "last-layer FFN output, shift": " (ShiftWorld, samples 64/set, 64 pairs)"}  # hf_target_steps.py's EDITS
HF_LINE = re.compile(r"(.+?): edit (\S+), (\d+) action dims, (\d+) reward rows x (\d+) tokens, split '(\w+)': "
                     r"world ([\d.]+) steps/s, full forward ([\d.]+)/s")


def transformers_table(o: Outputs) -> str:
    rows = []
    for line in o.stdout(1).splitlines():
        match = HF_LINE.match(line)
        if match:
            name, edit, dims, rows_n, tokens, split, world, full = match.groups()
            rows.append([f"`{edit}`{HF_NOTES.get(name, '')}", thousands(float(dims)),
                         f"{thousands(float(rows_n))} x {tokens}", split, world, f"{full}/s"])
    made = next((text for text in o.stdout(0).splitlines() if text.startswith("wrote ")), "")
    acc = re.search(r"fit ([\d.]+), validation ([\d.]+) \((\d+) s\)", made)
    train_s = o.seconds(2)
    text = md_table(["edit", "action dims", "reward rows x tokens", "split", "world steps/s",
                     "full forward of the same rows"], rows)
    return text + "\n\n" + md_table(["step", "result", "wall"], [
        ["`scripts/make_text_classifier.py`", f"head accuracy {acc.group(1)} fit / {acc.group(2)} validation" if acc
         else "n/a", f"{acc.group(3)} s" if acc else "n/a"],
        [f"`{o.table.steps[2].command.split(' --out ')[0]}`", "ran end to end",
         f"{train_s:.0f} s" if train_s is not None else "n/a"]])
