"""A region whose endpoint cannot be used at all: a host name that does not
resolve, an https endpoint whose certificate is not trusted (docs/RELIABILITY.md).
One line names the region and the cause; the others commit."""

from __future__ import annotations

import ssl
import subprocess
from pathlib import Path

from faultproxy import FaultProxy
from faultrun import committed, env_for, host_base, leftover_uploads, no_traceback, region_lines
from s3util import RegionsEnv, run_streamer


def _region_2_mentions(output: str) -> list[str]:
    """Lines about region 2, but the plain-http warning (docs/SECURITY.md)."""
    return [ln for ln in output.splitlines()
            if "region 2 (" in ln and not ln.startswith("streamer: warning:")]


def test_a_host_name_that_does_not_resolve_is_one_line_and_the_others_commit(
        regions: RegionsEnv, bucket: str, streamer_env: dict[str, str], tmp_path: Path) -> None:
    root = tmp_path / "www"
    root.mkdir()
    (root / "index.php").write_text("<?php ?>\n")
    env = env_for(streamer_env, root, host_base(regions, {2: "http://no-such-region.invalid:9000"}))
    run = run_streamer(["hourly", "nxdomain"], env, timeout=300)
    assert run.code == 3, run.stdout + run.stderr
    assert committed(regions, bucket, "nxdomain") == [1, 3]
    [line] = _region_2_mentions(run.stdout + run.stderr)
    assert line == region_lines(run.stdout, 2)[0]
    assert "no-such-region.invalid" in line and "host name does not resolve" in line
    # Its keys would go over plain http to another machine: warned once, before anything.
    [warning] = [ln for ln in run.stderr.splitlines() if "plain http" in ln]
    assert warning.startswith("streamer: warning: region 2 (http://no-such-region.invalid:9000)")
    assert no_traceback(run.stderr)
    assert leftover_uploads(regions, bucket, (1, 3)) == []


def _self_signed(tmp: Path) -> tuple[Path, Path]:
    cert, key = tmp / "cert.pem", tmp / "key.pem"
    subprocess.run(["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "1",
                    "-keyout", str(key), "-out", str(cert), "-subj", "/CN=127.0.0.1",
                    "-addext", "subjectAltName=IP:127.0.0.1"], check=True, capture_output=True)
    return cert, key


def test_an_untrusted_certificate_is_one_line_naming_the_region_and_the_ca_setting(
        regions: RegionsEnv, bucket: str, streamer_env: dict[str, str], tmp_path: Path) -> None:
    root = tmp_path / "www"
    root.mkdir()
    (root / "index.php").write_text("<?php ?>\n")
    cert, key = _self_signed(tmp_path)
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.load_cert_chain(cert, key)
    with FaultProxy(upstream=regions.endpoints[1], ssl_context=context) as tls:
        env = env_for(streamer_env, root, host_base(regions, {2: tls.endpoint}))
        run = run_streamer(["hourly", "untrusted"], env, timeout=300)
        assert run.code == 3, run.stdout + run.stderr
        assert committed(regions, bucket, "untrusted") == [1, 3]
        [line] = _region_2_mentions(run.stdout + run.stderr)
        assert tls.endpoint in line and "certificate not trusted" in line and "AWS_CA_BUNDLE" in line
        assert no_traceback(run.stderr)
        assert sum(tls.seen.values()) == 0  # no request got past the handshake

        # The setting it names works: trusting the certificate commits everywhere.
        run = run_streamer(["hourly", "trusted"], {**env, "AWS_CA_BUNDLE": str(cert)}, timeout=300)
        assert run.code == 0, run.stdout + run.stderr
        assert committed(regions, bucket, "trusted") == [1, 2, 3]
        assert tls.seen["UploadPart"] >= 1


def test_a_per_region_ca_bundle_trusts_that_regions_certificate(
        regions: RegionsEnv, bucket: str, streamer_env: dict[str, str], tmp_path: Path) -> None:
    """STREAMER_CA_BUNDLE, one file per region (|-separated, empty: the default
    trust), makes the self-signed region commit; a file that is not there is
    one line and exit 2 before anything is uploaded."""
    root = tmp_path / "www"
    root.mkdir()
    (root / "index.php").write_text("<?php ?>\n")
    cert, key = _self_signed(tmp_path)
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.load_cert_chain(cert, key)
    with FaultProxy(upstream=regions.endpoints[1], ssl_context=context) as tls:
        env = env_for(streamer_env, root, host_base(regions, {2: tls.endpoint}))
        untrusted = run_streamer(["hourly", "per-region-ca"], env, timeout=300)
        assert untrusted.code == 3 and "STREAMER_CA_BUNDLE" in untrusted.stdout + untrusted.stderr
        run = run_streamer(["hourly", "per-region-ca"], {**env, "STREAMER_CA_BUNDLE": f"|{cert}|"},
                           timeout=300)
        assert run.code == 0, run.stdout + run.stderr
        assert committed(regions, bucket, "per-region-ca") == [1, 2, 3]
        assert tls.seen["UploadPart"] >= 1
        missing = run_streamer(["hourly", "per-region-ca"],
                               {**env, "STREAMER_CA_BUNDLE": f"|{tmp_path / 'none.pem'}|"}, timeout=300)
        assert missing.code == 2, missing.stdout + missing.stderr
        [line] = missing.stderr.strip().splitlines()
        assert "STREAMER_CA_BUNDLE for region 2" in line and "none.pem" in line
