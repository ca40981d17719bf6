"""The scenarios of bench/run-pipeline-bench.sh (issue 7), run in one go so that
every ratio has its baseline from the same run:

  crypto (before)  pipeline_crypto_bench, BM_Crypto/*/threads:2: the
                   crypto-only limit with as many threads as the daemon has workers
  batch            N requests queued in the spool, then `certcustody serve
                   --until-idle --workers 2`: throughput from the first request
                   received to the last delivered (the status records'
                   received_at_ms and updated_at_ms), so the daemon's start-up is
                   not in it; also each request's queueing latency, the CPU of
                   the daemon and of the simulator, and how busy the machine was.
                   Two runs per key type, interleaved
  crypto (after)   the limit again: the machine's drift shows as before/after
  more workers     one more EC batch with --also-workers workers
  paced            `serve --workers 2` running while requests arrive at a fixed
                   interval, at a fraction of the batch throughput: service
                   latency (received -> delivered), latency from the drop, and
                   their split at the "issued" log line; again with a short
                   scan interval (--fast-scan-ms)
  rss              peak RSS (VmHWM) of the daemon with Q queued requests (SIGTERM
                   once the intake has taken them all), against a small queue and
                   against as many requests as that run processed
  fsync            a batch under strace (fsync/fdatasync only, seccomp-filtered):
                   how many syncs a request costs, how long they take, how far
                   they overlap
  perf             (--perf) a batch under `perf record`: the daemon's CPU by
                   library and function
  crypto detail    one thread, and each step alone (BM_Step): where the CPU goes

Called by run-pipeline-bench.sh with the token, the CA simulator and a base
configuration prepared; prints the tables and writes the results as JSON
(--results). --only runs some parts.
"""
import argparse
import json
import math
import os
import re
import resource
import signal
import statistics
import subprocess
import sys
import threading
import time

LINE = re.compile(r"^certcustody: request (\S+): (issued, serial|delivered to)")

# Every process started here, stopped on the way out (also on SIGTERM or ^C).
CHILDREN = []


def start(*args, **kwargs):
    p = subprocess.Popen(*args, **kwargs)
    CHILDREN.append(p)
    return p


def stop_children():
    for p in CHILDREN:
        if p.poll() is None:
            p.terminate()
    for p in CHILDREN:
        try:
            p.wait(15)
        except subprocess.TimeoutExpired:
            p.kill()
            p.wait()


def now_ms():
    return time.time() * 1000.0


def pct(values, p):
    """Nearest-rank percentile (p in 0..100)."""
    if not values:
        return float("nan")
    s = sorted(values)
    return s[max(0, math.ceil(p / 100.0 * len(s)) - 1)]


def cpu_seconds(pid):
    """utime + stime of a live process (all its threads), in seconds."""
    try:
        with open("/proc/%d/stat" % pid) as f:
            fields = f.read().rsplit(")", 1)[1].split()
        return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")
    except (OSError, IndexError, ValueError):
        return None


def system_busy():
    """CPU seconds spent busy by the whole machine so far (all cores), and the idle ones."""
    with open("/proc/stat") as f:
        v = [int(x) for x in f.readline().split()[1:]]
    tck = os.sysconf("SC_CLK_TCK")
    idle = v[3] + v[4]  # idle + iowait
    return (sum(v[:8]) - idle) / tck, idle / tck


def proc_status(pid):
    """(VmHWM, VmRSS) in KiB, or None when the process is gone."""
    try:
        hwm = rss = None
        with open("/proc/%d/status" % pid) as f:
            for line in f:
                if line.startswith("VmHWM:"):
                    hwm = int(line.split()[1])
                elif line.startswith("VmRSS:"):
                    rss = int(line.split()[1])
        return (hwm, rss) if hwm is not None else None
    except OSError:
        return None


class Daemon:
    """`certcustody serve` with its stderr lines time-stamped as they arrive and
    its memory sampled every 50 ms."""

    def __init__(self, ctx, config, args, wrapper=None, name="serve"):
        self.ctx, self.name = ctx, name
        cmd = [ctx.bin, "--config", config, "serve", "--workers", str(ctx.workers)] + args
        self._ru0 = resource.getrusage(resource.RUSAGE_CHILDREN)
        self.cpu_s = None
        self.proc = start((wrapper or []) + cmd, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
                                     env=ctx.env)
        self.started_ms = now_ms()
        self.pid = self.proc.pid
        if wrapper:  # the daemon is the wrapper's child: find it for /proc
            self.pid = self._child_of(self.proc.pid)
        with open(ctx.pidfile, "w") as f:
            f.write("%d\n" % self.pid)
        self.lines, self.samples = [], []
        self.cpu_last = None
        self._reader = threading.Thread(target=self._read, daemon=True)
        self._reader.start()
        self._sampler = threading.Thread(target=self._sample, daemon=True)
        self._sampler.start()

    @staticmethod
    def _child_of(pid):
        for _ in range(200):
            try:
                with open("/proc/%d/task/%d/children" % (pid, pid)) as f:
                    kids = f.read().split()
                if kids:
                    return int(kids[0])
            except OSError:
                pass
            time.sleep(0.01)
        return pid

    def _read(self):
        for raw in self.proc.stderr:
            self.lines.append((now_ms(), raw.decode(errors="replace").rstrip("\n")))

    def _sample(self):
        while self.proc.poll() is None:
            s = proc_status(self.pid)
            c = cpu_seconds(self.pid)
            if s:
                self.samples.append((now_ms(), s[0], s[1]))
            if c is not None:
                self.cpu_last = c
            time.sleep(0.05)

    def hwm_kib(self):
        return max((s[1] for s in self.samples), default=None)

    def terminate(self):
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)

    def wait(self, timeout):
        try:
            rc = self.proc.wait(timeout)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()
            raise RuntimeError("%s did not finish within %d s" % (self.name, timeout))
        ru = resource.getrusage(resource.RUSAGE_CHILDREN)
        # CPU of the daemon (with its wrapper, if any): the only child reaped meanwhile.
        self.cpu_s = (ru.ru_utime - self._ru0.ru_utime) + (ru.ru_stime - self._ru0.ru_stime)
        self._reader.join(5)
        self._sampler.join(5)
        try:
            os.unlink(self.ctx.pidfile)
        except OSError:
            pass
        with open(os.path.join(self.ctx.work, self.name + ".log"), "w") as f:
            for t, line in self.lines:
                f.write("%.1f %s\n" % (t, line))
        return rc

    def events(self):
        """{id: {"issued": ms, "delivered": ms}} from the log lines."""
        out = {}
        for t, line in self.lines:
            m = LINE.match(line)
            if m:
                out.setdefault(m.group(1), {})["issued" if m.group(2).startswith("issued") else "delivered"] = t
        return out

    def tail(self, n=15):
        return "\n".join(l for _, l in self.lines[-n:])


class Context:
    def __init__(self, a):
        self.bin, self.work, self.workers = a.bin, a.work, a.workers
        self.sim_pid, self.crypto_bench = a.sim_pid, a.crypto_bench
        self.recipient, self.scan_ms = a.recipient, a.scan_ms
        with open(a.base_config) as f:
            self.base_config = f.read()
        self.pidfile = os.path.join(a.work, "daemon.pid")
        self.env = dict(os.environ)
        self.env.pop("CERTCUSTODY_P11_TRACE", None)  # a trace would time the tracing
        self.env["TMPDIR"] = a.work  # the crypto bench's token too: removed with the work directory
        self.n = 0

    def state(self, name, scan_ms=None):
        """A new state directory (spool + store) and a configuration using it."""
        state = os.path.join(self.work, "state-" + name)
        config = os.path.join(self.work, name + ".toml")
        text = re.sub(r"(?m)^scan_interval_ms = \d+$", "scan_interval_ms = %d" % (scan_ms or self.scan_ms),
                      self.base_config)
        with open(config, "w") as f:
            f.write(text + '\n[state]\ndir = "%s"\n' % state)
        for d in ("incoming", "claimed", "rejected", "outgoing", "tmp"):
            os.makedirs(os.path.join(state, "requests", d), mode=0o700, exist_ok=True)
        os.chmod(state, 0o700)
        os.chmod(os.path.join(state, "requests"), 0o700)
        os.makedirs(os.path.join(self.work, "drop"), exist_ok=True)
        return state, config

    def request(self, profile):
        self.n += 1
        rid = "%s-%06d" % (profile, self.n)
        cn = "IWUser%d" % self.n
        body = json.dumps({"version": 2, "id": rid, "profile": profile, "recipient": self.recipient,
                           "attributes": {"common_name": cn, "email": cn.lower() + "@contoso.example"}})
        return rid, body

    def drop(self, state, rid, body):
        """As the device-management service does: written aside, renamed into incoming/."""
        tmp = os.path.join(self.work, "drop", rid + ".json")
        with open(tmp, "w") as f:
            f.write(body)
        os.rename(tmp, os.path.join(state, "requests", "incoming", rid + ".json"))
        return now_ms()


def statuses(state, ids):
    out = {}
    for rid in ids:
        p = os.path.join(state, "requests", "outgoing", rid + ".status.json")
        try:
            with open(p) as f:
                out[rid] = json.load(f)
        except (OSError, ValueError):
            out[rid] = None
    return out


def delivered_count(state):
    return sum(1 for n in os.listdir(os.path.join(state, "requests", "outgoing")) if n.endswith(".pfx.p7m"))


def check_delivered(name, st, ids):
    bad = [(i, (st[i] or {}).get("state"), (st[i] or {}).get("error")) for i in ids
           if not st[i] or st[i].get("state") != "delivered"]
    if bad:
        raise RuntimeError("%s: %d of %d requests not delivered, e.g. %s" % (name, len(bad), len(ids), bad[:3]))


# ---------------------------------------------------------------- crypto-only

def run_crypto(ctx, name, bench_filter, extra=()):
    out = os.path.join(ctx.work, "crypto-%s.json" % name)
    cmd = [ctx.crypto_bench, "--benchmark_format=json", "--benchmark_filter=" + bench_filter] + list(extra)
    with open(out, "w") as f:
        p = start(cmd, stdout=f, stderr=subprocess.PIPE, env=ctx.env, text=True)
        _, err = p.communicate()
    if p.returncode != 0:
        raise RuntimeError("pipeline_crypto_bench (%s) failed: %s" % (name, err[-2000:]))
    with open(out) as f:
        data = json.load(f)
    rates, cpu = {}, {}
    for b in data["benchmarks"]:
        if b.get("run_type") == "aggregate" or b.get("error_occurred"):
            continue
        key = re.sub(r"/(min_time:[^/]*|real_time)", "", b["run_name"] if "run_name" in b else b["name"])
        rates.setdefault(key, []).append(b["items_per_second"])
        unit = {"ns": 1e-3, "us": 1.0, "ms": 1e3, "s": 1e6}[b.get("time_unit", "ns")]
        cpu.setdefault(key, []).append(b["cpu_time"] * unit)
    return ({k: statistics.median(v) for k, v in rates.items()},
            {k: statistics.median(v) for k, v in cpu.items()}, data.get("context", {}))


# ---------------------------------------------------------------- end to end

def batch(ctx, profile, n, name, wrapper=None):
    """N requests queued, then serve --until-idle."""
    state, config = ctx.state(name)
    ids = []
    for _ in range(n):
        rid, body = ctx.request(profile)
        ctx.drop(state, rid, body)
        ids.append(rid)
    sim0 = cpu_seconds(ctx.sim_pid)
    busy0, _ = system_busy()
    t0 = time.time()
    d = Daemon(ctx, config, ["--until-idle"], wrapper=wrapper, name=name)
    rc = d.wait(timeout=max(120, n))  # generous: a stuck run must still end
    wall = time.time() - t0
    busy1, _ = system_busy()
    sim1 = cpu_seconds(ctx.sim_pid)
    if rc != 0:
        raise RuntimeError("%s: serve exited %s:\n%s" % (name, rc, d.tail()))
    st = statuses(state, ids)
    check_delivered(name, st, ids)
    received = [st[i]["received_at_ms"] for i in ids]
    done = [st[i]["updated_at_ms"] for i in ids]
    window = (max(done) - min(received)) / 1000.0
    ev = d.events()
    delivered_log = sorted(ev[i]["delivered"] for i in ids if "delivered" in ev.get(i, {}))
    k = max(1, n // 10)
    steady = (len(delivered_log) - k) / ((delivered_log[-1] - delivered_log[k - 1]) / 1000.0) \
        if len(delivered_log) > k + 1 else None
    daemon_cpu = d.cpu_s if wrapper is None else (d.cpu_last or 0.0)
    sim_cpu = (sim1 - sim0) if sim0 is not None and sim1 is not None else None
    ours = daemon_cpu + (sim_cpu or 0.0)
    r = {
        "profile": profile, "n": n, "window_s": window, "throughput": n / window,
        "steady_throughput": steady, "process_wall_s": wall,
        "queue_latency_ms": {"p50": pct([b - a for a, b in zip(received, done)], 50),
                             "p99": pct([b - a for a, b in zip(received, done)], 99)},
        "deliver_ms": {"p50": pct([ev[i]["delivered"] - ev[i]["issued"] for i in ids
                                   if "issued" in ev.get(i, {}) and "delivered" in ev[i]], 50)},
        "daemon_cpu_ms_per_request": 1000.0 * daemon_cpu / n,
        "sim_cpu_ms_per_request": 1000.0 * sim_cpu / n if sim_cpu is not None else None,
        "machine_busy_cores": (busy1 - busy0) / wall,
        "others_busy_cores": max(0.0, (busy1 - busy0) - ours) / wall,
        "peak_rss_kib": d.hwm_kib(),
        "issued_by_sim": None,
    }
    return r, d


def paced(ctx, profile, rate, n, name, scan_ms=None):
    """serve running; one request every 1/rate s; until all are delivered."""
    state, config = ctx.state(name, scan_ms)
    d = Daemon(ctx, config, [], name=name)
    # Wait for the daemon to be up (its "started" line), so start-up is not in any latency.
    deadline = time.time() + 30
    while not any("started with" in l for _, l in d.lines):
        if time.time() > deadline or d.proc.poll() is not None:
            d.terminate()
            d.wait(30)
            raise RuntimeError("%s: serve did not start:\n%s" % (name, d.tail()))
        time.sleep(0.02)
    # One request first (TLS connection, template policy), not measured.
    rid, body = ctx.request(profile)
    ctx.drop(state, rid, body)
    while delivered_count(state) < 1:
        time.sleep(0.02)
    ids, dropped = [], {}
    t0 = time.time() + 0.2
    for i in range(n):
        target = t0 + i / rate
        time.sleep(max(0.0, target - time.time()))
        rid, body = ctx.request(profile)
        dropped[rid] = ctx.drop(state, rid, body)
        ids.append(rid)
    deadline = time.time() + 120
    while delivered_count(state) < n + 1:
        if time.time() > deadline:
            break
        time.sleep(0.05)
    d.terminate()
    rc = d.wait(60)
    if rc != 0:
        raise RuntimeError("%s: serve exited %s:\n%s" % (name, rc, d.tail()))
    st = statuses(state, ids)
    check_delivered(name, st, ids)
    ev = d.events()
    service = [st[i]["updated_at_ms"] - st[i]["received_at_ms"] for i in ids]
    from_drop = [st[i]["updated_at_ms"] - dropped[i] for i in ids]
    enroll = [ev[i]["issued"] - st[i]["received_at_ms"] for i in ids if "issued" in ev.get(i, {})]
    deliver = [st[i]["updated_at_ms"] - ev[i]["issued"] for i in ids if "issued" in ev.get(i, {})]
    q = lambda v: {"p50": pct(v, 50), "p99": pct(v, 99), "mean": statistics.fmean(v)}
    return {"profile": profile, "n": n, "rate": rate, "scan_ms": scan_ms or ctx.scan_ms, "service_ms": q(service), "from_drop_ms": q(from_drop),
            "enroll_ms": q(enroll), "deliver_ms": q(deliver),
            "intake_wait_ms": q([st[i]["received_at_ms"] - dropped[i] for i in ids])}


def rss_queue(ctx, profile, q, name, intake_timeout):
    """Q requests queued; serve until its intake has taken them all (claimed/
    and incoming/ empty), a little longer, then SIGTERM."""
    state, config = ctx.state(name)
    t_drop = time.time()
    for _ in range(q):
        rid, body = ctx.request(profile)
        ctx.drop(state, rid, body)
    drop_s = time.time() - t_drop
    d = Daemon(ctx, config, [], name=name)
    t0 = time.time()
    spool = [os.path.join(state, "requests", x) for x in ("incoming", "claimed")]
    intake_s = rss_at_intake = delivered_at_intake = None
    while time.time() - t0 < intake_timeout and d.proc.poll() is None:
        if all(not os.listdir(p) for p in spool):
            intake_s = time.time() - t0
            rss_at_intake = d.samples[-1][2] if d.samples else None
            delivered_at_intake = delivered_count(state)
            break
        time.sleep(0.25)
    time.sleep(2.0)  # the queue is in the store now; let the workers run a little
    hwm_before_stop = max((s[1] for s in d.samples), default=None)
    rss_before_stop = d.samples[-1][2] if d.samples else None
    d.terminate()
    rc = d.wait(120)
    if rc != 0:
        raise RuntimeError("%s: serve exited %s:\n%s" % (name, rc, d.tail()))
    stopped = next((l for _, l in reversed(d.lines) if "stopped;" in l), "")
    return {"queued": q, "drop_s": drop_s, "intake_s": intake_s, "delivered": delivered_count(state),
            "peak_rss_kib": d.hwm_kib(), "hwm_before_stop_kib": hwm_before_stop,
            "rss_before_stop_kib": rss_before_stop, "rss_at_intake_kib": rss_at_intake,
            "delivered_at_intake": delivered_at_intake, "stopped": stopped.split("serve: ", 1)[-1],
            "series": [(round((t - d.started_ms) / 1000.0, 1), rss) for t, _, rss in d.samples[::20]]}


def fsync_profile(ctx, profile, n, name):
    """A batch under strace, fsync and fdatasync only (seccomp-filtered, so the
    rest runs untraced): their count per request, their time, and how far they
    overlap — SQLite's fdatasync of the WAL runs under the store's one lock,
    write_atomic's fsyncs (file, then directory) do not."""
    out = os.path.join(ctx.work, name + ".strace")
    wrapper = ["strace", "-f", "--seccomp-bpf", "-tt", "-T", "-e", "trace=fsync,fdatasync", "-o", out]
    r, _ = batch(ctx, profile, n, name, wrapper=wrapper)
    pending, calls = {}, []  # (start s, end s, syscall)
    stamp = lambda t: sum(float(x) * m for x, m in zip(t.split(":"), (3600, 60, 1)))
    with open(out) as f:
        for line in f:
            m = re.match(r"(\d+)\s+(\S+) (fsync|fdatasync)\(.*<unfinished", line)
            if m:
                pending[m.group(1)] = (stamp(m.group(2)), m.group(3))
                continue
            m = re.match(r"(\d+)\s+\S+ <\.\.\. (fsync|fdatasync) resumed>.*<([\d.]+)>", line)
            if m and m.group(1) in pending:
                t0, call = pending.pop(m.group(1))
                calls.append((t0, t0 + float(m.group(3)), call))
                continue
            m = re.match(r"\d+\s+(\S+) (fsync|fdatasync)\(.*<([\d.]+)>", line)
            if m:
                t0 = stamp(m.group(1))
                calls.append((t0, t0 + float(m.group(3)), m.group(2)))

    def busy(kind):
        """Seconds during which at least one call of `kind` was running, and the most at once."""
        edges = sorted([(a, 1) for a, b, c in calls if c in kind] + [(b, -1) for a, b, c in calls if c in kind])
        depth = most = 0
        total, since = 0.0, None
        for t, step in edges:
            if depth == 0 and step == 1:
                since = t
            depth += step
            most = max(most, depth)
            if depth == 0 and since is not None:
                total += t - since
                since = None
        return total, most

    res = {"n": n, "throughput": r["throughput"], "window_s": r["window_s"]}
    for kind in ("fdatasync", "fsync"):
        sel = [b - a for a, b, c in calls if c == kind]
        covered, most = busy((kind,))
        res[kind] = {"per_request": len(sel) / n, "ms_each": 1000.0 * statistics.fmean(sel) if sel else 0.0,
                     "ms_per_request": 1000.0 * sum(sel) / n, "max_concurrent": most,
                     "busy_share": covered / r["window_s"]}
    covered, _ = busy(("fsync", "fdatasync"))
    res["any_busy_share"] = covered / r["window_s"]
    return res


def perf_profile(ctx, profile, n, name):
    data = os.path.join(ctx.work, name + ".perf.data")
    state, config = ctx.state(name)
    for _ in range(n):
        rid, body = ctx.request(profile)
        ctx.drop(state, rid, body)
    # perf starts the daemon, so that it follows every thread from the first.
    d = Daemon(ctx, config, ["--until-idle"], name=name,
               wrapper=["perf", "record", "-F", "299", "--call-graph", "dwarf,32768", "-o", data, "--"])
    d.wait(max(120, n))
    squeeze = lambda l: re.sub(r"\s+", " ", l).strip()
    # Self time by library; inclusive time of the daemon's own functions.
    r = subprocess.run(["perf", "report", "-i", data, "--stdio", "--no-children", "--sort", "dso",
                        "--percent-limit", "1", "-g", "none"], capture_output=True, text=True)
    by_dso = [squeeze(l) for l in r.stdout.splitlines() if l.strip() and not l.startswith("#")]
    r = subprocess.run(["perf", "report", "-i", data, "--stdio", "--no-children", "--sort", "dso,symbol",
                        "--percent-limit", "1", "-g", "none"], capture_output=True, text=True)
    by_symbol = [squeeze(l).replace(" - -", "") for l in r.stdout.splitlines()
                 if l.strip() and not l.startswith("#")]
    r = subprocess.run(["perf", "report", "-i", data, "--stdio", "--children", "--sort", "symbol",
                        "--percent-limit", "1", "-g", "none"], capture_output=True, text=True)
    ours = [squeeze(l).replace(" - -", "") for l in r.stdout.splitlines()
            if "certcustody::" in l or re.search(r"\] (fsync|fdatasync|sqlite3_step|X509_|d2i_|ASN1_item_d2i|"
                                                   r"OSSL_DECODER_CTX_new_for_pkey|EVP_PKEY_Q_keygen|PKCS12_|"
                                                   r"C_[A-Z][A-Za-z]+|SSL_read|SSL_write)", l)]
    return {"dso": by_dso[:12], "self": by_symbol[:15], "inclusive": ours[:45]}


# ---------------------------------------------------------------- main

def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--bin", required=True)
    ap.add_argument("--crypto-bench", required=True)
    ap.add_argument("--work", required=True)
    ap.add_argument("--base-config", required=True)
    ap.add_argument("--recipient", required=True)
    ap.add_argument("--sim-pid", type=int, required=True)
    ap.add_argument("--results", required=True)
    ap.add_argument("--workers", type=int, default=2)
    ap.add_argument("--scan-ms", type=int, default=100)
    ap.add_argument("--ec", type=int, default=600, help="EC P-256 requests in the batch run")
    ap.add_argument("--rsa", type=int, default=150, help="RSA-2048 requests in the batch run")
    ap.add_argument("--also-workers", type=int, default=4,
                    help="one more ec batch with this many workers (0: not): do more workers than cores help?")
    ap.add_argument("--batch-runs", type=int, default=2, help="batch runs per key type (interleaved)")
    ap.add_argument("--paced-seconds", type=float, default=20.0)
    ap.add_argument("--fast-scan-ms", type=int, default=10,
                    help="paced again with this scan interval (0: not), for the latency without the wait for the scan")
    ap.add_argument("--paced-load", type=float, default=0.6, help="arrival rate / batch throughput")
    ap.add_argument("--queue", type=int, default=10000, help="queued requests of the RSS run")
    ap.add_argument("--queue-base", type=int, default=100, help="queued requests of the RSS baseline")
    ap.add_argument("--intake-timeout", type=float, default=240.0)
    ap.add_argument("--perf", action="store_true", help="also profile an EC batch with perf")
    ap.add_argument("--only", default="", help="comma-separated parts: throughput, paced (needs throughput), "
                                               "rss, fsync, perf, detail")
    a = ap.parse_args()
    ctx = Context(a)
    res = {"date": time.strftime("%Y-%m-%d %H:%M:%S"), "cpus": os.cpu_count(), "workers": a.workers,
           "scan_interval_ms": a.scan_ms, "loadavg_start": os.getloadavg()}

    def say(text):
        print("pipeline-bench: " + text, file=sys.stderr, flush=True)

    parts = set(a.only.split(",")) if a.only else {"throughput", "paced", "rss", "fsync", "detail"}
    if a.perf:
        parts.add("perf")
    unknown = parts - {"throughput", "paced", "rss", "fsync", "perf", "detail"}
    if unknown:
        raise RuntimeError("--only: unknown part(s) %s" % ", ".join(sorted(unknown)))
    limit_filter = "BM_Crypto/.*/threads:%d$" % a.workers
    t_start = time.time()
    if "throughput" in parts or "paced" in parts:
        say("crypto-only limit (before): %s" % limit_filter)
        before, _, cctx = run_crypto(ctx, "before", limit_filter)
        res["crypto_context"] = {k: cctx.get(k) for k in ("openssl", "mhz_per_cpu", "num_cpus", "secure_heap")}
        res["batch_runs"] = {"ec": [], "rsa": []}
        for run in range(a.batch_runs):
            for profile, n in (("ec", a.ec), ("rsa", a.rsa)):
                say("batch %d/%d: %d %s requests, serve --until-idle --workers %d" % (
                    run + 1, a.batch_runs, n, profile, a.workers))
                r, _ = batch(ctx, profile, n, "batch-%s-%d" % (profile, run + 1))
                res["batch_runs"][profile].append(r)
                say("  %.1f requests/s over %.1f s (others busy: %.2f cores)" % (
                    r["throughput"], r["window_s"], r["others_busy_cores"]))
        # The figures of a profile: its mean throughput over the runs; the rest from the first run.
        res["batch"] = {}
        for profile, runs in res["batch_runs"].items():
            res["batch"][profile] = dict(runs[0], throughput=statistics.fmean(r["throughput"] for r in runs),
                                         runs=[r["throughput"] for r in runs])
        say("crypto-only limit (after)")
        after, _, _ = run_crypto(ctx, "after", limit_filter)
        res["crypto_before"], res["crypto_after"] = before, after
        if a.also_workers:
            say("batch: %d ec requests, serve --until-idle --workers %d" % (a.ec, a.also_workers))
            ctx.workers = a.also_workers
            try:
                r, _ = batch(ctx, "ec", a.ec, "batch-ec-workers-%d" % a.also_workers)
            finally:
                ctx.workers = a.workers
            res["batch_more_workers"] = dict(r, workers=a.also_workers)
            say("  %.1f requests/s" % r["throughput"])

    if "paced" in parts:
        res["paced"] = {}
        for profile in ("ec", "rsa"):
            rate = a.paced_load * res["batch"][profile]["throughput"]
            n = max(20, int(round(rate * a.paced_seconds)))
            say("paced: %d %s requests at %.1f/s (%.0f %% of the batch throughput)" % (n, profile, rate,
                                                                                    100 * a.paced_load))
            res["paced"][profile] = paced(ctx, profile, rate, n, "paced-" + profile)
            if a.fast_scan_ms:
                n = max(20, int(round(rate * a.paced_seconds / 2)))
                say("paced: %d %s requests at %.1f/s, scan_interval_ms %d" % (n, profile, rate, a.fast_scan_ms))
                res["paced"][profile + "-fast"] = paced(ctx, profile, rate, n, "paced-fast-" + profile,
                                                        a.fast_scan_ms)

    if "rss" in parts:
        say("RSS: %d queued (baseline)" % a.queue_base)
        rb, _ = batch(ctx, "ec", a.queue_base, "rss-base")
        res["rss_base"] = {"queued": a.queue_base, "peak_rss_kib": rb["peak_rss_kib"], "delivered": a.queue_base}
        say("RSS: %d queued" % a.queue)
        res["rss_queue"] = rss_queue(ctx, "ec", a.queue, "rss-queue", a.intake_timeout)
        say("  intake took %s s, %d delivered before SIGTERM" % (
            "%.1f" % res["rss_queue"]["intake_s"] if res["rss_queue"]["intake_s"] else "more than the timeout",
            res["rss_queue"]["delivered"]))
        # As many requests as that run delivered, queued and all processed: what
        # processing that many costs in memory, without the long queue.
        m = min(3000, max(a.queue_base, res["rss_queue"]["delivered"]))
        say("RSS: %d queued, all processed" % m)
        rm, _ = batch(ctx, "ec", m, "rss-mid")
        res["rss_mid"] = {"queued": m, "peak_rss_kib": rm["peak_rss_kib"], "delivered": m}

    if "fsync" in parts:
        say("fsync count and time: 100 ec requests under strace")
        res["fsync"] = fsync_profile(ctx, "ec", 100, "fsync-ec")
    if "perf" in parts:
        say("perf profile of an ec batch")
        res["perf"] = perf_profile(ctx, "ec", 300, "perf-ec")

    if "detail" in parts:
        say("crypto detail: one thread, and each step alone")
        one, _, cctx = run_crypto(ctx, "detail", "BM_Crypto/.*/threads:1$|BM_Step")
        res["crypto_detail"] = one
        res.setdefault("crypto_context", {k: cctx.get(k) for k in ("openssl", "mhz_per_cpu", "num_cpus",
                                                                    "secure_heap")})
    res["loadavg_end"] = os.getloadavg()
    res["elapsed_s"] = time.time() - t_start
    with open(a.results, "w") as f:
        json.dump(res, f, indent=1)
    report(res)


def report(res):
    w = res["workers"]
    print()
    print("pipeline bench  %s  %s CPUs  %s  load avg at start %s, at end %s" % (
        res["date"], res["cpus"], res.get("crypto_context", {}).get("openssl", ""),
        " ".join("%.2f" % x for x in res["loadavg_start"]), " ".join("%.2f" % x for x in res["loadavg_end"])))
    print("workers %d, scan_interval_ms %d; whole run %.0f s" % (w, res["scan_interval_ms"], res["elapsed_s"]))
    if "batch" in res:
        report_throughput(res)
    if "paced" in res:
        report_latency(res)
    if "rss_queue" in res:
        report_rss(res)
    if "fsync" in res:
        report_fsync(res)
    if "crypto_detail" in res:
        report_detail(res)
    if "perf" in res:
        report_perf(res)


NAMES = {"ec": "ec-p256", "rsa": "rsa2048"}


def report_throughput(res):
    w = res["workers"]
    print()
    print("1. throughput: end to end (serve --until-idle, first received -> last delivered) vs the crypto-only")
    print("   limit with %d threads (mean of the runs before and after the batches)" % w)
    print()
    fmt = "{:<9} {:>5} {:>10} {:>13} {:>12} {:>12} {:>8} {:>8} {:>7} {:>5} {:>6} {:>9} {:>6}"
    hdr = ("user key", "N", "e2e req/s", "runs", "minimal b/a", "full b/a", "e2e/min", "e2e/full", "steady",
           "busy", "others", "daemon ms", "sim ms")
    print(fmt.format(*hdr))
    print(fmt.format(*("-" * len(h) for h in hdr)))
    names = NAMES
    verdicts = []
    for p in ("ec", "rsa"):
        b = res["batch"][p]
        k = "BM_Crypto/%s/%%s/threads:%d" % (names[p], w)
        mb, ma = res["crypto_before"].get(k % "minimal"), res["crypto_after"].get(k % "minimal")
        fb, fa = res["crypto_before"].get(k % "full"), res["crypto_after"].get(k % "full")
        m, f = (mb + ma) / 2, (fb + fa) / 2
        runs = "/".join("%.1f" % x for x in b["runs"])
        verdicts.append("%s: e2e / crypto-only = %.2f (minimal), %.2f (full): target %s" % (
            names[p], b["throughput"] / m, b["throughput"] / f,
            "met" if b["throughput"] / m >= 0.8 else ("met against full only" if b["throughput"] / f >= 0.8
                                                       else "not met")))
        print(fmt.format(names[p], b["n"], "%.1f" % b["throughput"], runs, "%.0f/%.0f" % (mb, ma) if m > 20 else
                         "%.2f/%.2f" % (mb, ma), "%.0f/%.0f" % (fb, fa) if f > 20 else "%.2f/%.2f" % (fb, fa),
                         "%.2f" % (b["throughput"] / m), "%.2f" % (b["throughput"] / f),
                         "%.1f" % b["steady_throughput"] if b["steady_throughput"] else "-",
                         "%.2f" % b["machine_busy_cores"], "%.2f" % b["others_busy_cores"], "%.2f" % b["daemon_cpu_ms_per_request"],
                         "%.2f" % b["sim_cpu_ms_per_request"] if b["sim_cpu_ms_per_request"] is not None else "-"))
    print()
    print("   e2e = mean of the runs; minimal/full b/a = the crypto-only limit before/after the batches (req/s);")
    print("   steady = delivered/s after the first 10 % of a run's requests; busy = CPU cores busy (whole machine) and")
    print("   others = busy with anything but the daemon and the simulator, during the first run; daemon/sim ms = their")
    print("   CPU per request (first run).")
    print()
    for v in verdicts:
        print("   " + v)
    mw = res.get("batch_more_workers")
    if mw:
        print("   ec-p256 with %d workers: %.1f req/s = %.2f x the %d-worker batch (daemon CPU %.2f ms/request, "
              "%.2f cores busy)" % (mw["workers"], mw["throughput"], mw["throughput"] / res["batch"]["ec"]["throughput"],
                                    w, mw["daemon_cpu_ms_per_request"], mw["machine_busy_cores"]))


def report_latency(res):
    names = NAMES
    print()
    print("2. latency per request, ms (p50 / p99)")
    print()
    fmt = "{:<9} {:<54} {:>6} {:>9} {:>9} {:>9}"
    hdr = ("user key", "what", "N", "p50", "p99", "mean")
    print(fmt.format(*hdr))
    print(fmt.format(*("-" * len(h) for h in hdr)))
    for p in ("ec", "rsa"):
        for variant in (p, p + "-fast"):
            if variant not in res["paced"]:
                continue
            r = res["paced"][variant]
            label = "paced %.1f/s, scan %d ms" % (r["rate"], r["scan_ms"])
            for key, what in (("service_ms", "received -> delivered"), ("from_drop_ms", "dropped -> delivered"),
                              ("enroll_ms", " of which received -> issued"),
                              ("deliver_ms", " of which issued -> delivered")):
                v = r[key]
                print(fmt.format(names[p], label + ": " + what, r["n"], "%.1f" % v["p50"], "%.1f" % v["p99"],
                                 "%.1f" % v["mean"]))
        b = res["batch"][p]
        print(fmt.format(names[p], "batch of %d: queued -> delivered" % b["n"], b["n"],
                         "%.0f" % b["queue_latency_ms"]["p50"], "%.0f" % b["queue_latency_ms"]["p99"], ""))

def report_rss(res):
    print()
    rq, rb = res["rss_queue"], res["rss_base"]
    print("3. peak RSS (VmHWM) of the daemon, ec-p256")
    print()
    print("   %5d queued: %6.1f MiB (all %d delivered)" % (rb["queued"], rb["peak_rss_kib"] / 1024, rb["delivered"]))
    print("   %5d queued: %6.1f MiB (intake of the whole queue: %s s; %d delivered before SIGTERM; %s)" % (
        rq["queued"], rq["peak_rss_kib"] / 1024, "%.1f" % rq["intake_s"] if rq["intake_s"] else "not finished",
        rq["delivered"], rq["stopped"]))
    if "rss_mid" in res:
        rm = res["rss_mid"]
        print("   %5d queued: %6.1f MiB (all %d delivered: as many as the long queue's run processed)" % (
            rm["queued"], rm["peak_rss_kib"] / 1024, rm["delivered"]))
    if rq.get("rss_at_intake_kib"):
        print("   RSS of the %d-queue run when its intake had taken the whole queue: %.1f MiB (%d delivered by then)"
              % (rq["queued"], rq["rss_at_intake_kib"] / 1024, rq["delivered_at_intake"]))
    print("   ratio %d queued / %d queued: %.2f" % (rq["queued"], rb["queued"], rq["peak_rss_kib"] / rb["peak_rss_kib"]))


def report_fsync(res):
    print()
    fs = res["fsync"]
    print("4. syncs of %d ec requests under strace (%.1f req/s there): per request, time each, at most at once,"
          % (fs["n"], fs["throughput"]))
    print("   and the share of the run's wall time during which at least one was running")
    print()
    for kind, who in (("fdatasync", "SQLite WAL commits, under the store's lock"),
                      ("fsync", "write_atomic: file + directory; spool claim")):
        k = fs[kind]
        print("   %-9s %5.1f/request  %.2f ms each  %4.1f ms/request  at most %d at once  busy %3.0f %%   (%s)" % (
            kind, k["per_request"], k["ms_each"], k["ms_per_request"], k["max_concurrent"],
            100 * k["busy_share"], who))
    print("   either    busy %3.0f %% of the run" % (100 * fs["any_busy_share"]))


def report_detail(res):
    print()
    print("5. crypto detail (one thread; BM_Step = one step alone), requests or steps per second, and us each")
    print()
    for k, v in sorted(res["crypto_detail"].items()):
        print("   %-42s %10.1f/s %10.0f us" % (k, v, 1e6 / v))


def report_perf(res):
    print()
    print("6. perf (daemon, ec batch): self time by library and by function; inclusive time of the daemon's functions")
    for part in ("dso", "self", "inclusive"):
        print()
        for line in res["perf"][part]:
            print("   " + line)


if __name__ == "__main__":
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))
    try:
        main()
    except RuntimeError as e:
        print("pipeline-bench: " + str(e), file=sys.stderr)
        sys.exit(1)
    finally:
        stop_children()
