#!/usr/bin/env python3
"""A second, independent NDP receiver written from NDP.md alone (Python 3 standard library only),
run against the conformance vectors in this folder. It shows that the spec and the vectors are
enough to implement NDP without the TypeScript code.

Covers frames.json (§3), stream.json (§8), sample-body.json (§5) and segments.json (§4, §5.1,
§4.3). control.json needs a msgpack decoder, which the standard library lacks: skipped.

Usage: python3 check_vectors.py [folder]   (exit status 1 if any vector fails)
"""
import binascii
import json
import os
import struct
import sys
import zlib

MAGIC = 0xAA


def crc16(data):
    # NDP.md §3.2: CRC-16/CCITT-FALSE = binascii.crc_hqx with init 0xFFFF.
    return binascii.crc_hqx(data, 0xFFFF)


def decode_frame(b):
    """NDP.md §3.3: exactly one whole frame, or an error code."""
    if len(b) == 0:
        return {"error": "NDP_ERR_TRUNCATED"}
    if b[0] != MAGIC:
        return {"error": "NDP_ERR_BAD_MAGIC"}
    if len(b) < 6:
        return {"error": "NDP_ERR_TRUNCATED"}
    length = (b[4] << 8) | b[5]
    if len(b) < length + 8:
        return {"error": "NDP_ERR_TRUNCATED"}
    if len(b) > length + 8:
        return {"error": "NDP_ERR_TRAILING_BYTES"}
    crc = (b[6 + length] << 8) | b[7 + length]
    return {"frame": {"src": b[1], "dst": b[2], "typ": b[3], "len": length, "payload": b[6:6 + length].hex(),
                      "crc": crc, "crcOk": crc16(b[:6 + length]) == crc}}


def decode_stream(data, max_frame=65543):
    """NDP.md §8, on the whole byte string (the result must not depend on chunking)."""
    events, i, n = [], 0, len(data)
    while i < n:
        size = None
        if data[i] == MAGIC:
            if n - i < 6:
                break
            size = ((data[i + 4] << 8) | data[i + 5]) + 8
            if size <= max_frame:
                if n - i < size:
                    break
                frame = data[i:i + size]
                events.append({"frame": frame.hex(), "crcOk": crc16(frame[:-2]) == int.from_bytes(frame[-2:], "big")})
                i += size
                continue
        code = "NDP_ERR_BAD_MAGIC" if size is None else "NDP_ERR_PAYLOAD_TOO_LARGE"
        start, p = i, i + 1
        while p < n:
            if data[p] == MAGIC and n - p >= 6:
                s = ((data[p + 4] << 8) | data[p + 5]) + 8
                if s <= max_frame and n - p >= s and crc16(data[p:p + s - 2]) == int.from_bytes(data[p + s - 2:p + s], "big"):
                    break
            p += 1
        events.append({"skipped": p - start, "code": code})
        i = p
    if i < n:
        events.append({"skipped": n - i, "code": "NDP_ERR_TRUNCATED"})
    return events


def decode_body(b):
    """NDP.md §5."""
    if len(b) < 8:
        return {"error": "NDP_ERR_BAD_BODY"}
    if b[0] != 1:
        return {"error": "NDP_ERR_UNSUPPORTED_VERSION"}
    has_mask = b[1] & 1
    n = struct.unpack(">I", b[4:8])[0]
    if len(b) != 8 + 4 * n + ((n + 7) // 8 if has_mask else 0):
        return {"error": "NDP_ERR_BAD_BODY"}
    tokens = list(struct.unpack(">%di" % n, b[8:8 + 4 * n]))
    mask = [(b[8 + 4 * n + (i >> 3)] >> (7 - (i & 7))) & 1 if has_mask else 1 for i in range(n)]
    return {"tokens": tokens, "lossMask": mask}


HEADER = struct.Struct(">BBBBIIIIIHHIII")
FIELDS = ["version", "flags", "source", "reserved", "session", "seq", "epoch", "position", "sample",
          "fragIndex", "fragCount", "fragOffset", "bodyLength", "bodyCrc"]


def read_header(payload):
    """NDP.md §4.1, §4.2 (first paragraph)."""
    if len(payload) < 40:
        return {"error": "NDP_ERR_BAD_SEGMENT"}
    h = dict(zip(FIELDS, HEADER.unpack(payload[:40])))
    del h["reserved"]
    if h["version"] != 1:
        return {"error": "NDP_ERR_UNSUPPORTED_VERSION"}
    frag = payload[40:]
    if h["fragCount"] == 0 or h["fragIndex"] >= h["fragCount"] or h["fragOffset"] + len(frag) > h["bodyLength"]:
        return {"error": "NDP_ERR_BAD_SEGMENT"}
    return {"header": h, "fragment": frag.hex()}


def segment(body, datagram, inp):
    """NDP.md §5.1."""
    f = datagram - 48
    count = -(-len(body) // f)
    out = []
    for i in range(count):
        frag = body[i * f:(i + 1) * f]
        flags = inp["flags"] | (2 if i == count - 1 else 0)
        payload = HEADER.pack(1, flags, inp["source"], 0, inp["session"], (inp["seq"] + i) % 2**32, inp["epoch"],
                              inp["position"], inp["sample"], i, count, i * f, len(body), zlib.crc32(body)) + frag
        frame = bytes([MAGIC, inp["src"], inp["dst"], 0x10]) + struct.pack(">H", len(payload)) + payload
        out.append((frame + struct.pack(">H", crc16(frame))).hex())
    return out


def fragment_size(h, length):
    """F implied by one fragment (§4.2), or None when the fragment contradicts itself."""
    i, n, off, total = h["fragIndex"], h["fragCount"], h["fragOffset"], h["bodyLength"]
    if length < 1:
        return None
    if i < n - 1:
        return length if off == i * length and -(-total // length) == n else None
    if off + length != total:
        return None
    if n == 1:
        return total if off == 0 else None
    if off % (n - 1) != 0 or length > off // (n - 1):
        return None
    return off // (n - 1)


def reassemble(frames):
    """NDP.md §4.3: the outcome of each arriving frame."""
    pending, finished, outcomes = {}, {}, []
    identity = ("fragCount", "bodyLength", "bodyCrc", "sample", "source")
    for hx in frames:
        d = decode_frame(bytes.fromhex(hx))
        if "error" in d or not d["frame"]["crcOk"]:
            outcomes.append("bad_crc")
            continue
        r = read_header(bytes.fromhex(d["frame"]["payload"]))
        if "error" in r:
            outcomes.append(r["error"])
            continue
        h, frag = r["header"], bytes.fromhex(r["fragment"])
        key = (h["session"], h["epoch"], h["position"])
        if key in finished:
            outcomes.append("duplicate" if finished[key] == "delivered" else "late")
            continue
        f = fragment_size(h, len(frag))
        if f is None:
            pending.pop(key, None)
            finished[key] = "dropped"
            outcomes.append("dropped:bad_segment")
            continue
        p = pending.get(key)
        if p is not None and (any(p["h"][k] != h[k] for k in identity) or (p["h"]["flags"] & 4) != (h["flags"] & 4) or p["f"] != f):
            del pending[key]
            finished[key] = "dropped"
            outcomes.append("dropped:fragment_mismatch")
            continue
        if p is None:
            p = pending[key] = {"h": h, "f": f, "have": set(), "body": bytearray(h["bodyLength"])}
        if h["fragIndex"] in p["have"]:
            outcomes.append("duplicate")
            continue
        p["have"].add(h["fragIndex"])
        p["body"][h["fragOffset"]:h["fragOffset"] + len(frag)] = frag
        if len(p["have"]) < h["fragCount"]:
            outcomes.append("pending")
            continue
        del pending[key]
        if zlib.crc32(bytes(p["body"])) != p["h"]["bodyCrc"]:
            finished[key] = "dropped"
            outcomes.append("dropped:body_crc")
        else:
            finished[key] = "delivered"
            outcomes.append(("complete", bytes(p["body"]).hex()))
    return outcomes


def main():
    folder = sys.argv[1] if len(sys.argv) > 1 else os.path.dirname(os.path.abspath(__file__))
    load = lambda name: json.load(open(os.path.join(folder, name)))
    failures, checked = [], 0

    def check(name, got, want):
        nonlocal checked
        checked += 1
        if got != want:
            failures.append("%s: got %s, want %s" % (name, json.dumps(got)[:200], json.dumps(want)[:200]))

    for v in load("frames.json")["vectors"]:
        check("frames/" + v["name"], decode_frame(bytes.fromhex(v["hex"])), v["expect"])
    for v in load("stream.json")["vectors"]:
        data = b"".join(bytes.fromhex(c) for c in v["chunks"])
        check("stream/" + v["name"], decode_stream(data, v.get("maxFrameBytes", 65543)), v["expect"])
    for v in load("sample-body.json")["vectors"]:
        check("sample-body/" + v["name"], decode_body(bytes.fromhex(v["hex"])), v["expect"])
    seg = load("segments.json")
    for v in seg["segmentation"]:
        check("segmentation/" + v["name"], segment(bytes.fromhex(v["input"]["body"]), v["datagram"], v["input"]), v["frames"])
    for v in seg["transportHeaders"]:
        check("transportHeaders/" + v["name"], read_header(bytes.fromhex(v["payload"])), v["expect"])
    for v in seg["reassembly"]:
        got = [o[0] if isinstance(o, tuple) else o for o in reassemble(v["frames"])]
        bodies = [o[1] for o in reassemble(v["frames"]) if isinstance(o, tuple)]
        check("reassembly/" + v["name"], got, v["expect"])
        for body in bodies:
            check("reassembly/%s body" % v["name"], body, v["body"])
    print("%d checks, %d failed (control.json skipped: no msgpack in the standard library)" % (checked, len(failures)))
    for f in failures:
        print("FAIL " + f)
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
