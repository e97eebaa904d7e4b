#!/usr/bin/env python3
"""Aggregation through the dual-proxy path (issue 7): the driver behind the third
part of perf/lab-dual-proxy.sh (run that; it builds the binaries and sets the paths).

In one dual-proxy lab (deploy/lab.sh up --dual-proxy, hacd with the aggregate
scheduler), for each of the multipath benchmark's cases (perf/lab_multipath.py
CASES: the same link shaping) and each run:

- `dual-proxy`: an unmodified curl on the LAN host downloads DURATION seconds' worth
  of bytes at the link sum (a random file served by cpe/tests/scripts/http_server.py)
  through hac-cpe and hacd; byte-exact (SHA-256 of what curl wrote against the
  file); goodput = bytes / curl's total time;
- `mptcp-client`: in the same lab and case, right after, the multipath benchmark's
  direct figure: a Linux MPTCP client in the gateway namespace (client.py, Convert
  request in its TFO SYN) downloads the same byte count from the harness server
  through hacd (lab_multipath.transfer, byte-exact against the server's record).

Fraction = goodput / sum of the link rates. Prints one line per transfer (stderr)
and the table of medians; writes a CSV.

Environment: RUNS (1), DURATION (20), CASES (default all of lab_multipath.CASES),
LAB_PREFIX (haccp), LAB_RUN, CSV (/tmp/lab-dual-proxy-agg.csv), and HACD / HACCTL /
HAC_CPE / LINKEMU as lab.sh takes them.
"""

import csv
import hashlib
import os
import signal
import statistics
import subprocess
import sys
import tempfile
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import lab_multipath as mp  # noqa: E402

ROOT = mp.ROOT
HTTP_SERVER = os.path.join(ROOT, "cpe/tests/scripts/http_server.py")
HTTP_PORT = 8090  # the harness server takes 8080 (lab_multipath.CONVERT's port)
FIELDS = ["run", "case", "path", "link_sum_mbit", "bytes", "ok", "elapsed_s", "goodput_mbit",
          "fraction", "dsl_rx_mb", "lte_rx_mb", "load1", "error"]


def log(*a):
    print("lab-dual-proxy-agg:", *a, file=sys.stderr, flush=True)


def random_file(path, n):
    h = hashlib.sha256()
    with open(path, "wb") as f:
        left = n
        while left:
            b = os.urandom(min(left, 1 << 20))
            f.write(b)
            h.update(b)
            left -= len(b)
    return h.hexdigest()


def curl_download(lab, name, nbytes, want_sha, limit):
    """curl in the LAN namespace to a file in /dev/shm (memory), hashed afterwards."""
    dsl0, lte0 = lab.iface_rx()
    url = "http://198.51.100.2:%d/%s" % (HTTP_PORT, name)
    fd, out = tempfile.mkstemp(prefix="%s-agg-" % lab.prefix, dir="/dev/shm")
    os.close(fd)
    try:
        p = subprocess.run(["ip", "netns", "exec", lab.ns("lan"), "curl", "-sS", "--max-time",
                            str(limit), "-o", out, "-w",
                            "%{http_code} %{size_download} %{time_total}", url],
                           capture_output=True, text=True, timeout=limit + 15)
        h = hashlib.sha256()
        with open(out, "rb") as f:
            for b in iter(lambda: f.read(1 << 20), b""):
                h.update(b)
    finally:
        os.unlink(out)
    dsl1, lte1 = lab.iface_rx()
    w = p.stdout.split()
    code, size, total = (w[0], int(w[1]), float(w[2])) if len(w) == 3 else ("", 0, 0.0)
    ok = p.returncode == 0 and code == "200" and size == nbytes and h.hexdigest() == want_sha
    err = p.stderr.strip()[-200:]
    if not ok and not err:
        err = "http %s, %d of %d bytes, %s" % (
            code, size, nbytes, "sha ok" if h.hexdigest() == want_sha else "not byte-exact")
    return {
        "ok": int(ok),
        "elapsed_s": "%.3f" % total,
        "goodput_mbit": "%.2f" % (8 * size / total / 1e6) if total else "",
        "dsl_rx_mb": "%.2f" % ((dsl1 - dsl0) / 1e6),
        "lte_rx_mb": "%.2f" % ((lte1 - lte0) / 1e6),
        "error": err,
    }


def main():
    signal.signal(signal.SIGTERM, lambda *_: sys.exit("lab-dual-proxy-agg: terminated"))
    runs = int(os.environ.get("RUNS", "1"))
    duration = float(os.environ.get("DURATION", "20"))
    cases = os.environ.get("CASES", " ".join(mp.CASES)).split()
    for c in cases:
        if c not in mp.CASES:
            sys.exit("unknown case %s (one of %s)" % (c, " ".join(mp.CASES)))
    prefix = os.environ.get("LAB_PREFIX", "haccp")
    run_dir = os.environ.get("LAB_RUN", "/run/%s-lab" % prefix)
    csv_path = os.environ.get("CSV", "/tmp/lab-dual-proxy-agg.csv")
    lab = mp.Lab(prefix, run_dir)
    lab.mode_env = {"LAB_SCHEDULER": "aggregate", "LAB_MULTIPATH": "auto"}
    www = tempfile.mkdtemp(prefix="%s-agg-" % prefix)
    files = {}
    for c in cases:
        _label, dsl, lte = mp.CASES[c]
        n = min(int((dsl[0] + lte[0]) * 1e6 / 8 * duration), mp.MAX_BYTES)
        files[c] = (n, random_file(os.path.join(www, "agg-%s.bin" % c), n))
    rows = []
    f = open(csv_path, "w", newline="")
    w = csv.DictWriter(f, fieldnames=FIELDS)
    w.writeheader()
    http = harness = None
    try:
        lab.sh("down", check=False)
        lab.sh("up", "--dual-proxy", limit=180)
        note = lab.multipath_note()
        http_log = open(os.path.join(run_dir, "agg-http.log"), "w")
        http = subprocess.Popen(
            ["ip", "netns", "exec", lab.ns("server"), "python3", "-u", HTTP_SERVER, "--dir", www,
             "--port", str(HTTP_PORT), "--lifetime", "3600"],
            stdin=subprocess.PIPE, stdout=http_log, stderr=subprocess.STDOUT)
        harness = mp.Server(lab, 8080, False)
        time.sleep(0.5)
        for run in range(1, runs + 1):
            for c in cases:
                _label, dsl, lte = mp.CASES[c]
                lab.shape("dsl", dsl)
                lab.shape("lte", lte)
                time.sleep(0.5)
                total = dsl[0] + lte[0]
                n, sha = files[c]
                limit = int(3 * duration + 60)
                for path in ("dual-proxy", "mptcp-client"):
                    if path == "dual-proxy":
                        res = curl_download(lab, "agg-%s.bin" % c, n, sha, limit)
                    else:
                        r = mp.transfer(lab, harness, "aggregate", n, limit)
                        res = {k: r[k] for k in ("ok", "elapsed_s", "goodput_mbit", "dsl_rx_mb",
                                                 "lte_rx_mb", "error")}
                    row = {"run": run, "case": c, "path": path, "link_sum_mbit": total,
                           "bytes": n, "load1": "%.2f" % os.getloadavg()[0],
                           "fraction": "%.3f" % (float(res["goodput_mbit"]) / total)
                           if res["goodput_mbit"] else ""}
                    row.update(res)
                    w.writerow(row)
                    f.flush()
                    rows.append(row)
                    log("run %d %-12s %-13s %s Mbit/s (%s of %d) ok=%s dsl %s MB lte %s MB%s"
                        % (run, c, path, res["goodput_mbit"], row["fraction"], total, res["ok"],
                           res["dsl_rx_mb"], res["lte_rx_mb"],
                           " error: " + res["error"] if res["error"] else ""))
    finally:
        if harness is not None:
            harness.stop()
        if http is not None:
            mp.stop_server(http, http_log, 5)
        lab.down()
        f.close()
        subprocess.run(["rm", "-rf", www])
    print("\nAggregation through the dual-proxy path: goodput of a %gs download, Mbit/s "
          "(fraction of the link sum), median of %d run(s); * = not every transfer byte-exact; "
          "hacd [multipath] %s" % (duration, runs, note))
    print("%-14s %6s  %-22s %-22s" % ("case", "sum", "LAN host via hac-cpe", "MPTCP client (direct)"))
    for c in cases:
        cells = []
        for path in ("dual-proxy", "mptcp-client"):
            rs = [r for r in rows if r["case"] == c and r["path"] == path]
            good = [float(r["goodput_mbit"] or 0) if r["ok"] == 1 else 0.0 for r in rs]
            frac = [float(r["fraction"] or 0) if r["ok"] == 1 else 0.0 for r in rs]
            star = "" if all(r["ok"] == 1 for r in rs) else "*"
            cells.append("%.1f (%.3f)%s" % (statistics.median(good), statistics.median(frac), star)
                         if rs else "-")
        print("%-14s %6d  %-22s %-22s" % (c, sum(x[0] for x in mp.CASES[c][1:]), *cells))
    print("CSV: %s" % csv_path)


if __name__ == "__main__":
    main()
