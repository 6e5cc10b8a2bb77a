"""A file growing while tar reads it (a log being written): a warning, and a
commit (docs/RELIABILITY.md).  Region 1 is throttled through the fault proxy so
that tar is surely stopped mid-file while the file grows."""

from __future__ import annotations

import subprocess
import threading
from pathlib import Path

from faultproxy import Fault
from faultrun import MiB, committed, env_for, proxies, random_webroot, verified, via
from s3util import STREAMER, RegionsEnv


def test_a_file_changing_while_tar_reads_it_is_a_warning_and_a_commit(
        regions: RegionsEnv, bucket: str, streamer_env: dict[str, str], tmp_path: Path) -> None:
    root = tmp_path / "www"
    random_webroot(root, 8 * MiB)
    log = root / "access.log"
    log.write_bytes(b"x" * (40 * MiB))
    with proxies(regions, (1,), 0) as px:
        px[1].add(Fault(op="UploadPart", action="throttle", rate=4_000_000))
        env = env_for(streamer_env, root, via(regions, px), STREAMER_MEMORY_BUDGET="32MiB",
                      STREAMER_COMPRESSION="none")
        proc = subprocess.Popen([*STREAMER, "hourly", "changing"], env=env, stdout=subprocess.PIPE,
                                stderr=subprocess.PIPE, text=True)
        done = threading.Event()

        def grow() -> None:
            with log.open("ab") as f:
                while not done.wait(0.05):
                    f.write(b"GET /index.php 200\n")
                    f.flush()

        writer = threading.Thread(target=grow)
        writer.start()
        try:
            out, err = proc.communicate(timeout=600)
        finally:
            done.set()
            writer.join()
            if proc.poll() is None:
                proc.kill()
                proc.communicate()
    assert proc.returncode == 0, out + err
    assert "file changed as we read it" in out + err and "access.log" in out + err
    assert committed(regions, bucket, "changing") == [1, 2, 3]
    assert verified(env, regions, "hourly", "changing") == {1: "ok", 2: "ok", 3: "ok"}
