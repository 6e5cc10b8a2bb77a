"""Test helpers: a synchronous botocore view of the local regions, and a CLI runner."""

from __future__ import annotations

import os
import re
import subprocess
import sys
import threading
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import botocore.session
from botocore.config import Config as BotoConfig

REPO = Path(__file__).resolve().parent.parent
STREAMER = [sys.executable, "-m", "streamer"]


@dataclass
class RegionsEnv:
    env: dict[str, str]
    endpoints: list[str]
    _clients: dict[str, Any] = field(default_factory=dict)

    def client(self, index: int) -> Any:
        """botocore S3 client for region ``index`` (1-based)."""
        endpoint = self.endpoints[index - 1]
        if endpoint not in self._clients:
            self._clients[endpoint] = botocore.session.get_session().create_client(
                "s3", endpoint_url=endpoint, region_name="us-east-1",
                aws_access_key_id=self.env["S3_ACCESS_KEY"],
                aws_secret_access_key=self.env["S3_SECRET_KEY"],
                config=BotoConfig(s3={"addressing_style": "path"},
                                  request_checksum_calculation="when_required",
                                  response_checksum_validation="when_required",
                                  retries={"max_attempts": 2}))
        return self._clients[endpoint]

    def keys(self, index: int, bucket: str, prefix: str = "") -> list[str]:
        c = self.client(index)
        try:
            pages = c.get_paginator("list_objects_v2").paginate(Bucket=bucket, Prefix=prefix)
            return [o["Key"] for page in pages for o in page.get("Contents", [])]
        except c.exceptions.NoSuchBucket:
            return []

    def get(self, index: int, bucket: str, key: str) -> bytes:
        return bytes(self.client(index).get_object(Bucket=bucket, Key=key)["Body"].read())

    def region(self, index: int) -> Any:
        """Region ``index`` (1-based) as streamer's settings describe it."""
        from streamer.settings.config import Region, Secret
        return Region(index, self.endpoints[index - 1], Secret(self.env["S3_ACCESS_KEY"]),
                      Secret(self.env["S3_SECRET_KEY"]))

    def uploads(self, index: int, bucket: str) -> list[str]:
        c = self.client(index)
        try:
            return [u["Key"] for u in c.list_multipart_uploads(Bucket=bucket).get("Uploads", [])]
        except c.exceptions.NoSuchBucket:
            return []

    def delete_bucket_everywhere(self, bucket: str) -> None:
        for i in range(1, len(self.endpoints) + 1):
            c = self.client(i)
            try:
                for key in self.keys(i, bucket):
                    c.delete_object(Bucket=bucket, Key=key)
                for u in c.list_multipart_uploads(Bucket=bucket).get("Uploads", []):
                    c.abort_multipart_upload(Bucket=bucket, Key=u["Key"], UploadId=u["UploadId"])
                c.delete_bucket(Bucket=bucket)
            except Exception:
                pass  # a region a test left down, or a bucket never created


def load_regions_env() -> RegionsEnv:
    out = subprocess.run([str(REPO / "scripts" / "regions"), "env"], capture_output=True,
                         text=True, check=True).stdout
    env = dict(re.findall(r"^export (\w+)='([^']*)'$", out, re.M))
    return RegionsEnv(env, env["S3_HOST_BASE"].split("|"))


@dataclass
class Run:
    code: int
    stdout: str
    stderr: str
    max_rss_kib: int
    written_bytes: int  # bytes the process tree caused to be written to storage


def run_streamer(args: list[str], env: dict[str, str], timeout: float = 900,
                 prefix: list[str] | None = None) -> Run:
    """Run the CLI as a real subprocess; rusage (peak RSS, disk writes) of exactly its tree."""
    proc = subprocess.Popen([*(prefix or []), *STREAMER, *args], env=env, cwd=REPO,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    chunks: dict[str, bytes] = {}

    def reader(name: str, stream: Any) -> None:
        with stream:
            chunks[name] = stream.read()

    threads = [threading.Thread(target=reader, args=("out", proc.stdout)),
               threading.Thread(target=reader, args=("err", proc.stderr))]
    for t in threads:
        t.start()
    timer = threading.Timer(timeout, proc.kill)
    timer.start()
    try:
        _, status, usage = os.wait4(proc.pid, 0)
    finally:
        timer.cancel()
    for t in threads:
        t.join()
    proc.returncode = os.waitstatus_to_exitcode(status)
    return Run(proc.returncode, chunks["out"].decode(errors="replace"),
               chunks["err"].decode(errors="replace"), usage.ru_maxrss, usage.ru_oublock * 512)


def matches_manifest(art: dict[str, Any], data: bytes) -> bool:
    """Whether stored bytes are what a manifest artifact records end to end:
    the stream's SHA-256, or (STREAMER_CHECKSUM=auto) the composite of its
    part CRCs (docs/SECURITY.md, "Integrity")."""
    import hashlib

    from streamer import digests
    if "sha256" in art:
        return hashlib.sha256(data).hexdigest() == art["sha256"]
    whole = digests.PartsHash(art["parts"]["algorithm"], art["parts"]["sizes"])
    whole.update(data)
    return bool(whole.hexdigest() == art["parts_sha256"])
