#!/usr/bin/env python3
"""A tiny DNS client (standard library only): `dnsq.py HOST:PORT NAME [A|AAAA|SRV]`.

Prints one answer per line (an address, or `priority weight port target` for SRV) and
exits 0 on NOERROR with answers, 1 on NXDOMAIN or an empty answer, 2 on anything else.
Used by hack/cluster.sh to see CoreDNS ready and by the demo to show a name resolving.
"""
import random
import socket
import struct
import sys

TYPES = {"A": 1, "AAAA": 28, "SRV": 33}


def encode(name):
    out = b""
    for label in name.rstrip(".").split("."):
        out += bytes([len(label)]) + label.encode()
    return out + b"\0"


def read_name(msg, off):
    labels = []
    while True:
        n = msg[off]
        if n & 0xC0 == 0xC0:
            ptr = struct.unpack(">H", msg[off:off + 2])[0] & 0x3FFF
            labels.append(read_name(msg, ptr)[0])
            return ".".join(labels), off + 2
        off += 1
        if n == 0:
            return ".".join(labels), off
        labels.append(msg[off:off + n].decode())
        off += n


def main():
    server, name = sys.argv[1], sys.argv[2]
    qtype = TYPES[sys.argv[3] if len(sys.argv) > 3 else "A"]
    host, port = server.rsplit(":", 1)
    qid = random.randint(0, 65535)
    query = struct.pack(">HHHHHH", qid, 0x0100, 1, 0, 0, 0) + encode(name) + struct.pack(">HH", qtype, 1)
    s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    s.settimeout(2)
    s.sendto(query, (host, int(port)))
    msg, _ = s.recvfrom(4096)
    rid, flags, qd, an, _, _ = struct.unpack(">HHHHHH", msg[:12])
    rcode = flags & 0xF
    # Not our answer, an error, or truncated (the answer would be incomplete).
    if rid != qid or not flags & 0x8000 or flags & 0x0200 or rcode not in (0, 3):
        sys.exit(2)
    off = 12
    for _ in range(qd):
        _, off = read_name(msg, off)
        off += 4
    answers = []
    for _ in range(an):
        _, off = read_name(msg, off)
        rtype, _, _, rdlen = struct.unpack(">HHIH", msg[off:off + 10])
        off += 10
        rdata = msg[off:off + rdlen]
        if rtype == 1:
            answers.append(socket.inet_ntop(socket.AF_INET, rdata))
        elif rtype == 28:
            answers.append(socket.inet_ntop(socket.AF_INET6, rdata))
        elif rtype == 33:
            prio, weight, p = struct.unpack(">HHH", rdata[:6])
            answers.append(f"{prio} {weight} {p} {read_name(msg, off + 6)[0]}")
        off += rdlen
    for a in answers:
        print(a)
    sys.exit(0 if rcode == 0 and answers else 1)


if __name__ == "__main__":
    try:
        main()
    except SystemExit:
        raise
    except Exception as e:  # timeout, refused, bad arguments: not an answer
        print(f"dnsq: {e}", file=sys.stderr)
        sys.exit(2)
