"""Bodies stream through with backpressure: a big chunked upload and a big download
(PARAPET_TEST_BIG_MB MiB each, default 1024) arrive complete and intact (length and CRC-32),
and parapet's peak RSS grows by less than 64 MiB over its RSS before the transfer, even when
the receiving side pauses for a second before reading."""

import os
import sys
import time
import unittest
import zlib

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

from harness import MIB, ParapetCase, Reply, big_mib, build_request, demo_config  # noqa: E402

BIG = big_mib() * MIB
BLOCK = bytes(range(256)) * 256           # 64 KiB
MAX_GROWTH_KIB = 64 * 1024
PAUSE = 1.0                               # the receiver waits this long before reading


def pattern_crc(total: int) -> int:
    """CRC-32 of `total` bytes of BLOCK repeated."""
    crc = 0
    full, rest = divmod(total, len(BLOCK))
    for _ in range(full):
        crc = zlib.crc32(BLOCK, crc)
    return zlib.crc32(BLOCK[:rest], crc)


def pattern_pieces(total: int, piece: int = 4 * len(BLOCK)):
    """Yields `total` bytes of BLOCK repeated, in pieces of `piece` bytes."""
    big_piece = BLOCK * (piece // len(BLOCK))
    full, rest = divmod(total, len(big_piece))
    for _ in range(full):
        yield big_piece
    if rest:
        yield (BLOCK * (rest // len(BLOCK) + 1))[:rest]


class Streaming(ParapetCase):

    def assertMemoryBounded(self, rss_before_kib: int):
        growth = self.parapet.hwm_kib() - rss_before_kib
        self.assertLess(growth, MAX_GROWTH_KIB,
                        f"peak RSS grew by {growth} KiB for a {BIG // MIB} MiB transfer")

    def test_big_chunked_upload(self):
        origin = self.start_origin(lambda req: Reply(body=b"%d" % req.body_len),
                                   count_only=True, body_read_pause=PAUSE)
        proxy = self.start_parapet(demo_config(origin, limits={"max_body_bytes": 0}))
        rss_before = proxy.rss_kib()
        conn = self.client(timeout=30)
        started = time.monotonic()

        conn.send(build_request("POST", "/upload",
                                headers=[("Transfer-Encoding", "chunked")]))
        framed = b"%x\r\n" % len(BLOCK) + BLOCK + b"\r\n"
        full, rest = divmod(BIG, len(BLOCK))
        for _ in range(full):
            conn.sock.sendall(framed)
        if rest:
            conn.sock.sendall(b"%x\r\n" % rest + BLOCK[:rest] + b"\r\n")
        conn.sock.sendall(b"0\r\n\r\n")
        resp = conn.response("POST")
        elapsed = time.monotonic() - started

        self.assertStatus(resp, 200)
        self.assertEqual(resp.body, b"%d" % BIG)
        req = origin.requests[0]
        self.assertTrue(req.chunked, req.headers)
        self.assertEqual(req.body_len, BIG)
        self.assertEqual(req.body_crc32, pattern_crc(BIG), "upload corrupted on the way")
        self.assertMemoryBounded(rss_before)
        print(f"\n  upload {BIG // MIB} MiB in {elapsed:.1f}s", file=sys.stderr)

    def test_big_download(self):
        origin = self.start_origin(
            lambda req: Reply(body=pattern_pieces(BIG), headers=[("Content-Length", str(BIG))])
            if req.path == "/big" else Reply())
        proxy = self.start_parapet(demo_config(origin))
        rss_before = proxy.rss_kib()
        conn = self.client(timeout=30)
        started = time.monotonic()

        conn.request("GET", "/big")
        time.sleep(PAUSE)  # the origin pushes, nobody reads: parapet must stop reading
        resp = conn.response(store_body=False)
        elapsed = time.monotonic() - started

        self.assertStatus(resp, 200)
        self.assertEqual(resp.header("Content-Length"), str(BIG))
        self.assertEqual(resp.body_len, BIG)
        self.assertEqual(resp.body_crc32, pattern_crc(BIG), "download corrupted on the way")
        self.assertMemoryBounded(rss_before)
        self.assertStatus(conn.roundtrip("GET", "/small-after-big"), 200)
        print(f"\n  download {BIG // MIB} MiB in {elapsed:.1f}s", file=sys.stderr)


if __name__ == "__main__":
    unittest.main()
