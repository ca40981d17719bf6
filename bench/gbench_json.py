"""Reading Google Benchmark JSON output, shared by the bench/run-*.sh tables."""
import json


def load(path):
    with open(path) as f:
        return json.load(f)


def variant_of(parts):
    """The benchmark's variant: its name parts without those Google Benchmark appends."""
    skip = ("real_time", "manual_time", "process_time")
    keep = [p for p in parts if p not in skip and not p.startswith(("min_time:", "iterations:", "repeats:"))]
    return "/".join(keep)
