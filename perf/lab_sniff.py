#!/usr/bin/env python3
"""Prints the TCP/IPv4 segments seen on IFACE for SECONDS, one line each: time,
addresses, flags, seq, ack, payload length, window, SACK blocks and the MPTCP DSS
(DATA_ACK, mapping DSN/SSN/length, DATA_FIN). For the lab's namespaces, which
have no tcpdump: run it with `ip netns exec NS python3 perf/lab_sniff.py IF S`.
Usage: lab_sniff.py IFACE SECONDS
"""
import socket, struct, sys, time
ifc, secs = sys.argv[1], float(sys.argv[2])
s = socket.socket(socket.AF_PACKET, socket.SOCK_RAW, socket.htons(3))
s.bind((ifc, 0)); s.settimeout(0.2)
t0 = time.monotonic(); end = t0 + secs
while time.monotonic() < end:
    try:
        pkt, addr = s.recvfrom(65535)
    except socket.timeout:
        continue
    d = pkt[14:]
    if len(d) < 20 or d[0] >> 4 != 4 or d[9] != 6: continue
    ihl = (d[0] & 15) * 4; tl = struct.unpack('!H', d[2:4])[0]
    src = socket.inet_ntoa(d[12:16]); dst = socket.inet_ntoa(d[16:20])
    t = d[ihl:]
    sp, dp, seq, ack = struct.unpack('!HHII', t[:12]); off = (t[12] >> 4) * 4; fl = t[13]
    win = struct.unpack('!H', t[14:16])[0]
    plen = tl - ihl - off
    opts = t[20:off]; i = 0; extra = []
    while i < len(opts):
        k = opts[i]
        if k == 0: break
        if k == 1: i += 1; continue
        if i + 1 >= len(opts): break
        l = opts[i+1]
        if l < 2: break
        body = opts[i+2:i+l]
        if k == 5:
            extra.append('sack' + ','.join('%d-%d' % struct.unpack('!II', body[j:j+8]) for j in range(0, len(body), 8)))
        elif k == 30 and body and body[0] >> 4 == 2:
            fl2 = body[1]; j = 2; parts = []
            if fl2 & 1:
                if fl2 & 2: parts.append('dack%d' % struct.unpack('!Q', body[j:j+8])[0]); j += 8
                else: parts.append('dack%d' % struct.unpack('!I', body[j:j+4])[0]); j += 4
            if fl2 & 4:
                if fl2 & 8: dsn = struct.unpack('!Q', body[j:j+8])[0]; j += 8
                else: dsn = struct.unpack('!I', body[j:j+4])[0]; j += 4
                ssn, ml = struct.unpack('!IH', body[j:j+6])
                parts.append('map%d/%d/%d' % (dsn, ssn, ml))
            if fl2 & 16: parts.append('DFIN')
            extra.append(' '.join(parts))
        i += l
    f = ''.join(c for b, c in zip([1, 2, 4, 8, 16], 'FSRPA') if fl & b)
    print('%.4f %s:%d>%s:%d %s seq=%d ack=%d len=%d win=%d %s' % (time.monotonic() - t0, src, sp, dst, dp, f, seq, ack, plen, win, ' '.join(extra)), flush=True)
