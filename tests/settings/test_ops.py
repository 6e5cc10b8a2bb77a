"""The housekeeping settings (settings/ops.py) and the duration parser they use."""

from __future__ import annotations

import pytest

from streamer.errors import ConfigError
from streamer.settings.ops import OpsConfig, parse_ops
from streamer.settings.values import parse_choice, parse_duration


def test_durations() -> None:
    assert parse_duration("X", "900") == 900
    assert parse_duration("X", "15m") == 900
    assert parse_duration("X", "24h") == 86400
    assert parse_duration("X", "1.5d") == 129600
    assert parse_ops({}) == OpsConfig(900.0, 86400.0, 900.0)
    assert parse_ops({"STREAMER_LOCK_LEASE": "5s", "STREAMER_CLEANUP_HORIZON": "0"}) == OpsConfig(5, 0)
    assert parse_ops({"STREAMER_HEAL_LIMIT": "2m"}).heal_limit == 120
    assert parse_ops({"STREAMER_HEAL_LIMIT": "off"}).heal_limit == 0
    assert parse_ops({"STREAMER_HEAL_LIMIT": "0"}).heal_limit == 0
    with pytest.raises(ConfigError, match="STREAMER_HEAL_LIMIT"):
        parse_ops({"STREAMER_HEAL_LIMIT": "a while"})
    with pytest.raises(ConfigError, match="STREAMER_LOCK_LEASE"):
        parse_ops({"STREAMER_LOCK_LEASE": "1s"})
    with pytest.raises(ConfigError, match="not a duration"):
        parse_duration("X", "soon")


def test_choice_is_case_insensitive_and_names_the_options() -> None:
    assert parse_choice("STREAMER_LAYOUT", " ADT ", ("streamer", "adt")) == "adt"
    with pytest.raises(ConfigError, match="use one of streamer, adt"):
        parse_choice("STREAMER_LAYOUT", "flat", ("streamer", "adt"))
