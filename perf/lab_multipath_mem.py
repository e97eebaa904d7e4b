#!/usr/bin/env python3
"""Memory per active bonded connection in the lab (deploy/lab.sh), issue 5: the
driver behind perf/lab-multipath-mem.sh (run that; it builds the binaries and sets
the paths).

For each run and each mode, bring the lab up, shape both access links, start the
multi-connection server (dataplane/harness/scripts/multi.py server, each download
paced at RATE bytes/s) and open CONNS concurrent MPTCP downloads from the client
namespace in STAGES steps (multi.py client: one process, non-blocking sockets);
every connection joins its LTE subflow. After each step, with every connection
receiving, measure the concentrator's memory (median of SAMPLES samples) and
compare with the idle lab before the first connection:

  hacd (LAB_SCHEDULER=aggregate): the process's resident memory (/proc/PID/status
      RssAnon, smaps_rollup Pss), and the repair cache's packet buffers
      (hac_repair_cache_segments × MBUF_BYTES; those mbufs come from the mempool,
      which is allocated and touched at start: they are not in the RSS delta);
      hac_connections / hac_subflows from /metrics confirm the connections and joins.
  kernel-proxy (LAB_KERNEL_PROXY=1, `mptcpize run socat`, one process per
      connection): in the conc namespace, the sockets (`ss`: MPTCP sockets, their
      TCP subflows, the TCP sockets to the server) × their slab object sizes
      (/proc/slabinfo: MPTCP, TCP, and sock_inode_cache + filp + dentry per socket
      with a file), their buffers as the kernel charges them (skmem r + w + f), and
      the socat processes: Pss (smaps_rollup) + page tables (VmPTE) + kernel stack
      (16 KiB) + task_struct, mm_struct, signal, sighand, files, pid and one
      vm_area_struct per mapping (slab object sizes).

Per connection = (during − before) / connections; marginal = the growth between
the last two steps / the connections added (fixed costs that saturate early, such
as the pages of hash tables sized for 65,536 connections, drop out of it).
After the last step the downloads run to their end and each one is checked byte for
byte against the server's record.

Subcommands: run (the measurement; writes CSV rows, then the report), report CSV.

Environment of `run`: RUNS (1), CONNS (1000), STAGES (2), RATE (4000 bytes/s per
connection), LIFE (60: s of download per connection; bytes = RATE × LIFE),
OPEN_RATE (100 connections/s), SAMPLES (3), MODES ("aggregate kernel-proxy"),
DSL ("40 10 0": Mbit/s, one-way ms, loss %), LTE ("20 40 0"), LAB_PREFIX (hacmm),
LAB_RUN, HACD, LINKEMU, CSV (docs/perf-multipath-mem.csv), RAW (JSON lines, default
/tmp/lab-multipath-mem-<prefix>.jsonl).
"""

import csv
import json
import os
import queue
import signal
import statistics
import subprocess
import sys
import threading
import time

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)
import lab_multipath as lm  # noqa: E402  (Lab: up / shape / down, counters)

MULTI = os.path.join(lm.SCRIPTS, "multi.py")
MODES = ["aggregate", "kernel-proxy"]
# One mbuf of hacd's pool: struct rte_mbuf (128 B) + the data room (2048 + 128 B of
# headroom: hac_dpdk::default_data_room), no private area.
MBUF_BYTES = 128 + 2048 + 128
KSTACK = 16384  # x86-64 THREAD_SIZE
PROC_SLABS = ["task_struct", "mm_struct", "signal_cache", "sighand_cache", "files_cache",
              "fs_cache", "pid"]
FIELDS = [
    "run", "mode", "stage", "conns", "receiving", "joined", "subflows_seen", "rate",
    "proc_rss_kb", "proc_anon_kb", "proc_pss_kb", "proc_bytes", "cache_segments",
    "cache_bytes", "buffer_bytes", "socket_struct_bytes", "sockets", "msk", "tcp",
    "procs", "tcp_mem_pages", "total_bytes", "per_conn", "per_conn_proc",
    "per_conn_kernel", "marginal", "load1",
]


def log(*a):
    print("lab-multipath-mem:", *a, file=sys.stderr, flush=True)


def read_kv(path):
    """`Key:   123 kB` lines -> {key: int (kB or count)}."""
    d = {}
    try:
        with open(path) as f:
            for line in f:
                k, _, v = line.partition(":")
                v = v.split()
                if v and v[0].isdigit():
                    d[k.strip()] = int(v[0])
    except OSError:
        pass
    return d


def slab_sizes():
    sizes = {}
    with open("/proc/slabinfo") as f:
        for line in f:
            p = line.split()
            if len(p) > 4 and p[3].isdigit():
                sizes[p[0]] = int(p[3])
    return sizes


def netns_exec(lab, ns, *cmd, timeout=30):
    return subprocess.run(["ip", "netns", "exec", lab.ns(ns), *cmd], capture_output=True,
                          text=True, timeout=timeout).stdout


def skmem(tok):
    """'skmem:(r0,rb131072,t0,...)' -> {'r': 0, 'rb': 131072, ...}."""
    body = tok[tok.index("(") + 1:tok.rindex(")")]
    d = {}
    for part in body.split(","):
        k = part.rstrip("0123456789")
        v = part[len(k):]
        if v:
            d[k] = int(v)
    return d


def sockets(lab):
    """The conc namespace's MPTCP and TCP sockets, by role, and their buffer bytes.

    `mptcpize run socat` makes both of socat's sockets MPTCP: the one accepted from
    the client (its subflows: the initial one over DSL and the join over LTE) and
    the one toward the plain TCP server (fallen back to TCP: one subflow)."""
    res = {"msk_client": 0, "msk_server": 0, "msk_listen": 0, "sub_dsl": 0, "sub_lte": 0,
           "sub_other": 0, "to_server": 0, "tcp_listen": 0, "buf": 0, "n": 0}
    for proto, flag in (("mptcp", "-M"), ("tcp", "-t")):
        txt = netns_exec(lab, "conc", "ss", flag, "-a", "-n", "-m", "-H", "-O")
        for line in txt.splitlines():
            p = line.split()
            if len(p) < 5:
                continue
            state, peer = p[0], p[4]
            sk = next((skmem(t) for t in p if t.startswith("skmem:(")), {})
            res["n"] += 1
            res["buf"] += sk.get("r", 0) + sk.get("w", 0) + sk.get("f", 0)
            server = peer.startswith("198.51.100.2:") or peer.startswith("[2001:db8:100::2]")
            if proto == "mptcp":
                role = "msk_listen" if state == "LISTEN" else "msk_server" if server else "msk_client"
            elif state == "LISTEN":
                role = "tcp_listen"
            elif server:
                role = "to_server"
            elif peer.startswith("198.18.1.") or peer.startswith("[2001:db8:1::"):
                role = "sub_dsl"
            elif peer.startswith("198.18.2.") or peer.startswith("[2001:db8:2::"):
                role = "sub_lte"
            else:
                role = "sub_other"
            res[role] += 1
    return res


def proc_mem(pid):
    """(Pss bytes, RSS bytes, anon bytes, VmPTE bytes, mappings) of one process."""
    r = read_kv("/proc/%d/smaps_rollup" % pid)
    s = read_kv("/proc/%d/status" % pid)
    try:
        with open("/proc/%d/maps" % pid) as f:
            maps = sum(1 for _ in f)
    except OSError:
        maps = 0
    return (r.get("Pss", 0) * 1024, s.get("VmRSS", 0) * 1024, s.get("RssAnon", 0) * 1024,
            s.get("VmPTE", 0) * 1024, maps)


def sockstat_tcp_mem(lab):
    for line in netns_exec(lab, "conc", "cat", "/proc/net/sockstat").splitlines():
        p = line.split()
        if p and p[0] == "TCP:" and "mem" in p:
            return int(p[p.index("mem") + 1])
    return 0


def metrics(lab):
    txt = lab.sh("metrics", check=False).stdout
    d = {}
    for line in txt.splitlines():
        if line.startswith("#") or " " not in line:
            continue
        name, _, v = line.rpartition(" ")
        base = name.split("{")[0]
        try:
            d[base] = d.get(base, 0.0) + float(v)
        except ValueError:
            pass
    return d


def snapshot(lab, mode, slabs):
    """One sample of the concentrator's memory."""
    if mode == "kernel-proxy":
        sk = sockets(lab)
        pids = subprocess.run(["ip", "netns", "pids", lab.ns("conc")], capture_output=True,
                              text=True, timeout=10).stdout.split()
        procs = []
        for pid in map(int, pids):
            try:
                with open("/proc/%d/comm" % pid) as f:
                    if f.read().strip() != "socat":
                        continue
            except OSError:
                continue
            procs.append(proc_mem(pid))
        per_proc_slab = KSTACK + sum(slabs.get(n, 0) for n in PROC_SLABS)
        proc_bytes = sum(p[0] + p[3] + per_proc_slab + p[4] * slabs.get("vm_area_struct", 0)
                         for p in procs)
        tcp = (sk["sub_dsl"] + sk["sub_lte"] + sk["sub_other"] + sk["to_server"]
               + sk["tcp_listen"])
        msk = sk["msk_client"] + sk["msk_server"] + sk["msk_listen"]
        # Each MPTCP socket has a file: an inode (sock_inode_cache), a struct file and a
        # dentry; its TCP subflows are kernel sockets without one.
        struct = (msk * (slabs.get("MPTCP", 0) + slabs.get("sock_inode_cache", 0)
                         + slabs.get("filp", 0) + slabs.get("dentry", 0))
                  + tcp * slabs.get("TCP", 0))
        return {
            "conns": sk["msk_client"],
            "subflows_seen": sk["sub_dsl"] + sk["sub_lte"] + sk["sub_other"],
            "joined": sk["sub_lte"],
            "proc_rss_kb": sum(p[1] for p in procs) // 1024,
            "proc_anon_kb": sum(p[2] for p in procs) // 1024,
            "proc_pss_kb": sum(p[0] for p in procs) // 1024,
            "proc_bytes": proc_bytes, "cache_segments": 0, "cache_bytes": 0,
            "buffer_bytes": sk["buf"], "socket_struct_bytes": struct, "sockets": sk["n"],
            "msk": msk, "tcp": tcp, "procs": len(procs),
            "tcp_mem_pages": sockstat_tcp_mem(lab),
        }
    pid = int(open(os.path.join(lab.run_dir, "hacd.pid")).read().strip())
    pss, rss, anon, _pte, _maps = proc_mem(pid)
    m = metrics(lab)
    segs = int(m.get("hac_repair_cache_segments", 0))
    conns = int(m.get("hac_connections", 0))
    subflows = int(m.get("hac_subflows", 0))
    return {
        "conns": conns, "subflows_seen": subflows, "joined": subflows - conns,
        "proc_rss_kb": rss // 1024, "proc_anon_kb": anon // 1024, "proc_pss_kb": pss // 1024,
        # All of hacd's resident memory (the engine's state is heap: anonymous; the
        # mempool, shared memory with --no-huge, is allocated and touched at start,
        # so it cancels out; file pages: the binary's code as it runs).
        "proc_bytes": rss, "cache_segments": segs,
        "cache_bytes": int(m.get("hac_repair_cache_bytes", 0)),
        "buffer_bytes": segs * MBUF_BYTES, "socket_struct_bytes": 0, "sockets": 0,
        "msk": 0, "tcp": 0, "procs": 1, "tcp_mem_pages": sockstat_tcp_mem(lab),
    }


def sample(lab, mode, slabs, n):
    snaps = []
    for i in range(n):
        if i:
            time.sleep(1.0)
        snaps.append(snapshot(lab, mode, slabs))
    return {k: statistics.median_low([s[k] for s in snaps]) for k in snaps[0]}


class MultiServer:
    def __init__(self, lab, port):
        self.path = os.path.join(lab.run_dir, "mem-server-%d.log" % port)
        self.out = open(self.path, "w")
        self.p = subprocess.Popen(
            ["ip", "netns", "exec", lab.ns("server"), "python3", "-u", MULTI, "server",
             "--bind", "198.51.100.2", "--port", str(port), "--io-timeout", "30",
             "--lifetime", "1200"],
            stdin=subprocess.PIPE, stdout=self.out, stderr=subprocess.STDOUT)
        for _ in range(100):
            if '"ready"' in open(self.path).read():
                return
            if self.p.poll() is not None:
                break
            time.sleep(0.1)
        raise RuntimeError("multi.py server did not start: %s" % open(self.path).read()[-500:])

    def records(self):
        recs = {}
        for line in open(self.path):
            if line.startswith("{") and '"conn"' in line:
                r = json.loads(line)
                recs[r.get("id")] = r
        return recs

    def stop(self):
        lm.stop_server(self.p, self.out, 10)


def reader(stream, q):
    for line in stream:
        q.put(line)
    q.put(None)


def measure(lab, mode, run, conns, stages, rate, life, open_rate, samples, w, f, raw):
    slabs = slab_sizes()
    port = 5201 if mode == "kernel-proxy" else 8080
    server = MultiServer(lab, port)
    rows = []
    try:
        time.sleep(2.0)
        base = sample(lab, mode, slabs, samples)
        raw.write(json.dumps({"run": run, "mode": mode, "stage": 0, "sample": base}) + "\n")
        log("run %d %s: idle: %s" % (run, mode, base))
        joins0 = lab.mptcp_counter("client", "MPJoinSynAckRx")
        cmd = ["ip", "netns", "exec", lab.ns("client"), "python3", "-u", MULTI, "client",
               "--mptcp", "--count", str(conns), "--stages", str(stages), "--down",
               str(rate * life), "--rate", str(rate), "--open-rate", str(open_rate),
               "--id-prefix", "r%d%s" % (run, mode[0]), "--hold", "120", "--io-timeout", "30",
               "--timeout", str(life + 300)]
        if mode == "kernel-proxy":
            cmd += ["--target", "192.0.2.1", "--port", "5124"]
        else:
            cmd += ["--target", "192.0.2.1", "--port", "5124", "--convert-hex", lm.CONVERT]
        p = subprocess.Popen(cmd, stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                             stderr=subprocess.PIPE, text=True)
        q = queue.Queue()
        threading.Thread(target=reader, args=(p.stdout, q), daemon=True).start()
        results, done = {}, None
        prev = None
        deadline = time.monotonic() + life + 400
        try:
            while time.monotonic() < deadline:
                try:
                    line = q.get(timeout=max(0.1, deadline - time.monotonic()))
                except queue.Empty:
                    break
                if line is None:
                    break
                if not line.startswith("{"):
                    continue
                ev = json.loads(line)
                if ev["event"] == "conn":
                    results[ev["id"]] = ev
                elif ev["event"] == "done":
                    done = ev
                elif ev["event"] == "stage":
                    log("run %d %s stage %d: %s" % (run, mode, ev["stage"], {
                        k: ev[k] for k in ("opened", "receiving", "failed", "joined", "fallback",
                                           "subflows", "elapsed")}))
                    time.sleep(2.0)
                    s = sample(lab, mode, slabs, samples)
                    n = max(1, s["conns"])
                    total = ((s["proc_bytes"] - base["proc_bytes"])
                             + (s["buffer_bytes"] - base["buffer_bytes"])
                             + (s["socket_struct_bytes"] - base["socket_struct_bytes"]))
                    row = {
                        "run": run, "mode": mode, "stage": ev["stage"], "rate": rate,
                        "receiving": ev["receiving"], "load1": "%.2f" % os.getloadavg()[0],
                    }
                    row.update(s)
                    row["joined"] = s["joined"]
                    row["total_bytes"] = total
                    row["per_conn"] = round(total / n)
                    row["per_conn_proc"] = round((s["proc_bytes"] - base["proc_bytes"]) / n)
                    row["per_conn_kernel"] = round(
                        ((s["buffer_bytes"] - base["buffer_bytes"])
                         + (s["socket_struct_bytes"] - base["socket_struct_bytes"])) / n)
                    if prev is not None and s["conns"] > prev["conns"]:
                        row["marginal"] = round((total - prev["total_bytes"])
                                                / (s["conns"] - prev["conns"]))
                    else:
                        row["marginal"] = ""
                    raw.write(json.dumps({"run": run, "mode": mode, "stage": ev["stage"],
                                          "client": ev, "sample": s}) + "\n")
                    raw.flush()
                    log("run %d %s stage %d: %d connections (%d joined) %d B per connection"
                        " (process %d, kernel/buffers %d), marginal %s B"
                        % (run, mode, ev["stage"], s["conns"], s["joined"], row["per_conn"],
                           row["per_conn_proc"], row["per_conn_kernel"], row["marginal"]))
                    rows.append(row)
                    prev = row
                    p.stdin.write("next\n")
                    p.stdin.flush()
        finally:
            if p.poll() is None:
                try:
                    p.stdin.write("stop\n")
                    p.stdin.flush()
                except OSError:
                    pass
                try:
                    p.wait(30)
                except subprocess.TimeoutExpired:
                    p.kill()
                    p.wait()
        joins = lab.mptcp_counter("client", "MPJoinSynAckRx") - joins0
        srv = server.records()
        exact = sum(1 for cid, r in results.items()
                    if r["eof"] and not r["error"] and cid in srv and not srv[cid]["error"]
                    and srv[cid]["sent_sha256"] == r["recv_sha256"]
                    and srv[cid]["bytes_sent"] == r["bytes_recv"] == rate * life)
        errors = (done or {}).get("errors", {})
        log("run %d %s: %d of %d downloads byte-exact; client joins (MPJoinSynAckRx) %d; "
            "errors %s" % (run, mode, exact, conns, joins, errors or "none"))
        for row in rows:
            row["exact"] = exact
            row["client_joins"] = joins
            w.writerow({k: row.get(k, "") for k in FIELDS + ["exact", "client_joins"]})
        f.flush()
        raw.write(json.dumps({"run": run, "mode": mode, "done": done, "exact": exact,
                              "client_joins": joins}) + "\n")
        raw.flush()
    finally:
        server.stop()
    return rows


def stop_hacd(lab, run):
    """SIGTERM to the lab's hacd (it logs its engine counters at stop); keeps its log."""
    try:
        pid = int(open(os.path.join(lab.run_dir, "hacd.pid")).read().strip())
        os.kill(pid, signal.SIGTERM)
    except (OSError, ValueError):
        return
    for _ in range(100):
        if not os.path.exists("/proc/%d" % pid):
            break
        time.sleep(0.1)
    keep = "/tmp/lab-multipath-mem-%s-hacd-run%d.log" % (lab.prefix, run)
    try:
        with open(os.path.join(lab.run_dir, "hacd.log")) as src, open(keep, "w") as dst:
            text = src.read()
            dst.write(text)
        for line in text.splitlines():
            if "engine counters" in line:
                log("hacd at stop: %s" % line.strip()[-400:])
        log("hacd log kept in %s" % keep)
    except OSError:
        pass


def cmd_run():
    env = os.environ
    runs = int(env.get("RUNS", "1"))
    conns = int(env.get("CONNS", "1000"))
    stages = int(env.get("STAGES", "2"))
    rate = int(env.get("RATE", "4000"))
    life = int(env.get("LIFE", "60"))
    open_rate = float(env.get("OPEN_RATE", "100"))
    samples = int(env.get("SAMPLES", "3"))
    modes = env.get("MODES", " ".join(MODES)).split()
    dsl = tuple(float(x) for x in env.get("DSL", "40 10 0").split())
    lte = tuple(float(x) for x in env.get("LTE", "20 40 0").split())
    prefix = env.get("LAB_PREFIX", "hacmm")
    run_dir = env.get("LAB_RUN", "/run/%s-lab" % prefix)
    csv_path = env.get("CSV", os.path.join(lm.ROOT, "docs/perf-multipath-mem.csv"))
    raw_path = env.get("RAW", "/tmp/lab-multipath-mem-%s.jsonl" % prefix)
    for m in modes:
        if m not in lm.MODES:
            sys.exit("unknown mode %s (one of %s)" % (m, " ".join(lm.MODES)))
    if not (1 <= conns <= 5000 and 1 <= stages <= 10 and 0 < rate <= 1 << 20
            and 5 <= life <= 600 and rate * life <= lm.MAX_BYTES):
        sys.exit("CONNS 1..5000, STAGES 1..10, RATE 1..1048576, LIFE 5..600, RATE*LIFE <= 256 MiB")
    lab = lm.Lab(prefix, run_dir)
    raw = open(raw_path, "w")
    f = open(csv_path, "w", newline="")
    w = csv.DictWriter(f, fieldnames=FIELDS + ["exact", "client_joins"])
    w.writeheader()
    started = time.strftime("%Y-%m-%d %H:%M:%S")
    log("start %s: runs=%d conns=%d stages=%d rate=%d B/s life=%ds modes=%s dsl=%s lte=%s; "
        "lab prefix %s" % (started, runs, conns, stages, rate, life, ",".join(modes), dsl, lte,
                           prefix))
    try:
        for run in range(1, runs + 1):
            for mode in modes:
                lab.up(mode)
                try:
                    lab.shape("dsl", [("%g" % x) for x in dsl])
                    lab.shape("lte", [("%g" % x) for x in lte])
                    time.sleep(0.5)
                    dsl0, lte0 = lab.iface_rx()
                    measure(lab, mode, run, conns, stages, rate, life, open_rate, samples, w, f,
                            raw)
                    dsl1, lte1 = lab.iface_rx()
                    log("run %d %s: client received %.1f MB on dsl, %.1f MB on lte"
                        % (run, mode, (dsl1 - dsl0) / 1e6, (lte1 - lte0) / 1e6))
                    if mode in lm.HACD_MODES:
                        stop_hacd(lab, run)
                finally:
                    lab.down()
    finally:
        lab.down()
        f.close()
        raw.close()
    log("CSV %s, raw samples %s" % (csv_path, raw_path))
    report(csv_path, "lab run %s, RUNS=%d, CONNS=%d, RATE=%d B/s" % (started, runs, conns, rate))


def report(csv_path, title=""):
    with open(csv_path, newline="") as f:
        rows = list(csv.DictReader(f))
    if not rows:
        print("no rows in %s" % csv_path)
        return
    last = {}
    for r in rows:
        key = (r["run"], r["mode"])
        if key not in last or int(r["stage"]) > int(last[key]["stage"]):
            last[key] = r
    modes = [m for m in MODES if any(k[1] == m for k in last)]
    med = lambda xs: statistics.median(xs) if xs else float("nan")  # noqa: E731

    def col(mode, field, scale=1.0):
        xs = [float(r[field]) * scale for k, r in last.items() if k[1] == mode and r[field] != ""]
        return med(xs)

    def per(mode, field):
        xs = [float(r[field]) / max(1.0, float(r["conns"])) for k, r in last.items()
              if k[1] == mode and r[field] != ""]
        return med(xs)

    print("\nMemory per active bonded connection (%s); median over %d run(s), at the last step"
          % (title or csv_path, len({k[0] for k in last})))
    w = 26
    lw = 60
    print("%-*s" % (lw, "") + "".join("%-*s" % (w, "hacd " + m if m in lm.HACD_MODES else m)
                                 for m in modes))
    lines = [
        ("connections measured (MPTCP, concentrator side)", lambda m: "%.0f" % col(m, "conns")),
        ("  of which joined (LTE subflow)", lambda m: "%.0f" % col(m, "joined")),
        ("  receiving at the last step (client)", lambda m: "%.0f" % col(m, "receiving")),
        ("  downloads byte-exact at the end", lambda m: "%.0f" % col(m, "exact")),
        ("process memory, B/conn (hacd RSS; socat Pss+PTE+task)",
         lambda m: "%.0f" % col(m, "per_conn_proc")),
        ("sockets + buffers (kernel; hacd cached mbufs), B/conn",
         lambda m: "%.0f" % col(m, "per_conn_kernel")),
        ("  buffers (skmem r+w+f / cached mbufs), B/conn", lambda m: "%.0f" % per(m, "buffer_bytes")),
        ("  socket structures (slab), B/conn", lambda m: "%.0f" % per(m, "socket_struct_bytes")),
        ("total, B per connection", lambda m: "%.0f" % col(m, "per_conn")),
        ("marginal (last step), B per added connection", lambda m: "%.0f" % col(m, "marginal")),
        ("hacd repair cache: segments held", lambda m: "%.0f" % col(m, "cache_segments")),
        ("process RSS / Pss at the last step, MB",
         lambda m: "%.1f / %.1f" % (col(m, "proc_rss_kb") / 1024, col(m, "proc_pss_kb") / 1024)),
        ("processes", lambda m: "%.0f" % col(m, "procs")),
    ]
    for label, fn in lines:
        print("%-*s" % (lw, label[:lw - 1]) + "".join("%-*s" % (w, fn(m)) for m in modes))
    if "aggregate" in modes and "kernel-proxy" in modes:
        a, k = col("aggregate", "per_conn"), col("kernel-proxy", "per_conn")
        ks = col("kernel-proxy", "per_conn_kernel")
        print("hacd / kernel proxy: %.3f of the proxy's total, %.3f of its sockets and buffers alone"
              % (a / k if k else float("nan"), a / ks if ks else float("nan")))


def main():
    signal.signal(signal.SIGTERM, lambda *_: sys.exit("lab-multipath-mem: terminated"))
    cmd = sys.argv[1] if len(sys.argv) > 1 else "run"
    if cmd == "run":
        cmd_run()
    elif cmd == "report":
        if len(sys.argv) < 3:
            sys.exit("usage: lab_multipath_mem.py report CSV")
        report(sys.argv[2], os.environ.get("TITLE", ""))
    else:
        sys.exit(__doc__)


if __name__ == "__main__":
    main()
