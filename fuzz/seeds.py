#!/usr/bin/env python3
"""Writes the small committed seed corpus of each fuzz target (fuzz/corpus/<target>/).

The seeds follow each target's input layout (see the comments at the top of each target) so the
fuzzer starts from inputs that reach deep: well-formed frame streams, WebSocket frames after the
handshake, and simulator runs that listen, connect, send and inject faults on every transport.
Rerun it after changing an input layout: `python3 fuzz/seeds.py`. The `regression-*` files
beside the seeds are inputs that once failed (libFuzzer's minimized crashes, see
tests/fuzz_regressions.rs); this script leaves them alone.
"""
import os
import struct

HERE = os.path.dirname(os.path.abspath(__file__))


def write(target, name, data):
    d = os.path.join(HERE, "corpus", target)
    os.makedirs(d, exist_ok=True)
    with open(os.path.join(d, name), "wb") as f:
        f.write(bytes(data))


def leb(n):
    out = []
    while True:
        b = n & 0x7F
        n >>= 7
        if n:
            out.append(b | 0x80)
        else:
            out.append(b)
            return out


# ----- framed_decoder: [max][mode][cut count][cuts: u16 each][rest] -----
def fd(name, max_sel, mode, cuts, rest):
    data = [max_sel, mode, len(cuts)]
    for c in cuts:
        data += list(struct.pack("<H", c))
    write("framed_decoder", name, data + list(rest))


fd("raw-frames", 7, 0, [1, 2, 5], leb(3) + list(b"abc") + leb(0) + leb(300) + [7] * 300)
fd("built-frames", 6, 1, [3, 9, 200], [4, 10, 0, 0, 0, 44, 1, 5, 0])
fd("built-then-raw", 5, 2, [1], [2, 3, 0, 0, 0] + [0x80] * 11)
fd("too-large", 3, 0, [1], leb(128) + [1, 2])
fd("overlong-prefix", 7, 0, [4], [0xFF] * 9 + [0x02])

# ----- ws_receive: [mode][bytes] (mode odd: frames built from [head][shape][len][payload]) -----
def ws_frame(opcode, payload, fin=True, mask=True):
    head = (0x80 if fin else 0) | opcode
    out = [head]
    n = len(payload)
    m = 0x80 if mask else 0
    if n < 126:
        out.append(m | n)
    elif n < 65536:
        out += [m | 126] + list(struct.pack(">H", n))
    else:
        out += [m | 127] + list(struct.pack(">Q", n))
    key = [1, 2, 3, 4]
    if mask:
        out += key + [b ^ key[i % 4] for i, b in enumerate(payload)]
    else:
        out += list(payload)
    return out


write("ws_receive", "binary", [0] + ws_frame(2, b"hello"))
write("ws_receive", "text-ping-close",
      [0] + ws_frame(1, b"hi") + ws_frame(9, b"p") + ws_frame(8, struct.pack(">H", 1000) + b"bye"))
write("ws_receive", "fragmented", [0] + ws_frame(2, b"ab", fin=False) + ws_frame(0, b"cd"))
write("ws_receive", "unmasked", [0] + ws_frame(2, b"x", mask=False))
write("ws_receive", "bad-utf8", [0] + ws_frame(1, b"\xff\xfe"))
write("ws_receive", "structured", [1, 0x82, 0, 3, 1, 2, 3, 0x01, 4, 2, 9, 9, 0x88, 0, 2, 3, 0xE8])

# ----- sim_ops: [seed u16][nodes][ops...] -----
TCP, FRAMED, UDP, WS = 0, 1, 2, 3


def listen(node, t, idx=0):
    return [0, node, 0, t] + list(struct.pack("<H", idx))


def connect(node, t, target, idx=0):
    return [0, node, 2, t, target] + list(struct.pack("<H", idx))


def send(node, pick, size, count, how=0, delay=0, text=0):
    op = [4] + list(struct.pack("<H", size)) + [pick, count, text]
    if how == 1:
        return [6, node] + op
    if how == 2:
        return [7, node] + list(struct.pack("<H", delay)) + op
    return [0, node] + op


def remove(node, pick):
    return [0, node, 7, pick]


def advance(ms):
    return [19] + list(struct.pack("<H", ms))


def steps(n):
    return [21, n - 1]


for t, name in [(TCP, "tcp"), (FRAMED, "framed"), (UDP, "udp"), (WS, "ws")]:
    ops = (listen(0, t) + connect(1, t, 0) + advance(50) + send(1, 0, 40, 3) + advance(50)
           + send(0, 0, 10, 2, text=1) + send(1, 0, 200, 1, how=1, text=1) + steps(5)
           + advance(300))
    write("sim_ops", f"echo-{name}", list(struct.pack("<H", 7)) + [0] + ops)
    ops = (listen(0, t) + connect(1, t, 0) + connect(2, t, 0) + advance(50)
           + [10, 1, 0] + send(1, 0, 30, 4) + advance(400) + [12] + send(2, 0, 30, 2)
           + [8, 0] + advance(100) + [9, 0] + advance(100) + listen(0, t) + connect(1, t, 0)
           + advance(100) + send(1, 1, 20, 2) + [13, 1, 0] + advance(100))
    write("sim_ops", f"faults-{name}", list(struct.pack("<H", 11)) + [1] + ops)
ops = (listen(0, FRAMED) + listen(0, UDP) + connect(1, FRAMED, 0) + connect(1, UDP, 0) + advance(20)
       + [14, 1, 0] + send(1, 0, 50, 3) + send(1, 1, 50, 3) + [18, 1, 0, 5, 2, 2, 1]
       + [16, 0] + advance(500) + [15, 1, 0] + [17, 0] + send(1, 1, 50, 2, how=2, delay=100)
       + remove(1, 0) + advance(300) + [11, 0, 1] + send(0, 0, 9, 2) + advance(1000)
       + [0, 1, 8])
write("sim_ops", "mixed", list(struct.pack("<H", 3)) + [2] + ops)
