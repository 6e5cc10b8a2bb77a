"""``layout_for``: the one place that reads ``STREAMER_LAYOUT``."""

from __future__ import annotations

from streamer.codec import Codec
from streamer.layout.adt import AdtLayout
from streamer.layout.base import Layout
from streamer.layout.streamer import StreamerLayout
from streamer.settings.config import Config


def layout_for(config: Config) -> Layout:
    """The configured layout: ``streamer`` (default) or ``adt`` (ADT's names)."""
    if config.layout == "adt":
        return AdtLayout(config)
    return StreamerLayout(config.bucket, Codec(config.compression, config.compression_level,
                                                config.compression_auto))
