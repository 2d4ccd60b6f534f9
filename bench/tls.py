#!/usr/bin/env python3
"""TLS benchmark: a verified download over TLS, next to plain TCP and to the TLS limit.

Run from a clone, nothing installed (it needs the `openssl` command to make a
throw-away certificate, and skips with a note without it)::

    python3 bench/tls.py              # 512 MiB file, 3 rounds
    python3 bench/tls.py --quick      # 32 MiB, 1 round: a smoke test

The limit is what Python's ``ssl`` module does on this machine with the
cipher the two sides agree on (AES-GCM): the time the server's side spends
encrypting and the client's side decrypting the same bytes, measured in one
process through memory BIOs. Under TLS a body cannot go out with sendfile, so
the server reads it in chunks and the transport encrypts them; the client
decrypts, hashes and writes as for plain TCP.
"""

from __future__ import annotations

import argparse
import contextlib
import shutil
import ssl
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

BENCH = Path(__file__).resolve().parent
sys.path.insert(0, str(BENCH))
sys.path.insert(0, str(BENCH.parent))

import files  # noqa: E402  (bench/files.py: shared helpers)

from filedock.client.client import Client  # noqa: E402
from filedock.client.connection import client_context  # noqa: E402
from filedock.server.auth import server_context  # noqa: E402

MiB = 1024 * 1024
MB = 1_000_000
NAME = "big.bin"
RECORD = 16 * 1024  # a TLS record's largest plaintext


def make_certificate(folder: Path) -> tuple[Path, Path] | None:
    """A self-signed certificate for 127.0.0.1, made with the openssl command."""
    if shutil.which("openssl") is None:
        return None
    cert, key = folder / "cert.pem", folder / "key.pem"
    subprocess.run(
        ["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "1",
         "-keyout", str(key), "-out", str(cert), "-subj", "/CN=127.0.0.1",
         "-addext", "subjectAltName=IP:127.0.0.1"],
        check=True, capture_output=True,
    )  # fmt: skip
    return cert, key


def ssl_limit(cert: Path, key: Path, size: int) -> tuple[float, float, str]:
    """(encrypt MB/s, decrypt MB/s, cipher) of the ssl module, through memory BIOs."""
    server_ctx = server_context(str(cert), str(key))
    client_ctx = client_context(str(cert))
    s_in, s_out, c_in, c_out = (ssl.MemoryBIO() for _ in range(4))
    server = server_ctx.wrap_bio(s_in, s_out, server_side=True)
    client = client_ctx.wrap_bio(c_in, c_out, server_hostname="127.0.0.1")
    for _ in range(20):  # the handshake: a few flights each way
        for side in (client, server):
            with contextlib.suppress(ssl.SSLWantReadError):  # waits for the other side
                side.do_handshake()
        s_in.write(c_out.read())
        c_in.write(s_out.read())
        if server.version() and client.version():
            break
    block = bytes(range(256)) * (RECORD // 256) * 16  # 256 KiB, written as 16 records
    buffer = bytearray(len(block))
    encrypt = decrypt = 0.0
    sent = 0
    while sent < size:
        start = time.perf_counter()
        server.write(block)
        records = s_out.read()
        encrypt += time.perf_counter() - start
        start = time.perf_counter()
        c_in.write(records)
        got = 0
        while got < len(block):
            got += client.read(len(block) - got, memoryview(buffer)[got:])
        decrypt += time.perf_counter() - start
        sent += len(block)
    cipher = client.cipher()
    return sent / encrypt / MB, sent / decrypt / MB, cipher[0] if cipher else "?"


def timed_get(client: Client, out: Path) -> float:
    start = time.perf_counter()
    client.get(NAME, out)
    return time.perf_counter() - start


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="32 MiB, 1 round (CI smoke)")
    parser.add_argument("--size-mib", type=int, help="file size in MiB (default 512)")
    parser.add_argument("--rounds", type=int, help="rounds (default 3)")
    args = parser.parse_args(argv)
    size = (args.size_mib or (32 if args.quick else 512)) * MiB
    rounds = args.rounds or (1 if args.quick else 3)

    with tempfile.TemporaryDirectory(prefix="filedock-tls-bench-") as scratch:
        folder = Path(scratch)
        made = make_certificate(folder)
        if made is None:
            print("TLS benchmark skipped: no `openssl` command to make a certificate")
            return 0
        cert, key = made
        repo = folder / "repo"
        repo.mkdir()
        files.make_file(repo / NAME, size)
        plain_server, plain_port = files.start_filedock(repo, 4)
        tls_server = files.Proc(
            [sys.executable, str(files.ROOT / "Server.py"), "--port", "0", "--repo", str(repo),
             "--tls-cert", str(cert), "--tls-key", str(key)],
            stdout=subprocess.DEVNULL,
        )  # fmt: skip
        tls_port = int(tls_server.wait_stderr(files._STARTING).group(2))
        try:
            plain = Client("127.0.0.1", plain_port, timeout=120)
            secure = Client("127.0.0.1", tls_port, timeout=120, tls=client_context(str(cert)))
            out = folder / "out"
            timed_get(plain, files.fresh_outputs(out, MiB))  # both servers hash the file once
            timed_get(secure, files.fresh_outputs(out, MiB))
            plain_rates, tls_rates, enc_rates, dec_rates = [], [], [], []
            cipher = "?"
            for number in range(rounds):
                print(f"round {number + 1}/{rounds}", file=sys.stderr)
                plain_rates.append(size / timed_get(plain, files.fresh_outputs(out, size)) / MB)
                tls_rates.append(size / timed_get(secure, files.fresh_outputs(out, size)) / MB)
                encrypt, decrypt, cipher = ssl_limit(cert, key, min(size, 256 * MiB))
                enc_rates.append(encrypt)
                dec_rates.append(decrypt)
            plain.close()
            secure.close()
        finally:
            plain_server.stop()
            tls_server.stop()

    plain_mb, tls_mb = statistics.median(plain_rates), statistics.median(tls_rates)
    enc_mb, dec_mb = statistics.median(enc_rates), statistics.median(dec_rates)
    limit = min(enc_mb, dec_mb)
    print()
    print(
        f"filedock over TLS — {files.os.cpu_count()} cores, Python {sys.version.split()[0]}, "
        f"{ssl.OPENSSL_VERSION}, cipher {cipher}; {rounds} round(s), medians, MB = 10^6 bytes"
    )
    print()
    rows = [
        (f"verified download, plain TCP, {files.fmt_size(size)}", f"{plain_mb:.0f} MB/s"),
        (f"verified download, TLS, {files.fmt_size(size)}", f"{tls_mb:.0f} MB/s"),
        ("ssl encrypt (the server's side), one core", f"{enc_mb:.0f} MB/s"),
        ("ssl decrypt (the client's side), one core", f"{dec_mb:.0f} MB/s"),
        ("TLS download / plain TCP download", f"{tls_mb / plain_mb:.2f}"),
        ("TLS download / TLS limit (slower of encrypt, decrypt)", f"{tls_mb / limit:.2f}"),
    ]
    width = max(len(label) for label, _ in rows)
    for label, value in rows:
        print(f"{label:<{width}}  {value:>10}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
