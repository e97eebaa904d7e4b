#!/usr/bin/env python3
"""Multipath goodput and failover in the lab (deploy/lab.sh): the driver behind
perf/lab-multipath.sh (run that; it builds the binaries and sets the paths).

For each run, each mode and each case: bring the lab up in that mode, shape both
access links, download a fixed byte count (DURATION seconds at the sum of the link
rates) from the test server with a real Linux MPTCP client, check it byte for byte
against the server's record, and record goodput, the fraction of the link sum, the
bytes each access link delivered to the client, and the joins the client saw. Then
the failover case: a download over DSL 40 Mbit/s 10 ms + LTE 20 Mbit/s 40 ms, DSL
cut GAP_CUT s after the start and restored GAP_RESTORE s later, the client reporting
the longest time without received bytes.

Modes (MODES, default all but aggregate-hshold, in this order):
  aggregate, overflow, failover   hacd (DPDK) with LAB_SCHEDULER=<policy>; the Linux
                                  client sends a Convert request in its SYN. With an
                                  hacd that predates [multipath], lab.sh runs it
                                  without the section and the rows say so ("mp" column)
  aggregate-hshold                aggregate with [multipath] handshake_hold = true
                                  (LAB_HANDSHAKE_HOLD=1; docs/multipath.md)
  kernel-e2e                      Linux MPTCP on both ends (LAB_KERNEL_E2E=1: kernel
                                  routing in hac-conc, server.py --mptcp)
  kernel-proxy                    the Linux-kernel MPTCP proxy (LAB_KERNEL_PROXY=1:
                                  `mptcpize run socat` in hac-conc) to a plain server

Subcommands:
  run      the measurement (environment below); writes CSV rows as they come, then
           the report (table, SVG)
  report   CSV -> table on stdout + SVG (no lab needed)

Environment of `run`: RUNS (1), DURATION (30 s per transfer), WARMUP (0: before each
measured transfer, one of WARMUP seconds at the link sum, not measured, in every mode
alike: a subscriber that has been online, as hacd's path memory and the kernel's
tcp_metrics see it), MODES, CASES (names
from the CASES table below, default all but dsl-lte-clean), GAP (1: the failover case), GAP_CUT (10),
GAP_RESTORE (8), LAB_PREFIX (hacmp), LAB_RUN, HACD, LINKEMU, CSV
(docs/perf-multipath.csv), SVG (docs/perf-multipath.svg), RAW (JSON lines of every
client and server result; default /tmp/lab-multipath-<prefix>.jsonl).
"""

import csv
import json
import os
import signal
import statistics
import subprocess
import sys
import threading
import time

ROOT = os.path.abspath(os.path.join(os.path.dirname(__file__), ".."))
SCRIPTS = os.path.join(ROOT, "dataplane/harness/scripts")
LAB = os.path.join(ROOT, "deploy/lab.sh")
# Convert request (RFC 8803 §6): Connect TLV to [::ffff:198.51.100.2]:8080.
CONVERT = "010622630a051f9000000000000000000000ffffc6336402"
MAX_BYTES = 256 << 20  # client.py / server.py cap

# name: (label, dsl (rate Mbit/s, one-way delay ms, loss %), lte (rate, delay, loss))
CASES = {
    "10+10": ("10+10 Mbit/s", (10, 0, 0), (10, 0, 0)),
    "30+10": ("30+10 Mbit/s", (30, 0, 0), (10, 0, 0)),
    "10+10-delay": ("10+10 Mbit/s, 1 ms vs 50 ms", (10, 1, 0), (10, 50, 0)),
    "dsl-lte": ("DSL 40/10 ms + LTE 20/40 ms, 0.5 % loss", (40, 10, 0), (20, 40, 0.5)),
    # The lab failover test's links (no loss): not in the default set.
    "dsl-lte-clean": ("DSL 40/10 ms + LTE 20/40 ms", (40, 10, 0), (20, 40, 0)),
}
DEFAULT_CASES = ["10+10", "30+10", "10+10-delay", "dsl-lte"]
GAP_LINKS = ((40, 10, 0), (20, 40, 0))
GAP_MIN = 0.05  # gaps listed by the client (s)
MODES = ["aggregate", "aggregate-hshold", "overflow", "failover", "kernel-e2e", "kernel-proxy"]
DEFAULT_MODES = [m for m in MODES if m != "aggregate-hshold"]
HACD_MODES = ("aggregate", "aggregate-hshold", "overflow", "failover")
FIELDS = [
    "run", "case", "mode", "mp", "dsl_mbit", "dsl_ms", "dsl_loss", "lte_mbit", "lte_ms",
    "lte_loss", "link_sum_mbit", "bytes", "bytes_recv", "ok", "elapsed_s", "goodput_mbit",
    "fraction", "dsl_rx_mb", "lte_rx_mb", "joins", "fallback", "max_gap_s", "max_gap_at_s",
    "cut_at_s", "cut_gap_s", "restore_gap_s", "load1", "error",
]


def log(*a):
    print("lab-multipath:", *a, file=sys.stderr, flush=True)


class Lab:
    def __init__(self, prefix, run_dir):
        self.prefix = prefix
        self.run_dir = run_dir
        self.env = dict(os.environ, LAB_PREFIX=prefix, LAB_RUN=run_dir)
        for k in ("LAB_SCHEDULER", "LAB_MULTIPATH", "LAB_KERNEL_E2E", "LAB_KERNEL_PROXY",
                  "LAB_KERNEL_ROUTER", "LAB_HANDSHAKE_HOLD"):
            self.env.pop(k, None)
        self.mode_env = {}

    def ns(self, which):
        return "%s-%s" % (self.prefix, which)

    def sh(self, *args, limit=120, check=True):
        env = dict(self.env, **self.mode_env)
        p = subprocess.run(["timeout", "-k", "5", str(limit), "bash", LAB, *args], env=env,
                           capture_output=True, text=True)
        if check and p.returncode != 0:
            raise RuntimeError("lab.sh %s failed (%d): %s" % (" ".join(args), p.returncode,
                                                               p.stderr.strip()[-800:]))
        return p

    def up(self, mode):
        self.sh("down", check=False)
        if mode == "aggregate-hshold":
            self.mode_env = {"LAB_SCHEDULER": "aggregate", "LAB_MULTIPATH": "auto",
                             "LAB_HANDSHAKE_HOLD": "1"}
        elif mode in HACD_MODES:
            self.mode_env = {"LAB_SCHEDULER": mode, "LAB_MULTIPATH": "auto"}
        elif mode == "kernel-e2e":
            self.mode_env = {"LAB_KERNEL_E2E": "1"}
        elif mode == "kernel-proxy":
            self.mode_env = {"LAB_KERNEL_PROXY": "1"}
        else:
            raise ValueError(mode)
        self.sh("up", limit=150)

    def down(self):
        self.sh("down", check=False)

    def multipath_note(self):
        try:
            with open(os.path.join(self.run_dir, "multipath")) as f:
                return f.read().strip()
        except OSError:
            return ""

    def shape(self, link, p):
        self.sh("shape", link, str(p[0]), str(p[1]), str(p[2]))

    def iface_rx(self):
        """rx bytes of the client's dsl0 and lte0 (what each access link delivered)."""
        out = subprocess.run(["ip", "-n", self.ns("client"), "-s", "-j", "link", "show"],
                             capture_output=True, text=True, timeout=10).stdout
        got = {}
        for l in json.loads(out or "[]"):
            st = l.get("stats64") or l.get("stats") or {}
            got[l.get("ifname")] = st.get("rx", {}).get("bytes", 0)
        return got.get("dsl0", 0), got.get("lte0", 0)

    def mptcp_counter(self, ns, name):
        out = subprocess.run(["ip", "netns", "exec", self.ns(ns), "cat", "/proc/net/netstat"],
                             capture_output=True, text=True, timeout=10).stdout.splitlines()
        for i in range(0, len(out) - 1, 2):
            keys, vals = out[i].split(), out[i + 1].split()
            if keys and keys[0] == "MPTcpExt:":
                d = dict(zip(keys[1:], vals[1:]))
                return int(d.get(name, 0))
        return 0


def stop_server(p, out, wait_s):
    """Closes a test server's stdin (it exits), kills it after wait_s, closes its log."""
    try:
        p.stdin.close()
    except OSError:
        pass
    try:
        p.wait(wait_s)
    except subprocess.TimeoutExpired:
        p.kill()
        p.wait()
    out.close()


class Server:
    """server.py in the server namespace; exits when its stdin closes."""

    def __init__(self, lab, port, mptcp):
        self.path = os.path.join(lab.run_dir, "perf-server-%d.log" % port)
        self.out = open(self.path, "w")
        cmd = ["ip", "netns", "exec", lab.ns("server"), "python3", "-u",
               os.path.join(SCRIPTS, "server.py"), "--bind", "198.51.100.2", "--port", str(port),
               "--io-timeout", "30", "--lifetime", "3600"]
        if mptcp:
            cmd.append("--mptcp")
        if os.environ.get("SERVER_CC"):
            cmd += ["--cc", os.environ["SERVER_CC"]]
        self.p = subprocess.Popen(cmd, stdin=subprocess.PIPE, stdout=self.out,
                                  stderr=subprocess.STDOUT)
        for _ in range(100):
            if '"ready"' in open(self.path).read():
                return
            if self.p.poll() is not None:
                break
            time.sleep(0.1)
        raise RuntimeError("test server did not start: %s" % open(self.path).read()[-500:])

    def record(self, cid, wait=10.0):
        deadline = time.monotonic() + wait
        while time.monotonic() < deadline:
            for line in open(self.path):
                if '"conn"' in line and ('"id": "%s"' % cid) in line:
                    return json.loads(line)
            time.sleep(0.2)
        return None

    def stop(self):
        stop_server(self.p, self.out, 5)


def client_cmd(lab, mode, cid, nbytes, timeout, gap_from):
    cmd = ["ip", "netns", "exec", lab.ns("client"), "python3", os.path.join(SCRIPTS, "client.py"),
           "--mptcp", "--late-shutdown", "--id", cid, "--down", str(nbytes),
           "--timeout", "%.0f" % timeout]
    if mode in HACD_MODES:
        cmd += ["--target", "192.0.2.1", "--port", "5124", "--convert-hex", CONVERT,
                "--request-in-syn"]
    elif mode == "kernel-e2e":
        cmd += ["--target", "198.51.100.2", "--port", "8080"]
    else:  # kernel-proxy: socat relays 192.0.2.1:5124 to 198.51.100.2:5201
        cmd += ["--target", "192.0.2.1", "--port", "5124"]
    if gap_from is not None:
        # The longest stall that ends after (about) the cut: the failover gap.
        cmd += ["--gaps", "--gap-from", "%.3f" % gap_from, "--gap-min", "%g" % GAP_MIN]
    return cmd


def transfer(lab, server, mode, nbytes, timeout, cut=None, restore=None, raw=None):
    """One download; with cut/restore (s after start) the DSL link goes down and up."""
    cid = "mp%d%04d" % (os.getpid(), transfer.n)
    transfer.n += 1
    dsl0, lte0 = lab.iface_rx()
    joins0 = lab.mptcp_counter("client", "MPJoinSynAckRx")
    events = {}

    def cutter(t0):
        time.sleep(max(0.0, t0 + cut - time.monotonic()))
        if p.poll() is None:
            lab.sh("link", "dsl", "down")
            events["cut"] = time.monotonic() - t0
            time.sleep(max(0.0, t0 + cut + restore - time.monotonic()))
        lab.sh("link", "dsl", "up")
        events["restore"] = time.monotonic() - t0

    t0 = time.monotonic()
    gap_from = None if cut is None else max(0.0, cut - 0.5)
    p = subprocess.Popen(client_cmd(lab, mode, cid, nbytes, timeout, gap_from),
                         stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    th = None
    if cut is not None:
        th = threading.Thread(target=cutter, args=(t0,), daemon=True)
        th.start()
    try:
        out, err = p.communicate(timeout=timeout + 15)
    except subprocess.TimeoutExpired:
        p.kill()
        out, err = p.communicate()
    if th is not None:
        th.join(timeout=cut + restore + 30)
        if "restore" not in events:
            lab.sh("link", "dsl", "up", check=False)
    line = next((l for l in reversed(out.splitlines()) if l.startswith("{")), None)
    r = json.loads(line) if line else {"error": "no client result: %s" % err.strip()[-300:],
                                       "bytes_recv": 0, "elapsed": 0}
    srv = server.record(cid) if line else None
    dsl1, lte1 = lab.iface_rx()
    joins1 = lab.mptcp_counter("client", "MPJoinSynAckRx")
    ok = (not r.get("error") and r.get("eof") and r.get("bytes_recv") == nbytes
          and srv is not None and not srv.get("error")
          and srv.get("sent_sha256") == r.get("recv_sha256") and srv.get("bytes_sent") == nbytes)
    if raw is not None:
        raw.write(json.dumps({"client": r, "server": srv, "events": events}) + "\n")
        raw.flush()
    el = r.get("elapsed") or 0
    # The stall the cut causes (a gap beginning between just before the cut and the
    # restore) and the one the restore causes (beginning after it); client times are
    # a few tens of ms behind the driver's (process start-up).
    cut_gap = restore_gap = ""
    if "cut" in events and r.get("gaps") is not None:
        c0, c1 = events["cut"] - 0.5, events.get("restore", 1e9)
        cg = [g for at, g in r["gaps"] if c0 <= at < c1]
        rg = [g for at, g in r["gaps"] if at >= c1]
        cut_gap = "%.3f" % max(cg) if cg else "<%g" % GAP_MIN
        restore_gap = "%.3f" % max(rg) if rg else "<%g" % GAP_MIN
    err_txt = r.get("error") or (srv or {}).get("error") or ("" if ok else "not byte-exact")
    return {
        "bytes_recv": r.get("bytes_recv", 0),
        "ok": int(bool(ok)),
        "elapsed_s": "%.3f" % el,
        "goodput_mbit": "%.2f" % (8 * r.get("bytes_recv", 0) / el / 1e6) if el else "",
        "dsl_rx_mb": "%.2f" % ((dsl1 - dsl0) / 1e6),
        "lte_rx_mb": "%.2f" % ((lte1 - lte0) / 1e6),
        "joins": joins1 - joins0,
        "fallback": "" if r.get("fallback") is None else int(r["fallback"]),
        "max_gap_s": "" if r.get("max_gap") is None else "%.3f" % r["max_gap"],
        "max_gap_at_s": "" if r.get("max_gap_at") is None else "%.3f" % r["max_gap_at"],
        "cut_at_s": "%.3f" % events["cut"] if "cut" in events else "",
        "cut_gap_s": cut_gap,
        "restore_gap_s": restore_gap,
        "error": (err_txt or "")[:200],
    }


transfer.n = 0


def cmd_run():
    runs = int(os.environ.get("RUNS", "1"))
    duration = float(os.environ.get("DURATION", "30"))
    warmup = float(os.environ.get("WARMUP", "0"))
    modes = os.environ.get("MODES", " ".join(DEFAULT_MODES)).split()
    cases = os.environ.get("CASES", " ".join(DEFAULT_CASES)).split()
    gap = os.environ.get("GAP", "1") == "1"
    gap_cut = float(os.environ.get("GAP_CUT", "10"))
    gap_restore = float(os.environ.get("GAP_RESTORE", "8"))
    prefix = os.environ.get("LAB_PREFIX", "hacmp")
    run_dir = os.environ.get("LAB_RUN", "/run/%s-lab" % prefix)
    csv_path = os.environ.get("CSV", os.path.join(ROOT, "docs/perf-multipath.csv"))
    svg_path = os.environ.get("SVG", os.path.join(ROOT, "docs/perf-multipath.svg"))
    raw_path = os.environ.get("RAW", "/tmp/lab-multipath-%s.jsonl" % prefix)
    for m in modes:
        if m not in MODES:
            sys.exit("unknown mode %s (one of %s)" % (m, " ".join(MODES)))
    for c in cases:
        if c not in CASES:
            sys.exit("unknown case %s (one of %s)" % (c, " ".join(CASES)))
    lab = Lab(prefix, run_dir)
    raw = open(raw_path, "w")
    f = open(csv_path, "w", newline="")
    w = csv.DictWriter(f, fieldnames=FIELDS)
    w.writeheader()
    started = time.strftime("%Y-%m-%d %H:%M:%S")
    log("start %s: runs=%d duration=%gs warmup=%gs modes=%s cases=%s gap=%s; lab prefix %s"
        % (started, runs, duration, warmup, ",".join(modes), ",".join(cases), gap, prefix))
    try:
        for run in range(1, runs + 1):
            for mode in modes:
                lab.up(mode)
                mp = lab.multipath_note() if mode in HACD_MODES else ""
                port = 5201 if mode == "kernel-proxy" else 8080
                server = Server(lab, port, mode == "kernel-e2e")
                try:
                    todo = [(c,) + CASES[c] for c in cases]
                    if gap:
                        todo.append(("failover-gap", "cut DSL", GAP_LINKS[0], GAP_LINKS[1]))
                    for name, _label, dsl, lte in todo:
                        lab.shape("dsl", dsl)
                        lab.shape("lte", lte)
                        time.sleep(0.5)
                        total = dsl[0] + lte[0]
                        if name == "failover-gap":
                            # Long enough to run well past the cut on LTE alone.
                            nbytes = int((total * gap_cut + lte[0] * (gap_restore + 4)) * 1e6 / 8)
                            kw = dict(cut=gap_cut, restore=gap_restore)
                            limit = gap_cut + gap_restore + 120
                        else:
                            nbytes = int(total * 1e6 / 8 * duration)
                            kw = {}
                            limit = 3 * duration + 60
                        nbytes = min(nbytes, MAX_BYTES)
                        if warmup > 0:
                            wres = transfer(lab, server, mode, int(total * 1e6 / 8 * warmup),
                                            3 * warmup + 60, raw=raw)
                            if not wres["ok"]:
                                log("warm-up %s %s failed: %s" % (mode, name, wres["error"]))
                        res = transfer(lab, server, mode, nbytes, limit, raw=raw, **kw)
                        row = {
                            "run": run, "case": name, "mode": mode, "mp": mp,
                            "dsl_mbit": dsl[0], "dsl_ms": dsl[1], "dsl_loss": dsl[2],
                            "lte_mbit": lte[0], "lte_ms": lte[1], "lte_loss": lte[2],
                            "link_sum_mbit": total, "bytes": nbytes,
                            "load1": "%.2f" % os.getloadavg()[0],
                            "fraction": "%.3f" % (float(res["goodput_mbit"]) / total)
                            if res["goodput_mbit"] else "",
                        }
                        row.update(res)
                        w.writerow(row)
                        f.flush()
                        log("run %d %-12s %-13s %s Mbit/s (%s of %d) ok=%s dsl %s MB lte %s MB "
                            "joins %s%s%s" % (
                                run, mode, name, res["goodput_mbit"], row["fraction"], total,
                                res["ok"], res["dsl_rx_mb"], res["lte_rx_mb"], res["joins"],
                                " gap at the cut %s s, after the restore %s s (cut at %s s)"
                                % (res["cut_gap_s"], res["restore_gap_s"], res["cut_at_s"])
                                if name == "failover-gap" else "",
                                " error: " + res["error"] if res["error"] else ""))
                finally:
                    server.stop()
                    lab.down()
    finally:
        lab.down()
        f.close()
        raw.close()
    log("CSV %s, raw results %s" % (csv_path, raw_path))
    report(csv_path, svg_path, "lab run %s, RUNS=%d, DURATION=%gs, WARMUP=%gs"
           % (started, runs, duration, warmup))


# ---------------------------------------------------------------------------------
# report


def median(xs):
    return statistics.median(xs) if xs else None


def load(csv_path):
    with open(csv_path, newline="") as f:
        return list(csv.DictReader(f))


def summarize(rows):
    """{(case, mode): {...medians...}} over the runs (failed transfers count as 0)."""
    out = {}
    for r in rows:
        out.setdefault((r["case"], r["mode"]), []).append(r)
    summ = {}
    for k, rs in out.items():
        good = [float(r["goodput_mbit"] or 0) if r["ok"] == "1" else 0.0 for r in rs]
        frac = [float(r["fraction"] or 0) if r["ok"] == "1" else 0.0 for r in rs]
        def gap_val(v):
            return float(v.lstrip("<")) if v else None

        gaps = [gap_val(r.get("cut_gap_s", "")) for r in rs if r.get("cut_gap_s")]
        rgaps = [gap_val(r.get("restore_gap_s", "")) for r in rs if r.get("restore_gap_s")]
        summ[k] = {
            "n": len(rs),
            "ok": sum(r["ok"] == "1" for r in rs),
            "mbit": median(good),
            "frac": median(frac),
            "lte_share": median([float(r["lte_rx_mb"] or 0)
                                 / max(1e-9, float(r["lte_rx_mb"] or 0) + float(r["dsl_rx_mb"] or 0))
                                 for r in rs]),
            "joins": median([int(r["joins"] or 0) for r in rs]),
            "gap": median(gaps),
            "rgap": median(rgaps),
            "mp": rs[0]["mp"],
            "sum": float(rs[0]["link_sum_mbit"]),
        }
    return summ


def ordered(seq, order):
    return sorted(set(seq), key=lambda x: order.index(x) if x in order else len(order))


def report(csv_path, svg_path, title=""):
    rows = load(csv_path)
    if not rows:
        print("no rows in %s" % csv_path)
        return
    summ = summarize(rows)
    case_order = list(CASES) + ["failover-gap"]
    modes = ordered([r["mode"] for r in rows], MODES)
    cases = [c for c in ordered([r["case"] for r in rows], case_order) if c != "failover-gap"]
    runs = len({r["run"] for r in rows})
    print("\nGoodput, Mbit/s (fraction of the link sum); median of %d run(s); "
          "* = not every transfer byte-exact" % runs)
    w = 20
    print("%-14s %6s " % ("case", "sum") + "".join("%-*s" % (w, m) for m in modes))
    for c in cases:
        cells = []
        for m in modes:
            s = summ.get((c, m))
            if not s:
                cells.append("-")
                continue
            cells.append("%.1f (%.3f)%s" % (s["mbit"], s["frac"], "" if s["ok"] == s["n"] else "*"))
        print("%-14s %6.0f " % (c, summ[(c, modes[0])]["sum"] if (c, modes[0]) in summ else 0)
              + "".join("%-*s" % (w, x) for x in cells))
    print("\nLTE share of the bytes delivered to the client / joins accepted by the client:")
    for c in cases:
        print("%-14s        " % c + "".join(
            "%-*s" % (w, "%.2f / %d" % (summ[(c, m)]["lte_share"], summ[(c, m)]["joins"])
                      if (c, m) in summ else "-") for m in modes))
    if any(r["case"] == "failover-gap" for r in rows):
        print("\nFailover (DSL 40/10 ms + LTE 20/40 ms, DSL cut during the download, restored "
              "later): longest time without received bytes (s, median; %g = none longer than "
              "that) after the cut and after the restore; byte-exact transfers" % GAP_MIN)
        for m in modes:
            s = summ.get(("failover-gap", m))
            if s:
                f = lambda v: "%.3f" % v if v is not None else "-"  # noqa: E731
                print("  %-14s cut %7s   restore %7s   %d/%d"
                      % (m, f(s["gap"]), f(s["rgap"]), s["ok"], s["n"]))
    notes = {m: summ[(c, m)]["mp"] for (c, m) in summ if summ[(c, m)]["mp"]}
    for m, note in notes.items():
        print("hacd %s: [multipath] %s" % (m, note))
    # Targets: the kernel proxy's fraction and >= 0.93 on every case (aggregate).
    if "aggregate" in modes:
        bad = []
        for c in cases:
            a, k = summ.get((c, "aggregate")), summ.get((c, "kernel-proxy"))
            if a and (a["frac"] < 0.93 or (k and a["frac"] < k["frac"])):
                bad.append(c)
        print("targets (aggregate >= 0.93 and >= kernel-proxy on every case): %s"
              % ("met" if not bad else "missed on " + ", ".join(bad)))
    svg(summ, modes, cases, svg_path, title)
    print("plot: %s" % svg_path)


COLORS = {
    "aggregate": "#1f77b4", "aggregate-hshold": "#2ca02c", "overflow": "#17becf",
    "failover": "#9edae5",
    "kernel-e2e": "#ff7f0e", "kernel-proxy": "#7f7f7f",
}


def svg(summ, modes, cases, path, title):
    try:
        import matplotlib  # noqa: F401
        return svg_matplotlib(summ, modes, cases, path, title)
    except ImportError:
        pass
    W, H = 900, 560
    left, top, pw, ph = 70, 60, 560, 300
    gap_left, gap_w = 690, 110
    o = ['<svg xmlns="http://www.w3.org/2000/svg" width="%d" height="%d" '
         'font-family="sans-serif" font-size="12">' % (W, H),
         '<rect width="100%" height="100%" fill="white"/>',
         '<text x="%d" y="22" font-size="15" font-weight="bold">hac multipath in the lab: '
         'goodput / sum of link rates</text>' % left,
         '<text x="%d" y="40" fill="#555">%s</text>' % (left, esc(title))]
    # y axis 0..1
    for i in range(0, 11):
        v = i / 10
        y = top + ph - v * ph
        o.append('<line x1="%d" y1="%.1f" x2="%d" y2="%.1f" stroke="#eee"/>' % (left, y, left + pw, y))
        o.append('<text x="%d" y="%.1f" text-anchor="end">%.1f</text>' % (left - 6, y + 4, v))
    y93 = top + ph - 0.93 * ph
    o.append('<line x1="%d" y1="%.1f" x2="%d" y2="%.1f" stroke="#d62728" stroke-dasharray="5,4"/>'
             % (left, y93, left + pw, y93))
    o.append('<text x="%d" y="%.1f" fill="#d62728">0.93</text>' % (left + pw + 4, y93 + 4))
    o.append('<line x1="%d" y1="%d" x2="%d" y2="%d" stroke="black"/>' % (left, top, left, top + ph))
    o.append('<line x1="%d" y1="%d" x2="%d" y2="%d" stroke="black"/>'
             % (left, top + ph, left + pw, top + ph))
    n = max(1, len(cases))
    gw = pw / n
    bw = gw * 0.8 / max(1, len(modes))
    for ci, c in enumerate(cases):
        x0 = left + ci * gw + gw * 0.1
        for mi, m in enumerate(modes):
            s = summ.get((c, m))
            if not s:
                continue
            h = max(0.0, min(1.0, s["frac"])) * ph
            x = x0 + mi * bw
            o.append('<rect x="%.1f" y="%.1f" width="%.1f" height="%.1f" fill="%s">'
                     '<title>%s %s: %.1f Mbit/s, %.3f</title></rect>'
                     % (x, top + ph - h, bw - 1, h, COLORS.get(m, "#999"), c, m, s["mbit"], s["frac"]))
        label = CASES.get(c, (c,))[0]
        words = label.split(", ")
        for li, part in enumerate(words):
            o.append('<text x="%.1f" y="%d" text-anchor="middle">%s</text>'
                     % (left + ci * gw + gw / 2, top + ph + 16 + 14 * li, esc(part)))
    # failover gap panel
    gaps = [(m, summ[("failover-gap", m)]["gap"]) for m in modes
            if ("failover-gap", m) in summ and summ[("failover-gap", m)]["gap"] is not None]
    if gaps:
        gmax = max(1.0, max(g for _, g in gaps) * 1.1)
        o.append('<text x="%d" y="%d" font-weight="bold">failover gap, s</text>' % (gap_left, top - 8))
        bh = min(28, ph / max(1, len(gaps)) - 6)
        for i, (m, g) in enumerate(gaps):
            y = top + i * (bh + 6)
            wdt = g / gmax * gap_w
            o.append('<rect x="%d" y="%.1f" width="%.1f" height="%.1f" fill="%s"/>'
                     % (gap_left, y, wdt, bh, COLORS.get(m, "#999")))
            o.append('<text x="%.1f" y="%.1f">%.2f %s</text>'
                     % (gap_left + wdt + 4, y + bh / 2 + 4, g, esc(m)))
        x3 = gap_left + 0.3 / gmax * gap_w
        o.append('<line x1="%.1f" y1="%d" x2="%.1f" y2="%.1f" stroke="#d62728" '
                 'stroke-dasharray="5,4"/>' % (x3, top - 4, x3, top + len(gaps) * (bh + 6)))
        o.append('<text x="%.1f" y="%.1f" fill="#d62728">0.3 s</text>'
                 % (x3 + 2, top + len(gaps) * (bh + 6) + 12))
    # legend
    ly = top + ph + 60
    for i, m in enumerate(modes):
        x = left + i * 150
        label = ("hacd " + m) if m in HACD_MODES else m
        o.append('<rect x="%d" y="%d" width="12" height="12" fill="%s"/>' % (x, ly, COLORS.get(m, "#999")))
        o.append('<text x="%d" y="%d">%s</text>' % (x + 16, ly + 10, esc(label)))
    notes = sorted({s["mp"] for s in summ.values() if s["mp"]})
    for i, note in enumerate(notes):
        o.append('<text x="%d" y="%d" fill="#555">hacd [multipath]: %s</text>'
                 % (left, ly + 34 + 14 * i, esc(note)))
    o.append("</svg>")
    with open(path, "w") as f:
        f.write("\n".join(o) + "\n")


def svg_matplotlib(summ, modes, cases, path, title):
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, (ax, ax2) = plt.subplots(1, 2, figsize=(11, 4.8), gridspec_kw={"width_ratios": [3, 1]})
    n = len(modes)
    bw = 0.8 / max(1, n)
    for mi, m in enumerate(modes):
        xs, ys = [], []
        for ci, c in enumerate(cases):
            s = summ.get((c, m))
            if s:
                xs.append(ci - 0.4 + bw * (mi + 0.5))
                ys.append(s["frac"])
        ax.bar(xs, ys, bw, label=("hacd " + m) if m in HACD_MODES else m, color=COLORS.get(m))
    ax.axhline(0.93, color="#d62728", ls="--", lw=1)
    ax.set_xticks(range(len(cases)))
    ax.set_xticklabels([CASES.get(c, (c,))[0].replace(", ", "\n") for c in cases], fontsize=8)
    ax.set_ylim(0, 1)
    ax.set_ylabel("goodput / sum of link rates")
    ax.set_title(title, fontsize=9)
    ax.legend(fontsize=8, loc="lower right")
    gaps = [(m, summ[("failover-gap", m)]["gap"]) for m in modes
            if ("failover-gap", m) in summ and summ[("failover-gap", m)]["gap"] is not None]
    if gaps:
        ax2.barh([m for m, _ in gaps], [g for _, g in gaps], color=[COLORS.get(m) for m, _ in gaps])
        ax2.axvline(0.3, color="#d62728", ls="--", lw=1)
        ax2.set_xlabel("failover gap, s")
        ax2.invert_yaxis()
    fig.tight_layout()
    fig.savefig(path, format="svg")


def esc(s):
    return str(s).replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")


def main():
    # SIGTERM (the wrapper's `timeout`) unwinds like an exception, so the lab goes down.
    signal.signal(signal.SIGTERM, lambda *_: sys.exit("lab-multipath: terminated"))
    cmd = sys.argv[1] if len(sys.argv) > 1 else "run"
    if cmd == "run":
        cmd_run()
    elif cmd == "report":
        if len(sys.argv) < 3:
            sys.exit("usage: lab_multipath.py report CSV [SVG]")
        svg_path = sys.argv[3] if len(sys.argv) > 3 else os.path.splitext(sys.argv[2])[0] + ".svg"
        report(sys.argv[2], svg_path, os.environ.get("TITLE", ""))
    else:
        sys.exit(__doc__)


if __name__ == "__main__":
    main()
