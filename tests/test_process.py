"""The one child-process runner (process.py): what a child inherits."""

from __future__ import annotations

import pytest

from streamer.process import STREAMER_SECRETS, Child


def test_a_child_inherits_no_secret_of_streamer_but_what_it_is_given(
        monkeypatch: pytest.MonkeyPatch) -> None:
    for name in STREAMER_SECRETS:
        monkeypatch.setenv(name, "hunter2-" + name)
    monkeypatch.setenv("PGPASSWORD", "operators-own")  # libpq's, left to the database clients
    monkeypatch.setenv("STREAMER_SOMETHING", "plain")
    child = Child.spawn(["env"], env={"GIVEN": "yes"})
    out, _ = child.proc.communicate(timeout=30)
    env = dict(line.split("=", 1) for line in out.decode().splitlines() if "=" in line)
    assert child.proc.returncode == 0
    assert not STREAMER_SECRETS & set(env)
    assert "hunter2" not in out.decode()
    assert env["GIVEN"] == "yes" and env["STREAMER_SOMETHING"] == "plain"
    assert env["PGPASSWORD"] == "operators-own"
