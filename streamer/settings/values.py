"""Generic value parsers and the setting sources, all without I/O but ``load_file``.

Every setting has one name (the ADT environment variable, e.g.
``STREAMER_MEMORY_BUDGET``); the parsers below take that name and the raw text
and return a typed value or raise ``ConfigError`` with a one-line message
naming the setting and how to fix it.  ``load_file`` and ``merge_sources``
gather the raw texts (flag > environment > file); ``config.parse_config`` and
``ops.parse_ops`` build the frozen settings from them.
"""

from __future__ import annotations

import re
import tomllib
from collections.abc import Iterable, Mapping
from pathlib import Path

from streamer.errors import ConfigError

MiB = 1024 * 1024
GiB = 1024 * MiB


# ---------------------------------------------------------------- sources


def load_file(path: Path) -> dict[str, str]:
    """Read a TOML config file whose top-level keys are the env names."""
    try:
        data = tomllib.loads(path.read_text())
    except FileNotFoundError:
        raise ConfigError(f"config file {path} not found", "check --config") from None
    except (OSError, tomllib.TOMLDecodeError, UnicodeDecodeError) as e:
        raise ConfigError(f"config file {path} unreadable: {e}", "fix the TOML syntax") from None
    out: dict[str, str] = {}
    for key, value in data.items():
        if isinstance(value, bool):
            out[key.upper()] = "1" if value else "0"
        elif isinstance(value, list):
            out[key.upper()] = "|".join(str(v) for v in value)
        elif isinstance(value, dict):
            raise ConfigError(f"config file {path}: [{key}] tables are not supported",
                              "write settings as top-level KEY = value")
        else:
            out[key.upper()] = str(value)
    return out


def merge_sources(
    file: Mapping[str, str], env: Mapping[str, str], flags: Mapping[str, str | None]
) -> dict[str, str]:
    """Layer settings: flag > environment > file (defaults are applied by parse)."""
    merged = dict(file)
    merged.update({k: v for k, v in env.items() if v != ""})
    merged.update({k: v for k, v in flags.items() if v is not None})
    return merged


# ---------------------------------------------------------------- parsing


def split_endpoints(text: str) -> list[str]:
    """Split S3_HOST_BASE: ``|``-separated, or ``:``-separated as in the ADT docs.

    With ``:``, a piece made only of digits is the port of the previous host and
    a piece starting with ``//`` continues a URL scheme (``http://h:1:http://g:2``).
    """
    text = text.strip()
    if "|" in text:
        pieces = [p.strip() for p in text.split("|")]
    else:
        pieces = []
        for raw in text.split(":"):
            if pieces and (raw.isdigit() or raw.startswith("//") or raw.split("/")[0].isdigit()):
                pieces[-1] = pieces[-1] + ":" + raw
            else:
                pieces.append(raw.strip())
    return [p for p in pieces if p]


def normalise_endpoint(text: str) -> str:
    if re.match(r"^https?://", text):
        url = text
    elif "://" in text:
        raise ConfigError(f"S3_HOST_BASE endpoint {text!r} has an unsupported scheme",
                          "use http:// or https://, or a bare host")
    else:
        url = "https://" + text
    host = re.sub(r"^https?://", "", url).split("/")[0]
    if not re.fullmatch(r"[A-Za-z0-9._\-\[\]:]+", host) or host.startswith(":"):
        raise ConfigError(f"S3_HOST_BASE endpoint {text!r} is not a host or URL",
                          "separate endpoints with | or :")
    return url.rstrip("/")


def per_region(name: str, text: str, n: int) -> list[str]:
    values = [v.strip() for v in text.split("|")] if text else [""]
    if len(values) == 1:
        return values * n
    if len(values) != n:
        raise ConfigError(f"{name} has {len(values)} values for {n} regions",
                          "give one value for all regions or one per region, separated by |")
    return values


_SIZE_RE = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*([KMGT]?)(i?)B?\s*$", re.IGNORECASE)


def parse_size(name: str, text: str) -> int:
    m = _SIZE_RE.match(text)
    if not m:
        raise ConfigError(f"{name}={text!r} is not a size", "write e.g. 256MiB, 1GiB or 67108864")
    number, unit, binary = float(m.group(1)), m.group(2).upper(), m.group(3)
    base = 1024 if (binary or unit) else 1  # "256M" means MiB, as operators mean it
    power = " KMGT".index(unit) if unit else 0
    return int(number * base**power)


def parse_int(name: str, text: str, minimum: int = 0) -> int:
    try:
        value = int(text)
    except ValueError:
        raise ConfigError(f"{name}={text!r} is not a whole number", f"set {name} to an integer") from None
    if value < minimum:
        raise ConfigError(f"{name}={value} is too small", f"set {name} to at least {minimum}")
    return value


def parse_float(name: str, text: str, minimum: float = 0.0) -> float:
    try:
        value = float(text)
    except ValueError:
        raise ConfigError(f"{name}={text!r} is not a number", f"set {name} to seconds") from None
    if value <= minimum:
        raise ConfigError(f"{name}={value} is too small", f"set {name} above {minimum}")
    return value


def parse_bool(name: str, text: str) -> bool:
    t = text.strip().lower()
    if t in ("1", "true", "yes", "on"):
        return True
    if t in ("0", "false", "no", "off", ""):
        return False
    raise ConfigError(f"{name}={text!r} is not a boolean", "use 1 or 0")


def parse_choice(name: str, text: str, choices: Iterable[str]) -> str:
    t = text.strip().lower()
    options = list(choices)
    if t not in options:
        raise ConfigError(f"{name}={text!r} is not valid", f"use one of {', '.join(options)}")
    return t


_DURATION_RE = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*([smhd]?)\s*$", re.IGNORECASE)
_UNIT = {"": 1.0, "s": 1.0, "m": 60.0, "h": 3600.0, "d": 86400.0}


def parse_duration(name: str, text: str, minimum: float = 0.0) -> float:
    """Seconds, or a number with s, m, h or d."""
    m = _DURATION_RE.match(text)
    if not m:
        raise ConfigError(f"{name}={text!r} is not a duration", "write e.g. 900, 15m, 24h or 2d")
    value = float(m.group(1)) * _UNIT[m.group(2).lower()]
    if value < minimum:
        raise ConfigError(f"{name}={text!r} is too short", f"set {name} to at least {minimum:g} s")
    return value
