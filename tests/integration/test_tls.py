"""TLS termination: certificates chosen by SNI per tenant (exact and wildcard), the default
certificate or a refusal without SNI, SNI/Host cross-tenant mismatch refused with 421, old
protocol versions refused, garbage and stalled handshakes closed, proxying over TLS (keep-alive,
large bodies), ALPN, and certificate errors reported by --check with file and line.
TLS to origins: https:// servers verified against a CA (name or IP), untrusted or misnamed
certificates answered 502 without the request leaving, client certificates, pooling and
session resumption, retries across servers."""

import json
import os
import socket
import ssl
import subprocess
import sys
import tempfile
import time
import unittest

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

from harness import (Client, DeadPort, ParapetCase, Reply, build_request,  # noqa: E402
                     demo_config, parse_responses, run_parapet, to_yaml)

CERTS = None


def make_certs() -> str:
    """A throwaway CA and leaf certificates (ECDSA P-256), made with the openssl CLI."""
    d = tempfile.mkdtemp(prefix="parapet-tls-")

    def run(*args):
        subprocess.run(["openssl", *args], cwd=d, check=True, capture_output=True, timeout=30)

    run("req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256", "-nodes",
        "-keyout", "ca.key", "-out", "ca.pem", "-subj", "/CN=parapet-test-ca", "-days", "2")
    leaves = {"demo": "DNS:demo.local,DNS:*.demo.local", "other": "DNS:other.example",
              "demo-rsa": "DNS:demo.local,DNS:*.demo.local", "ip": "IP:127.0.0.1"}
    for name, san in leaves.items():
        key = ["-newkey", "rsa:2048"] if name.endswith("-rsa") else \
            ["-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256"]
        run("req", *key, "-nodes",
            "-keyout", f"{name}.key", "-out", f"{name}.csr", "-subj", f"/CN={name}")
        with open(os.path.join(d, f"{name}.ext"), "w") as f:
            f.write(f"subjectAltName={san}\n")
        run("x509", "-req", "-in", f"{name}.csr", "-CA", "ca.pem", "-CAkey", "ca.key",
            "-CAcreateserial", "-out", f"{name}.pem", "-days", "2", "-extfile", f"{name}.ext")
    # Client certificates for mTLS: one signed by the CA, one self-signed (untrusted).
    run("req", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256", "-nodes",
        "-keyout", "client.key", "-out", "client.csr", "-subj", "/CN=client")
    run("x509", "-req", "-in", "client.csr", "-CA", "ca.pem", "-CAkey", "ca.key",
        "-CAcreateserial", "-out", "client.pem", "-days", "2")
    run("req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256", "-nodes",
        "-keyout", "rogue.key", "-out", "rogue.pem", "-subj", "/CN=rogue", "-days", "2")
    # A second client CA with its own client certificate (another tenant's mTLS).
    run("req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256", "-nodes",
        "-keyout", "ca2.key", "-out", "ca2.pem", "-subj", "/CN=parapet-test-ca2", "-days", "2")
    run("req", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256", "-nodes",
        "-keyout", "client2.key", "-out", "client2.csr", "-subj", "/CN=client2")
    run("x509", "-req", "-in", "client2.csr", "-CA", "ca2.pem", "-CAkey", "ca2.key",
        "-CAcreateserial", "-out", "client2.pem", "-days", "2")
    # demo.local certificates outside their validity: expired (notAfter = now, checked a
    # second later) and not valid before 2099 (openssl ca sets the dates).
    run("x509", "-req", "-in", "demo.csr", "-CA", "ca.pem", "-CAkey", "ca.key",
        "-CAcreateserial", "-out", "expired.pem", "-days", "0")
    with open(os.path.join(d, "ca.cnf"), "w") as f:
        f.write("[ca]\ndefault_ca=c\n[c]\ndatabase=index.txt\nnew_certs_dir=.\n"
                "serial=serial\ndefault_md=sha256\npolicy=p\n[p]\ncommonName=supplied\n")
    open(os.path.join(d, "index.txt"), "w").close()
    with open(os.path.join(d, "serial"), "w") as f:
        f.write("1000\n")
    run("ca", "-config", "ca.cnf", "-batch", "-cert", "ca.pem", "-keyfile", "ca.key",
        "-in", "demo.csr", "-out", "future.pem", "-notext",
        "-startdate", "20991231000000Z", "-enddate", "21000101000000Z")
    return d


def setUpModule():
    global CERTS
    CERTS = make_certs()


def tearDownModule():
    subprocess.run(["rm", "-rf", CERTS], check=False)


def tls_config(origin, no_sni=None, timeouts=None):
    config = demo_config(origin, timeouts=timeouts)
    listener = {"name": "https", "address": "127.0.0.1:0", "tls": {"no_sni": no_sni} if no_sni else {}}
    config["listeners"].append(listener)
    config["tenants"][0]["tls"] = {"certificates": [
        {"cert": f"{CERTS}/demo.pem", "key": f"{CERTS}/demo.key"}]}
    other = {"name": "other", "hosts": ["other.example"],
             "tls": {"certificates": [{"cert": f"{CERTS}/other.pem", "key": f"{CERTS}/other.key"}]},
             "origins": config["tenants"][0]["origins"], "routes": config["tenants"][0]["routes"]}
    config["tenants"].append(other)
    return config


def client_context(verify=True, **kwargs) -> ssl.SSLContext:
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    if verify:
        ctx.load_verify_locations(f"{CERTS}/ca.pem")
    else:
        ctx.check_hostname = False
        ctx.verify_mode = ssl.CERT_NONE
    for k, v in kwargs.items():
        setattr(ctx, k, v)
    return ctx


def tls_connect(port, sni, ctx=None, timeout=5.0) -> ssl.SSLSocket:
    raw = socket.create_connection(("127.0.0.1", port), timeout=timeout)
    return (ctx or client_context()).wrap_socket(raw, server_hostname=sni)


def roundtrip(sock, host, path="/", extra=b""):
    sock.sendall(f"GET {path} HTTP/1.1\r\nHost: {host}\r\n".encode() + extra + b"\r\n")
    data = b""
    while True:
        responses, _ = parse_responses(data)
        if responses:
            return responses[0]
        chunk = sock.recv(65536)
        if not chunk:
            raise ConnectionError(f"closed after {data!r}")
        data += chunk


def read_until_closed(sock) -> bytes:
    """Everything the server sends until it closes (a reset ends it too); closes `sock`."""
    data = b""
    try:
        while chunk := sock.recv(4096):
            data += chunk
    except ConnectionResetError:
        pass
    sock.close()
    return data


class Tls(ParapetCase):

    def start(self, **kwargs):
        origin = self.start_origin()
        self.start_parapet(tls_config(origin, **kwargs))
        return origin, self.parapet.port("https")

    def test_proxies_over_tls_with_keep_alive(self):
        origin, port = self.start()
        with tls_connect(port, "demo.local") as s:
            self.assertEqual(s.version(), "TLSv1.3")
            for i in range(3):
                resp = roundtrip(s, "demo.local", f"/r{i}")
                self.assertEqual((resp.status, resp.body), (200, b"hello from origin"))
        self.assertEqual(len(origin.requests), 3)
        self.assertEqual(origin.requests[0].header("X-Forwarded-Proto"), "https")

    def test_large_body_over_tls(self):
        body = os.urandom(3 * 1024 * 1024)
        origin = self.start_origin(lambda req: Reply(body=body))
        self.start_parapet(tls_config(origin))
        with tls_connect(self.parapet.port("https"), "demo.local") as s:
            resp = roundtrip(s, "demo.local", "/big")
        self.assertEqual(resp.body, body)

    def test_sni_selects_each_tenants_certificate(self):
        _, port = self.start()
        for sni in ("demo.local", "other.example", "a.demo.local"):
            with tls_connect(port, sni) as s:  # verified against the name: the right certificate
                resp = roundtrip(s, sni)
                self.assertEqual(resp.status, 200, sni)

    def test_unknown_sni_is_refused(self):
        _, port = self.start()
        with self.assertRaises(ssl.SSLError):
            tls_connect(port, "unknown.example", client_context(verify=False))

    def test_no_sni_gets_the_default_certificate(self):
        _, port = self.start()
        with tls_connect(port, None, client_context(verify=False)) as s:
            self.assertEqual(s.getpeercert(binary_form=True), der("demo"))  # the first tenant's
            self.assertEqual(roundtrip(s, "demo.local").status, 200)

    def test_no_sni_refused_when_configured(self):
        _, port = self.start(no_sni="reject")
        with self.assertRaises((ssl.SSLError, ConnectionError)):
            with tls_connect(port, None, client_context(verify=False)) as s:
                roundtrip(s, "demo.local")

    def test_sni_and_host_of_different_tenants_is_421(self):
        origin, port = self.start()
        with tls_connect(port, "demo.local") as s:
            resp = roundtrip(s, "other.example")
        self.assertError(resp, 421, "route.sni_mismatch")
        self.assertEqual(origin.requests, [])

    def test_tls_1_1_is_refused(self):
        _, port = self.start()
        for version in ("-tls1", "-tls1_1"):
            # The client offers only the old version (SECLEVEL=0 lets OpenSSL 3 offer it at
            # all): the server itself must answer with a protocol_version alert.
            out = subprocess.run(
                ["openssl", "s_client", "-connect", f"127.0.0.1:{port}", "-servername",
                 "demo.local", version, "-cipher", "DEFAULT:@SECLEVEL=0"],
                stdin=subprocess.DEVNULL, capture_output=True, timeout=10)
            text = (out.stdout + out.stderr).decode(errors="replace")
            self.assertNotEqual(out.returncode, 0, text)
            self.assertIn("alert protocol version", text, text)

    def test_renegotiation_is_refused(self):
        _, port = self.start()
        proc = subprocess.Popen(
            ["openssl", "s_client", "-connect", f"127.0.0.1:{port}", "-servername", "demo.local",
             "-tls1_2", "-CAfile", f"{CERTS}/ca.pem"],
            stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
        try:
            time.sleep(0.5)
            try:
                proc.stdin.write(b"R\n")  # s_client: renegotiate
                proc.stdin.flush()
                time.sleep(0.5)
                proc.stdin.write(b"GET /after HTTP/1.1\r\nHost: demo.local\r\n\r\n")
                proc.stdin.flush()
            except BrokenPipeError:
                pass  # s_client already gave up: the server closed the connection
            out = proc.communicate(timeout=10)[0].decode(errors="replace")
        finally:
            if proc.poll() is None:
                proc.kill()
                proc.wait(5)
        self.assertIn("RENEGOTIATING", out)
        # The server never renegotiates: the connection ends, and the request typed after it
        # is never answered.
        self.assertNotIn("HTTP/1.1 200", out, out)
        self.assertRegex(out, "unexpected eof|alert", out)

    def test_alpn_selects_http11(self):
        _, port = self.start()
        ctx = client_context()
        ctx.set_alpn_protocols(["h2", "http/1.1"])
        with tls_connect(port, "demo.local", ctx) as s:
            self.assertEqual(s.selected_alpn_protocol(), "http/1.1")

    def test_garbage_on_the_tls_port_is_closed(self):
        _, port = self.start()
        raw = socket.create_connection(("127.0.0.1", port), timeout=5)
        raw.sendall(b"GET / HTTP/1.1\r\nHost: demo.local\r\n\r\n")
        data = read_until_closed(raw)
        self.assertNotIn(b"HTTP/1.1 200", data)
        with tls_connect(port, "demo.local") as s:  # still serving
            self.assertEqual(roundtrip(s, "demo.local").status, 200)

    def test_stalled_handshake_is_closed_by_the_header_timeout(self):
        _, port = self.start(timeouts={"client_header": "1s"})
        raw = socket.create_connection(("127.0.0.1", port), timeout=5)
        start = time.monotonic()
        self.assertEqual(raw.recv(1), b"")
        self.assertLess(time.monotonic() - start, 3.0)
        raw.close()


def der(name):
    with open(f"{CERTS}/{name}.pem") as f:
        return ssl.PEM_cert_to_DER_cert(f.read())


class ListenerSettings(ParapetCase):
    """A listener's own ciphers, TLS 1.3 suites, groups and ticket setting hold for every
    tenant SNI selects on it (the SSL keeps them when SNI switches its context)."""

    def start(self):
        origin = self.start_origin()
        config = tls_config(origin)
        config["listeners"][1]["tls"] = {"ciphers": "ECDHE-ECDSA-AES256-GCM-SHA384",
                                         "ciphersuites": "TLS_CHACHA20_POLY1305_SHA256",
                                         "curves": "P-384", "session_tickets": False}
        config["listeners"].append({"name": "https2", "address": "127.0.0.1:0", "tls": {}})
        self.start_parapet(config)
        return self.parapet.port("https"), self.parapet.port("https2")

    def test_ciphers_suites_and_curves_of_the_listener(self):
        port, plain_port = self.start()
        for sni in ("demo.local", "other.example"):
            with self.subTest(sni=sni):
                with tls_connect(port, sni) as s:
                    self.assertEqual(s.cipher()[0], "TLS_CHACHA20_POLY1305_SHA256")
                    self.assertEqual(roundtrip(s, sni).status, 200)
                tls12 = client_context(maximum_version=ssl.TLSVersion.TLSv1_2)
                with tls_connect(port, sni, tls12) as s:
                    self.assertEqual(s.cipher()[0], "ECDHE-ECDSA-AES256-GCM-SHA384")
                aes128 = client_context(maximum_version=ssl.TLSVersion.TLSv1_2)
                aes128.set_ciphers("ECDHE-ECDSA-AES128-GCM-SHA256")
                with self.assertRaises(ssl.SSLError):
                    tls_connect(port, sni, aes128)
                out = subprocess.run(
                    ["openssl", "s_client", "-connect", f"127.0.0.1:{port}", "-servername", sni,
                     "-groups", "X25519"], stdin=subprocess.DEVNULL, capture_output=True,
                    timeout=10)
                self.assertNotEqual(out.returncode, 0)  # no common group
        # The other listener keeps the defaults.
        with tls_connect(plain_port, "other.example") as s:
            self.assertEqual(s.cipher()[0], "TLS_AES_256_GCM_SHA384")

    def test_session_tickets_off(self):
        port, default_port = self.start()
        d = tempfile.mkdtemp(prefix="parapet-sess-")
        self.addCleanup(subprocess.run, ["rm", "-rf", d], check=False)
        for sni in ("demo.local", "other.example"):
            out = s_client_session(port, sni, sess_out=f"{d}/s")
            self.assertIn("HTTP/1.1 200", out)
            self.assertNotIn("TLS session ticket:", out)
            out = s_client_session(default_port, sni, sess_out=f"{d}/s")
            self.assertIn("TLS session ticket:", out)


class HandshakeFailures(ParapetCase):
    """Handshakes that never complete are closed and counted, each by its reason."""

    def scrape(self):
        with Client(self.parapet.admin_port) as c:
            c.send(build_request("GET", "/metrics", host="admin"))
            body = c.response().body.decode()
        out = {}
        for line in body.splitlines():
            if line.startswith("parapet_tls_handshake"):
                name, value = line.rsplit(" ", 1)
                out[name] = float(value)
        return out

    def test_failures_timeouts_and_abandoned_handshakes_are_counted(self):
        origin = self.start_origin()
        self.start_parapet(tls_config(origin, timeouts={"client_header": "1s"}))
        port = self.parapet.port("https")
        rss_before = self.parapet.rss_kib()
        # Garbage: a plain HTTP request, then a large blob of random bytes.
        for junk in (b"GET / HTTP/1.1\r\nHost: demo.local\r\n\r\n", os.urandom(256 * 1024)):
            raw = socket.create_connection(("127.0.0.1", port), timeout=5)
            try:
                raw.sendall(junk)
                while raw.recv(4096):
                    pass
            except (ConnectionResetError, BrokenPipeError):
                pass
            raw.close()
        # Half a ClientHello, then nothing: closed by client_header (1 s).
        hello = self.client_hello()
        raw = socket.create_connection(("127.0.0.1", port), timeout=5)
        raw.sendall(hello[:len(hello) // 2])
        start = time.monotonic()
        self.assertEqual(raw.recv(1), b"")
        self.assertLess(time.monotonic() - start, 3.0)
        raw.close()
        # Connect and leave.
        socket.create_connection(("127.0.0.1", port), timeout=5).close()
        # Two good handshakes, one resumed.
        ctx = client_context()
        with tls_connect(port, "demo.local", ctx) as s:
            self.assertEqual(roundtrip(s, "demo.local").status, 200)
            session = s.session
        raw = socket.create_connection(("127.0.0.1", port), timeout=5)
        with ctx.wrap_socket(raw, server_hostname="demo.local", session=session) as s:
            self.assertEqual(roundtrip(s, "demo.local").status, 200)
        time.sleep(0.2)
        m = self.scrape()
        self.assertEqual(m['parapet_tls_handshake_failures_total{reason="error"}'], 2, m)
        self.assertEqual(m['parapet_tls_handshake_failures_total{reason="timeout"}'], 1, m)
        self.assertEqual(m['parapet_tls_handshake_failures_total{reason="closed"}'], 1, m)
        self.assertEqual(m['parapet_tls_handshakes_total{resumed="false"}'], 1, m)
        self.assertEqual(m['parapet_tls_handshakes_total{resumed="true"}'], 1, m)
        self.assertEqual(origin.requests and len(origin.requests), 2)
        # The garbage cost no lasting memory (bounded per connection, freed when it closed):
        # far less than the 256 KiB blob's worth many times over (sanitizer builds included).
        self.assertLess(self.parapet.rss_kib() - rss_before, 16 * 1024)

    def client_hello(self) -> bytes:
        """A real ClientHello, captured from Python's ssl over a memory BIO."""
        incoming, outgoing = ssl.MemoryBIO(), ssl.MemoryBIO()
        obj = client_context().wrap_bio(incoming, outgoing, server_hostname="demo.local")
        try:
            obj.do_handshake()
        except ssl.SSLWantReadError:
            pass
        return outgoing.read()


def read_access_log(path, want, timeout=5.0):
    """The JSON access log's records by path, once `want` of them are written."""
    recs = {}
    deadline = time.monotonic() + timeout
    while len(recs) < want and time.monotonic() < deadline:
        time.sleep(0.1)
        if os.path.exists(path):
            with open(path) as f:
                recs = {r["path"]: r for r in map(json.loads, f.read().splitlines())}
    return recs


class TlsAccessLog(ParapetCase):

    def start_logged(self):
        """parapet with a JSON access log: its TLS port and the log's path."""
        origin = self.start_origin()
        config = tls_config(origin)
        d = tempfile.mkdtemp(prefix="parapet-log-")
        self.addCleanup(subprocess.run, ["rm", "-rf", d], check=False)
        config["access_log"] = {"path": f"{d}/access.log", "format": "json"}
        self.start_parapet(config)
        return self.parapet.port("https"), f"{d}/access.log"

    def test_version_cipher_sni_and_resumption_are_logged(self):
        port, log = self.start_logged()
        ctx = client_context()
        with tls_connect(port, "demo.local", ctx) as s:
            self.assertEqual(roundtrip(s, "demo.local", "/first").status, 200)
            session = s.session
            first_cipher = s.cipher()[0]
        tls12 = client_context(maximum_version=ssl.TLSVersion.TLSv1_2)
        tls12.set_ciphers("ECDHE-ECDSA-CHACHA20-POLY1305")
        with tls_connect(port, "a.demo.local", tls12) as s:
            self.assertEqual(roundtrip(s, "a.demo.local", "/second").status, 200)
        raw = socket.create_connection(("127.0.0.1", port), timeout=5)
        with ctx.wrap_socket(raw, server_hostname="demo.local", session=session) as s:
            self.assertEqual(roundtrip(s, "demo.local", "/third").status, 200)
        self.assertEqual(self.get("/plain", host="demo.local").status, 200)
        recs = read_access_log(log, 4)
        first, second, third = recs["/first"], recs["/second"], recs["/third"]
        self.assertEqual((first["tls"], first["cipher"], first["sni"], first["tls_resumed"]),
                         ("TLSv1.3", first_cipher, "demo.local", False))
        self.assertEqual((second["tls"], second["cipher"], second["sni"], second["tls_resumed"]),
                         ("TLSv1.2", "ECDHE-ECDSA-CHACHA20-POLY1305", "a.demo.local", False))
        self.assertEqual((third["tls"], third["tls_resumed"]), ("TLSv1.3", True))
        self.assertNotIn("tls", recs["/plain"])


class KeyTypes(ParapetCase):

    def test_ecdsa_and_rsa_side_by_side(self):
        origin = self.start_origin()
        config = tls_config(origin)
        config["tenants"][0]["tls"]["certificates"].append(
            {"cert": f"{CERTS}/demo-rsa.pem", "key": f"{CERTS}/demo-rsa.key"})
        self.start_parapet(config)
        port = self.parapet.port("https")
        with tls_connect(port, "demo.local") as s:  # a modern client gets the ECDSA pair
            self.assertEqual(s.getpeercert(binary_form=True), der("demo"))
        rsa_only = client_context(maximum_version=ssl.TLSVersion.TLSv1_2)
        rsa_only.set_ciphers("ECDHE-RSA-AES128-GCM-SHA256")
        with tls_connect(port, "demo.local", rsa_only) as s:  # an RSA-only client, the RSA one
            self.assertEqual(s.cipher()[0], "ECDHE-RSA-AES128-GCM-SHA256")
            self.assertEqual(s.getpeercert(binary_form=True), der("demo-rsa"))
            self.assertEqual(roundtrip(s, "demo.local").status, 200)


class MutualTls(ParapetCase):

    def start_mtls(self, failure):
        origin = self.start_origin()
        config = tls_config(origin)
        config["tenants"][0]["tls"]["client_ca"] = f"{CERTS}/ca.pem"
        config["tenants"][0]["tls"]["client_cert_failure"] = failure
        self.start_parapet(config)
        return origin, self.parapet.port("https")

    def with_cert(self, name):
        ctx = client_context()
        ctx.load_cert_chain(f"{CERTS}/{name}.pem", f"{CERTS}/{name}.key")
        return ctx

    def test_required_client_certificate_fails_the_handshake_without_one(self):
        origin, port = self.start_mtls("handshake")
        with self.assertRaises((ssl.SSLError, ConnectionError)):
            with tls_connect(port, "demo.local") as s:  # TLS 1.3: the alert comes after
                roundtrip(s, "demo.local")
        with tls_connect(port, "demo.local", self.with_cert("client")) as s:
            self.assertEqual(roundtrip(s, "demo.local").status, 200)
        self.assertEqual(len(origin.requests), 1)
        # The other tenant asks for no client certificate.
        with tls_connect(port, "other.example") as s:
            self.assertEqual(roundtrip(s, "other.example").status, 200)

    def test_status_mode_answers_403_without_a_valid_certificate(self):
        origin, port = self.start_mtls("status")
        with tls_connect(port, "demo.local") as s:
            self.assertError(roundtrip(s, "demo.local"), 403, "tls.client_cert_required")
        with tls_connect(port, "demo.local", self.with_cert("rogue")) as s:
            self.assertError(roundtrip(s, "demo.local"), 403, "tls.client_cert_required")
        with tls_connect(port, "demo.local", self.with_cert("client")) as s:
            self.assertEqual(roundtrip(s, "demo.local").status, 200)
        self.assertEqual(len(origin.requests), 1)


    def test_a_client_certificate_counts_only_for_the_tenant_whose_ca_verified_it(self):
        # demo trusts ca.pem, other trusts ca2.pem, both in status mode. Without SNI the
        # handshake is demo's (the default certificate): the client's ca.pem certificate is
        # verified against demo's client_ca, which says nothing about other.
        origin = self.start_origin()
        config = tls_config(origin)
        config["tenants"][0]["tls"]["client_ca"] = f"{CERTS}/ca.pem"
        config["tenants"][0]["tls"]["client_cert_failure"] = "status"
        config["tenants"][1]["tls"]["client_ca"] = f"{CERTS}/ca2.pem"
        config["tenants"][1]["tls"]["client_cert_failure"] = "status"
        self.start_parapet(config)
        port = self.parapet.port("https")
        no_sni = client_context(verify=False)
        no_sni.load_cert_chain(f"{CERTS}/client.pem", f"{CERTS}/client.key")
        with tls_connect(port, None, no_sni) as s:
            self.assertEqual(roundtrip(s, "demo.local").status, 200)
            self.assertError(roundtrip(s, "other.example"), 403, "tls.client_cert_required")
        # With SNI, other's own CA verifies its own clients.
        with tls_connect(port, "other.example", self.with_cert("client2")) as s:
            self.assertEqual(roundtrip(s, "other.example").status, 200)
        with tls_connect(port, "other.example", self.with_cert("client")) as s:
            self.assertError(roundtrip(s, "other.example"), 403, "tls.client_cert_required")
        self.assertEqual(len(origin.requests), 2)

    def test_the_chain_sent_is_the_certificate_file(self):
        # client_ca is the CA that also signed the server's certificate: OpenSSL's automatic
        # chain building would take it from the client-CA store and send it along.
        origin, port = self.start_mtls("status")
        out = subprocess.run(
            ["openssl", "s_client", "-connect", f"127.0.0.1:{port}", "-servername", "demo.local",
             "-showcerts"], stdin=subprocess.DEVNULL, capture_output=True, timeout=10)
        text = out.stdout.decode(errors="replace")
        self.assertEqual(text.count("-----BEGIN CERTIFICATE-----"), 1, text)

    def test_tls12_session_resumes_on_an_mtls_tenant(self):
        origin, port = self.start_mtls("handshake")
        ctx = self.with_cert("client")
        ctx.maximum_version = ssl.TLSVersion.TLSv1_2
        with tls_connect(port, "demo.local", ctx) as first:
            self.assertEqual(roundtrip(first, "demo.local").status, 200)
            session = first.session
        raw = socket.create_connection(("127.0.0.1", port), timeout=5)
        with ctx.wrap_socket(raw, server_hostname="demo.local", session=session) as s:
            self.assertTrue(s.session_reused)
            self.assertEqual(roundtrip(s, "demo.local").status, 200)
        self.assertEqual(len(origin.requests), 2)


def s_client_session(port, sni, sess_in=None, sess_out=None, request_host=None):
    """One openssl s_client connection (TLS 1.3), optionally resuming / saving a session;
    returns its output."""
    args = ["openssl", "s_client", "-connect", f"127.0.0.1:{port}", "-servername", sni,
            "-CAfile", f"{CERTS}/ca.pem"]
    if sess_in:
        args += ["-sess_in", sess_in]
    if sess_out:
        args += ["-sess_out", sess_out]
    host = request_host or sni
    proc = subprocess.Popen(args, stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                            stderr=subprocess.STDOUT)
    try:
        time.sleep(0.3)
        proc.stdin.write(f"GET / HTTP/1.1\r\nHost: {host}\r\n\r\n".encode())
        proc.stdin.flush()
        time.sleep(0.5)  # the response, and the ticket sent after the handshake
        return proc.communicate(timeout=10)[0].decode(errors="replace")
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait(5)


class Resumption(ParapetCase):

    def test_a_ticket_of_one_tenant_does_not_resume_under_another(self):
        origin = self.start_origin()
        self.start_parapet(tls_config(origin))
        port = self.parapet.port("https")
        d = tempfile.mkdtemp(prefix="parapet-sess-")
        self.addCleanup(subprocess.run, ["rm", "-rf", d], check=False)
        out = s_client_session(port, "demo.local", sess_out=f"{d}/demo.sess")
        self.assertIn("HTTP/1.1 200", out)
        out = s_client_session(port, "demo.local", sess_in=f"{d}/demo.sess")
        self.assertIn("Reused, TLSv1.3", out)  # the ticket works where it was issued
        out = s_client_session(port, "other.example", sess_in=f"{d}/demo.sess")
        self.assertIn("New, TLSv1.3", out)  # and not under another tenant's name
        self.assertNotIn("Reused,", out)
        self.assertIn("HTTP/1.1 200", out)

    def test_session_resumes_on_new_connections_across_workers(self):
        origin = self.start_origin()
        config = tls_config(origin)
        config["workers"] = 2
        self.start_parapet(config)
        port = self.parapet.port("https")
        ctx = client_context()
        with tls_connect(port, "demo.local", ctx) as first:
            self.assertEqual(roundtrip(first, "demo.local").status, 200)  # ticket read by now
            session = first.session
            self.assertFalse(first.session_reused)
        self.assertIsNotNone(session)
        resumed = 0
        for _ in range(16):  # SO_REUSEPORT spreads these over both workers
            raw = socket.create_connection(("127.0.0.1", port), timeout=5)
            with ctx.wrap_socket(raw, server_hostname="demo.local", session=session) as s:
                self.assertEqual(roundtrip(s, "demo.local").status, 200)
                resumed += s.session_reused
        self.assertEqual(resumed, 16)


class RecordLayer(ParapetCase):
    """After the handshake parapet seals and opens client records itself (proxy/tls_records.h):
    every version and AEAD cipher, keep-alive, large bodies, resumed TLS 1.2, KeyUpdate."""

    def setUp(self):
        def echo(req):
            return Reply(200, body=req.body or b"empty")
        self.origin = self.start_origin(echo)
        self.start_parapet(tls_config(self.origin))
        self.port = self.parapet.port("https")

    def exchange(self, ctx):
        body = os.urandom(200 * 1024)
        with tls_connect(self.port, "demo.local", ctx) as s:
            for path in ("/a", "/b"):  # keep-alive
                self.assertEqual(roundtrip(s, "demo.local", path).status, 200)
            s.sendall(b"POST /up HTTP/1.1\r\nHost: demo.local\r\nContent-Length: "
                      + str(len(body)).encode() + b"\r\n\r\n" + body)
            data = b""
            while True:
                responses, _ = parse_responses(data)
                if responses:
                    break
                chunk = s.recv(65536)
                self.assertTrue(chunk, "closed early")
                data += chunk
            self.assertEqual(responses[0].status, 200)
            self.assertEqual(responses[0].body, body)
            return s.cipher()[0]

    def test_tls12_ciphers(self):
        for cipher in ("ECDHE-ECDSA-AES128-GCM-SHA256", "ECDHE-ECDSA-AES256-GCM-SHA384",
                       "ECDHE-ECDSA-CHACHA20-POLY1305"):
            with self.subTest(cipher=cipher):
                ctx = client_context(maximum_version=ssl.TLSVersion.TLSv1_2)
                ctx.set_ciphers(cipher)
                self.assertEqual(self.exchange(ctx), cipher)

    def test_tls13_suites_in_the_clients_order(self):
        # Mozilla intermediate: every suite offered is strong, so the client's order decides
        # (a client without AES hardware puts ChaCha20 first).
        self.assertEqual(self.exchange(client_context()), "TLS_AES_256_GCM_SHA384")  # Python's first
        for suites, chosen in (("TLS_AES_128_GCM_SHA256:TLS_AES_256_GCM_SHA384",
                                "TLS_AES_128_GCM_SHA256"),
                               ("TLS_CHACHA20_POLY1305_SHA256:TLS_AES_128_GCM_SHA256",
                                "TLS_CHACHA20_POLY1305_SHA256")):
            out = self.s_client(["-ciphersuites", suites],
                                [b"GET /x HTTP/1.1\r\nHost: demo.local\r\n\r\n"])
            self.assertIn(f"Cipher is {chosen}".encode(), out)

    def test_tls13_suites_with_openssl_client(self):
        for suite in ("TLS_AES_256_GCM_SHA384", "TLS_CHACHA20_POLY1305_SHA256"):
            with self.subTest(suite=suite):
                out = self.s_client(["-ciphersuites", suite],
                                    [b"GET /x HTTP/1.1\r\nHost: demo.local\r\n\r\n"])
                self.assertIn(b"HTTP/1.1 200", out)
                self.assertIn(suite.encode(), out)

    def test_resumed_tls12_session(self):
        ctx = client_context(maximum_version=ssl.TLSVersion.TLSv1_2)
        with tls_connect(self.port, "demo.local", ctx) as first:
            self.assertEqual(roundtrip(first, "demo.local").status, 200)
            session = first.session
        raw = socket.create_connection(("127.0.0.1", self.port), timeout=5)
        with ctx.wrap_socket(raw, server_hostname="demo.local", session=session) as s:
            self.assertTrue(s.session_reused)
            self.assertEqual(roundtrip(s, "demo.local").status, 200)
            self.assertEqual(roundtrip(s, "demo.local").status, 200)

    def test_key_update_requested_by_the_client(self):
        req = b"GET /ku HTTP/1.1\r\nHost: demo.local\r\n\r\n"
        out = self.s_client([], [req, b"K\n", req])  # "K": KeyUpdate, update requested
        self.assertIn(b"KEYUPDATE", out)
        self.assertEqual(out.count(b"HTTP/1.1 200"), 2, out[-2000:])

    def s_client(self, args, chunks):
        proc = subprocess.Popen(
            ["openssl", "s_client", "-connect", f"127.0.0.1:{self.port}", "-servername",
             "demo.local", "-CAfile", f"{CERTS}/ca.pem", *args],
            stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
        try:
            time.sleep(0.5)
            for c in chunks:
                proc.stdin.write(c)
                proc.stdin.flush()
                time.sleep(0.5)
            return proc.communicate(timeout=10)[0]  # closes stdin: s_client ends
        finally:
            if proc.poll() is None:
                proc.kill()
                proc.wait(5)


class HstsAndRedirect(ParapetCase):

    def test_hsts_over_tls_and_redirect_from_plain_http(self):
        origin = self.start_origin()
        config = tls_config(origin)
        config["tenants"][0]["tls"]["hsts"] = "max-age=31536000; includeSubDomains"
        config["tenants"][0]["tls"]["redirect_http"] = True
        self.start_parapet(config)
        with tls_connect(self.parapet.port("https"), "demo.local") as s:
            resp = roundtrip(s, "demo.local", "/secure?x=1")
        self.assertEqual(resp.status, 200)
        self.assertEqual(resp.header("Strict-Transport-Security"),
                         "max-age=31536000; includeSubDomains")

        plain = self.get("/page?x=1", host="demo.local:8080")
        self.assertError(plain, 308, "route.https_redirect")
        self.assertEqual(plain.header("Location"), "https://demo.local/page?x=1")
        self.assertEqual(len(origin.requests), 1)  # the redirect never reached the origin
        # Another tenant without the options: plain HTTP is served, no HSTS.
        self.assertEqual(self.get("/", host="other.example").status, 200)
        with tls_connect(self.parapet.port("https"), "other.example") as s:
            self.assertIsNone(roundtrip(s, "other.example").header("Strict-Transport-Security"))


class TlsReload(ParapetCase):

    def test_certificate_reload_keeps_open_connections(self):
        origin = self.start_origin()
        config = tls_config(origin)
        self.start_parapet(config)
        port = self.parapet.port("https")
        ctx = client_context(verify=False)
        old = tls_connect(port, "demo.local", ctx)
        self.addCleanup(old.close)
        first_cert = old.getpeercert(binary_form=True)
        self.assertEqual(roundtrip(old, "demo.local").status, 200)

        # A new certificate for the same tenant (the "other" key pair re-issued for demo).
        d = tempfile.mkdtemp(prefix="parapet-tls-new-")
        self.addCleanup(subprocess.run, ["rm", "-rf", d], check=False)
        subprocess.run(["openssl", "req", "-x509", "-newkey", "ec", "-pkeyopt",
                        "ec_paramgen_curve:P-256", "-nodes", "-keyout", f"{d}/new.key", "-out",
                        f"{d}/new.pem", "-subj", "/CN=demo.local", "-days", "2"],
                       check=True, capture_output=True, timeout=30)
        config["tenants"][0]["tls"] = {"certificates": [{"cert": f"{d}/new.pem",
                                                         "key": f"{d}/new.key"}]}
        self.parapet.config_path.write_text(to_yaml(config))
        with Client(self.parapet.admin_port) as c:
            c.send(build_request("POST", "/reload", host="admin",
                                 headers=[("Content-Length", "0")]))
            self.assertEqual(c.response().status, 200)
        time.sleep(0.2)

        with tls_connect(port, "demo.local", ctx) as new:
            self.assertNotEqual(new.getpeercert(binary_form=True), first_cert)
            self.assertEqual(roundtrip(new, "demo.local").status, 200)
        self.assertEqual(roundtrip(old, "demo.local", "/still").status, 200)  # untouched


class TlsCheck(unittest.TestCase):

    def check(self, config) -> subprocess.CompletedProcess:
        d = tempfile.TemporaryDirectory()
        self.addCleanup(d.cleanup)
        path = os.path.join(d.name, "parapet.yaml")
        with open(path, "w") as f:
            f.write(to_yaml(config))
        return run_parapet(["--check", "-c", path])

    def test_missing_and_mismatched_certificates_are_config_errors(self):
        config = tls_config("127.0.0.1:9")
        config["tenants"][0]["tls"]["certificates"][0]["cert"] = f"{CERTS}/missing.pem"
        r = self.check(config)
        self.assertEqual(r.returncode, 1)
        self.assertRegex(r.stderr, r"parapet\.yaml:\d+:\d+: certificate of tenant 'demo': cannot load cert")

        config = tls_config("127.0.0.1:9")
        config["tenants"][0]["tls"]["certificates"][0]["key"] = f"{CERTS}/other.key"
        r = self.check(config)
        self.assertEqual(r.returncode, 1)
        self.assertRegex(r.stderr, r"cannot load key .*(mismatch|does not match)")

    def test_certificates_outside_their_validity_are_config_errors(self):
        time.sleep(1.1)  # expired.pem's notAfter is the second it was made
        for name, reason in (("expired", "has expired"), ("future", "is not valid yet")):
            with self.subTest(cert=name):
                config = tls_config("127.0.0.1:9")
                config["tenants"][0]["tls"]["certificates"][0]["cert"] = f"{CERTS}/{name}.pem"
                r = self.check(config)
                self.assertEqual(r.returncode, 1)
                self.assertRegex(r.stderr, r"parapet\.yaml:\d+:\d+: certificate of tenant 'demo': "
                                 rf"cert '.*{name}\.pem' {reason}")

    def test_unreadable_key_is_a_config_error(self):
        config = tls_config("127.0.0.1:9")
        config["tenants"][0]["tls"]["certificates"][0]["key"] = CERTS  # a directory
        r = self.check(config)
        self.assertEqual(r.returncode, 1)
        self.assertRegex(r.stderr, r"parapet\.yaml:\d+:\d+: certificate of tenant 'demo': "
                         r"cannot load key")

    def test_bad_listener_settings_are_config_errors(self):
        for key, value, reason in (("ciphers", "NO-SUCH-CIPHER", "no usable cipher in tls.ciphers"),
                                   ("ciphersuites", "TLS_NOPE", "bad tls.ciphersuites"),
                                   ("curves", "P-999", "bad tls.curves"),
                                   ("session_tickets", "maybe", "must be true or false")):
            with self.subTest(key=key):
                config = tls_config("127.0.0.1:9")
                config["listeners"][1]["tls"][key] = value
                r = self.check(config)
                self.assertEqual(r.returncode, 1)
                self.assertRegex(r.stderr, rf"parapet\.yaml:\d+:\d+: .*{reason}")

    def test_good_tls_config_passes(self):
        r = self.check(tls_config("127.0.0.1:9"))
        self.assertEqual(r.returncode, 0, r.stderr)



def origin_context(leaf="demo", client_ca=None) -> ssl.SSLContext:
    """Server side of an https origin: `leaf`'s certificate; with `client_ca`, a client
    certificate signed by it is required."""
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    ctx.load_cert_chain(f"{CERTS}/{leaf}.pem", f"{CERTS}/{leaf}.key")
    if client_ca:
        ctx.load_verify_locations(f"{CERTS}/{client_ca}")
        ctx.verify_mode = ssl.CERT_REQUIRED
    return ctx


class TlsOrigin(ParapetCase):
    """parapet as a TLS client of https:// origins."""

    def start(self, *origins, tls=None, origin=None):
        servers = ["https://" + o.address if hasattr(o, "tls") and o.tls else o.address
                   for o in origins]
        config = demo_config(*servers, origin=origin)
        if tls is not None:
            config["tenants"][0]["origins"][0]["tls"] = tls
        self.start_parapet(config)

    def test_verified_origin_by_name(self):
        origin = self.start_origin(tls=origin_context())
        self.start(origin, tls={"ca": f"{CERTS}/ca.pem", "server_name": "demo.local"})
        resp = self.get("/hello")
        self.assertStatus(resp, 200)
        self.assertEqual(resp.body, b"hello from origin")
        req = origin.wait_requests(1)[0]
        self.assertEqual(req.target, "/hello")
        self.assertEqual(req.header("Host"), "demo.local")

    def test_verified_origin_by_ip_address(self):
        origin = self.start_origin(tls=origin_context("ip"))
        self.start(origin, tls={"ca": f"{CERTS}/ca.pem"})
        self.assertStatus(self.get("/"), 200)

    def test_wrong_name_is_502_and_nothing_is_sent(self):
        origin = self.start_origin(tls=origin_context())
        self.start(origin, tls={"ca": f"{CERTS}/ca.pem", "server_name": "wrong.local"})
        self.assertError(self.get("/"), 502, "upstream.tls_failed")
        self.assertEqual(origin.request_count, 0)
        self.assertIsNotNone(self.parapet.wait_for_stderr("TLS handshake failed"))

    def test_ip_not_in_certificate_is_502(self):
        origin = self.start_origin(tls=origin_context("demo"))  # names only, no IP SAN
        self.start(origin, tls={"ca": f"{CERTS}/ca.pem"})
        self.assertError(self.get("/"), 502, "upstream.tls_failed")
        self.assertEqual(origin.request_count, 0)

    def test_untrusted_ca_is_502(self):
        origin = self.start_origin(tls=origin_context())
        for ca in (f"{CERTS}/rogue.pem", None):  # another CA; the system store
            with self.subTest(ca=ca):
                tls = {"server_name": "demo.local"}
                if ca:
                    tls["ca"] = ca
                self.start(origin, tls=tls)
                self.assertError(self.get("/"), 502, "upstream.tls_failed")
                self.parapet.stop()
        self.assertEqual(origin.request_count, 0)

    def test_verify_false_accepts_any_certificate(self):
        origin = self.start_origin(tls=origin_context())
        self.start(origin, tls={"verify": False})
        self.assertStatus(self.get("/"), 200)

    def test_client_certificate_to_origin(self):
        origin = self.start_origin(tls=origin_context(client_ca="ca.pem"))
        base = {"ca": f"{CERTS}/ca.pem", "server_name": "demo.local"}
        self.start(origin, tls=base)
        self.assertError(self.get("/"), 502, {"upstream.tls_failed", "upstream.reset"})
        self.assertEqual(origin.request_count, 0)
        self.parapet.stop()
        self.start(origin, tls=dict(base, cert=f"{CERTS}/client.pem", key=f"{CERTS}/client.key"))
        self.assertStatus(self.get("/"), 200)
        self.assertEqual(origin.request_count, 1)

    def test_pooled_connection_and_resumed_sessions(self):
        origin = self.start_origin(tls=origin_context())
        tls = {"ca": f"{CERTS}/ca.pem", "server_name": "demo.local"}
        self.start(origin, tls=tls)
        for _ in range(3):
            self.assertStatus(self.get("/"), 200)
        self.assertEqual(origin.connection_count, 1, "the TLS connection is pooled")
        self.parapet.stop()
        # Without pooling every request needs a handshake: all but the first resume.
        origin2 = self.start_origin(tls=origin_context())
        self.start(origin2, tls=tls, origin={"keepalive": {"max_idle": 0}})
        for _ in range(4):
            self.assertStatus(self.get("/"), 200)
        self.assertEqual(origin2.connection_count, 4)
        self.assertGreaterEqual(origin2.tls_resumed, 3, "sessions to the origin are resumed")

    def test_large_bodies_both_ways(self):
        def echo(req):
            return Reply(200, body=req.body)
        origin = self.start_origin(echo, tls=origin_context())
        self.start(origin, tls={"ca": f"{CERTS}/ca.pem", "server_name": "demo.local"})
        body = os.urandom(3 * 1024 * 1024)
        with Client(self.parapet.port("http"), timeout=30) as c:
            resp = c.roundtrip("POST", "/echo", host="demo.local", body=body)
        self.assertStatus(resp, 200)
        self.assertEqual(resp.body, body)

    def test_retry_on_another_server_after_a_failed_handshake(self):
        wrong = self.start_origin(tls=origin_context("other"), name="wrong")  # other.example
        good = self.start_origin(tls=origin_context())
        servers = ["https://" + wrong.address, "https://" + good.address]
        config = demo_config(*servers)
        config["tenants"][0]["origins"][0]["tls"] = {"ca": f"{CERTS}/ca.pem",
                                                    "server_name": "demo.local"}
        self.start_parapet(config)
        body = b"x" * 5000
        for _ in range(2):  # round robin: one of the two starts on the misnamed server
            with Client(self.parapet.port("http")) as c:
                resp = c.roundtrip("PUT", "/r", host="demo.local", body=body)
            self.assertStatus(resp, 200)
        reqs = good.wait_requests(2)
        self.assertEqual(len(reqs), 2)
        self.assertEqual([r.body for r in reqs], [body, body])
        self.assertEqual(wrong.request_count, 0)
        self.assertGreaterEqual(wrong.tls_failures, 1)

    def test_bad_origin_tls_files_refused_by_check(self):
        origin = self.start_origin(tls=origin_context())
        config = demo_config("https://" + origin.address)
        config["tenants"][0]["origins"][0]["tls"] = {"ca": f"{CERTS}/missing.pem"}
        with tempfile.NamedTemporaryFile("w", suffix=".yaml", delete=False) as f:
            f.write(to_yaml(config))
        self.addCleanup(os.unlink, f.name)
        r = run_parapet(["--check", "-c", f.name])
        self.assertEqual(r.returncode, 1, r.stderr)
        self.assertIn(f"{f.name}:", r.stderr)
        self.assertIn("cannot load tls.ca", r.stderr)


if __name__ == "__main__":
    unittest.main()


class OwnHandshake:
    """Mixin: runs a test class on listeners without session tickets, where parapet's own TLS
    1.3 handshake (proxy/tls13_server.h) answers the common case (an X25519 share, an ECDSA
    P-256 certificate) and OpenSSL every other (TLS 1.2, other groups, RSA, mTLS tenants)."""

    def start_parapet(self, config, *args, **kwargs):
        for listener in config["listeners"]:
            if "tls" in listener:
                listener["tls"] = dict(listener["tls"], session_tickets=False)
        return super().start_parapet(config, *args, **kwargs)

    def own_handshakes(self):
        with Client(self.parapet.admin_port) as c:
            c.send(build_request("GET", "/metrics", host="admin"))
            body = c.response().body.decode()
        for line in body.splitlines():
            if line.startswith("parapet_tls_own_handshakes_total "):
                return int(float(line.split()[1]))
        raise AssertionError("no parapet_tls_own_handshakes_total")


class TlsOwnHandshake(OwnHandshake, Tls):

    def test_own_handshake_for_tls13_openssl_for_the_rest(self):
        origin, port = self.start()
        with tls_connect(port, "demo.local") as s:
            self.assertEqual((s.version(), s.cipher()[0]), ("TLSv1.3", "TLS_AES_256_GCM_SHA384"))
            self.assertEqual(s.getpeercert(binary_form=True), der("demo"))
            self.assertEqual(roundtrip(s, "demo.local").status, 200)
        self.assertEqual(self.own_handshakes(), 1)
        out = subprocess.run(
            ["curl", "-s", "--cacert", f"{CERTS}/ca.pem", "--resolve",
             f"other.example:{port}:127.0.0.1", f"https://other.example:{port}/c"],
            capture_output=True, timeout=10)
        self.assertEqual(out.stdout, b"hello from origin")
        self.assertEqual(self.own_handshakes(), 2)
        # Declined, then answered by OpenSSL: TLS 1.2, and a P-256 key share.
        tls12 = client_context(maximum_version=ssl.TLSVersion.TLSv1_2)
        p256 = client_context()
        p256.set_ecdh_curve("prime256v1")
        for ctx, version in ((tls12, "TLSv1.2"), (p256, "TLSv1.3")):
            with tls_connect(port, "a.demo.local", ctx) as s:
                self.assertEqual(s.version(), version)
                self.assertEqual(roundtrip(s, "a.demo.local").status, 200)
        self.assertEqual(self.own_handshakes(), 2)
        self.assertEqual(len(origin.requests), 4)

    def test_tampered_finished_is_refused_and_counted(self):
        origin, port = self.start()
        raw = socket.create_connection(("127.0.0.1", port), timeout=5)
        incoming, outgoing = ssl.MemoryBIO(), ssl.MemoryBIO()
        obj = client_context().wrap_bio(incoming, outgoing, server_hostname="demo.local")
        with self.assertRaises(ssl.SSLWantReadError):
            obj.do_handshake()
        raw.sendall(outgoing.read())
        while True:
            incoming.write(raw.recv(65536))
            try:
                obj.do_handshake()
                break
            except ssl.SSLWantReadError:
                continue
        finished = bytearray(outgoing.read())  # [ChangeCipherSpec] + encrypted Finished
        finished[-3] ^= 0x40
        raw.sendall(bytes(finished) + b"GET / HTTP/1.1\r\nHost: demo.local\r\n\r\n")
        data = read_until_closed(raw)
        self.assertEqual(data[:1], b"\x17")  # one alert record, under our application key
        self.assertLess(len(data), 64)
        self.assertEqual(origin.requests, [])
        with Client(self.parapet.admin_port) as c:
            c.send(build_request("GET", "/metrics", host="admin"))
            body = c.response().body.decode()
        self.assertIn('parapet_tls_handshake_failures_total{reason="error"} 1', body)
        self.assertEqual(self.own_handshakes(), 0)


class KeyTypesOwnHandshake(OwnHandshake, KeyTypes):
    pass


class MutualTlsOwnHandshake(OwnHandshake, MutualTls):

    def test_tls12_session_resumes_on_an_mtls_tenant(self):
        self.skipTest("needs session tickets")


class RecordLayerOwnHandshake(OwnHandshake, RecordLayer):

    def test_resumed_tls12_session(self):
        self.skipTest("needs session tickets")


class TlsAccessLogOwnHandshake(OwnHandshake, TlsAccessLog):

    def test_version_cipher_sni_and_resumption_are_logged(self):
        self.skipTest("needs session tickets")

    def test_version_cipher_and_sni_are_logged(self):
        port, log = self.start_logged()
        ctx = client_context()
        ctx.set_ciphers("ECDHE-ECDSA-AES128-GCM-SHA256")  # TLS 1.2 list; 1.3 suites unchanged
        with tls_connect(port, "A.Demo.Local", ctx) as s:
            self.assertEqual(roundtrip(s, "a.demo.local", "/own").status, 200)
            cipher = s.cipher()[0]
        recs = read_access_log(log, 1)
        own = recs["/own"]
        self.assertEqual((own["tls"], own["cipher"], own["sni"], own["tls_resumed"]),
                         ("TLSv1.3", cipher, "A.Demo.Local", False))
        self.assertEqual(self.own_handshakes(), 1)


class TlsReloadOwnHandshake(OwnHandshake, TlsReload):

    def test_certificate_reload_keeps_open_connections(self):
        super().test_certificate_reload_keeps_open_connections()
        self.assertEqual(self.own_handshakes(), 2)  # both, before and after the reload
