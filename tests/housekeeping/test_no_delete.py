"""Least privilege against the real regions: a SeaweedFS identity with no
delete right backs up: the backup exits 0, the cleanup and the retention it
cannot do are warnings, and the backup lock, which it cannot delete, is given
back by overwriting it with a released holder, so the next run takes it at
once; with ``STREAMER_PRUNE=off`` no deletion is tried (docs/SECURITY.md).
(SeaweedFS 4.48 lets such an identity abort multipart uploads even without
s3:AbortMultipartUpload in its policy.)"""

from __future__ import annotations

import os
import shutil
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import botocore.session
import pytest
from botocore.config import Config as BotoConfig
from botocore.exceptions import ClientError
from s3util import REPO, RegionsEnv, run_streamer

from streamer.housekeeping.lease import Holder

ACCESS, SECRET = "streamer-nodelete", "streamer-nodelete-secret"
POLICY = Path(__file__).with_name("nodelete_policy.json")


def _weed() -> str:
    local = REPO / ".venv" / "bin" / "weed"
    found = os.environ.get("WEED") or (str(local) if local.exists() else shutil.which("weed"))
    assert found, "weed binary not found (scripts/setup installs it)"
    return found


def _client(endpoint: str) -> object:
    return botocore.session.get_session().create_client(
        "s3", endpoint_url=endpoint, region_name="us-east-1", aws_access_key_id=ACCESS,
        aws_secret_access_key=SECRET, config=BotoConfig(s3={"addressing_style": "path"}))


@pytest.fixture(scope="session")
def no_delete_keys(regions: RegionsEnv) -> Iterator[tuple[str, str]]:
    """The identity in every region (idempotent: weed shell against each master)."""
    base = int(os.environ.get("STREAMER_REGION_PORT_BASE", "18330"))
    script = (f"s3.user.create -name=streamer-nodelete -access_key={ACCESS} -secret_key={SECRET}\n"
              f"s3.policy -put -name=streamer-nodelete -file={POLICY}\n"
              "s3.policy.attach -policy=streamer-nodelete -user=streamer-nodelete\n")
    for index in range(1, len(regions.endpoints) + 1):
        subprocess.run([_weed(), "shell", f"-master=127.0.0.1:{base + 10 + index}"],
                       input=script, text=True, capture_output=True, timeout=60, check=False)
        client = _client(regions.endpoints[index - 1])
        deadline = time.monotonic() + 30
        while True:  # the filer pushes the identity to the S3 server
            try:
                client.list_buckets()  # type: ignore[attr-defined]
                break
            except ClientError:
                assert time.monotonic() < deadline, f"region {index}: identity not active"
                time.sleep(0.5)
    yield ACCESS, SECRET


def _manifests(regions: RegionsEnv, bucket: str) -> list[str]:
    return [k for k in regions.keys(1, bucket, "nodelete/hourly/") if k.endswith("manifest.json")]


def test_an_identity_without_delete_rights_backs_up_and_cleanup_and_retention_warn(
        regions: RegionsEnv, bucket: str, streamer_env: dict[str, str], tmp_path: Path,
        no_delete_keys: tuple[str, str]) -> None:
    root = tmp_path / "www"
    root.mkdir()
    (root / "index.php").write_text("<?php echo 'no delete'; ?>\n")
    abandoned = "nodelete/hourly/20200101T000000Z/webroot.tar.zst"  # a killed run's object
    for index in (1, 2, 3):  # the bucket exists (made with an admin's keys)
        regions.client(index).create_bucket(Bucket=bucket)
        regions.client(index).put_object(Bucket=bucket, Key=abandoned, Body=b"half a run")
    with pytest.raises(ClientError) as refused:
        _client(regions.endpoints[0]).delete_object(  # type: ignore[attr-defined]
            Bucket=bucket, Key=abandoned)
    assert refused.value.response["Error"]["Code"] == "AccessDenied"

    env = {**streamer_env, "S3_ACCESS_KEY": no_delete_keys[0], "S3_SECRET_KEY": no_delete_keys[1],
           "STREAMER_WEBROOT": str(root), "STREAMER_KEEP_HOURLY": "1",
           "STREAMER_CLEANUP_HORIZON": "0"}
    first = run_streamer(["hourly", "nodelete"], env, timeout=300)
    assert first.code == 0, first.stdout + first.stderr
    cleanup = [ln for ln in first.stderr.splitlines() if ln.startswith("warning: cleanup:")]
    assert len(cleanup) == 3 and all("AccessDenied" in ln for ln in cleanup), first.stderr
    assert all(abandoned in regions.keys(i, bucket) for i in (1, 2, 3))
    for index in (1, 2, 3):  # the lock is given back as a released holder, not deleted
        holder = Holder.decode(regions.get(index, bucket, "nodelete/hourly/lock.json"))
        assert holder is not None and holder.released

    # Retention (keep 1) cannot remove the first run: a warning, exit 0, the lock free at once.
    second = run_streamer(["hourly", "nodelete"], env, timeout=300)
    assert second.code == 0, second.stdout + second.stderr  # not 4: the lock was free
    assert "took over the backup lock" not in second.stdout + second.stderr
    assert "retention incomplete" in second.stderr and "AccessDenied" in second.stderr
    assert len(_manifests(regions, bucket)) == 2

    # STREAMER_PRUNE=off: nothing is even tried; retention is the lifecycle rules'.
    off = {**env, "STREAMER_PRUNE": "off"}
    third = run_streamer(["hourly", "nodelete"], off, timeout=300)
    assert third.code == 0, third.stdout + third.stderr
    assert "AccessDenied" not in third.stdout + third.stderr, third.stderr
    assert len(_manifests(regions, bucket)) == 3
    pruned = run_streamer(["prune"], off, timeout=120)
    assert pruned.code == 0 and "STREAMER_PRUNE=off" in pruned.stdout, pruned.stdout + pruned.stderr
