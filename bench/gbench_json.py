"""Reading Google Benchmark JSON output, shared by the bench/run-*.sh tables."""
import json
import statistics


def load(path):
    with open(path) as f:
        return json.load(f)


def variant_of(parts):
    """The benchmark's variant: its name parts without those Google Benchmark appends."""
    skip = ("real_time", "manual_time", "process_time")
    keep = [p for p in parts if p not in skip and not p.startswith(("min_time:", "iterations:", "repeats:"))]
    return "/".join(keep)


class Rows:
    """Per-variant figures of a run: items/s, CPU µs and counters of every
    repetition, the median aggregate when --benchmark_repetitions made one,
    and the error of a variant that failed. Keys are
    (benchmark, first name part, variant of the rest)."""

    def __init__(self, data, counters, min_parts=2):
        self.rows, self.order, self.medians = {}, [], {}
        for b in data.get("benchmarks", []):
            parts = b.get("run_name", b["name"]).split("/")
            if len(parts) < min_parts:
                continue
            key = (parts[0], parts[1], variant_of(parts[2:]))
            if key not in self.rows:
                self.rows[key] = {"ips": [], "cpu_us": [], "error": None, **{c: [] for c in counters}}
                self.order.append(key)
            r = self.rows[key]
            if b.get("error_occurred"):
                r["error"] = b.get("error_message", "error")
                continue
            if b.get("run_type") == "aggregate":
                if b.get("aggregate_name") == "median" and "items_per_second" in b:
                    self.medians[key] = b["items_per_second"]
                continue
            if "items_per_second" in b:
                r["ips"].append(b["items_per_second"])
            if "cpu_time" in b:  # of the benchmark thread(s)
                unit = {"ns": 1e-3, "us": 1.0, "ms": 1e3, "s": 1e6}.get(b.get("time_unit", "ns"), 1.0)
                r["cpu_us"].append(b["cpu_time"] * unit)
            for c in counters:
                if c in b:
                    r[c].append(b[c])

    def ips(self, key):
        """Median items/s (the aggregate when there is one)."""
        if key in self.medians:
            return self.medians[key]
        v = self.rows.get(key, {}).get("ips")
        return statistics.median(v) if v else None

    def counter(self, key, name, fmt="%.2f"):
        v = self.rows.get(key, {}).get(name)
        return fmt % statistics.median(v) if v else ""

    def failed(self, key):
        r = self.rows.get(key)
        return r is not None and r["error"] and not r["ips"] and key not in self.medians


def ratio(a, b):
    return "%.2f" % (a / b) if a and b else "-"
