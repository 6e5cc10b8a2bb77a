"""The encryption settings (README "Encryption", docs/ARCHITECTURE.md "Encryption").

``STREAMER_AGE_RECIPIENTS``  age X25519 public keys (``age1...``), separated by
                             spaces, commas or lines, or the path of a file of
                             them, one per line: all a backup host needs.
``STREAMER_AGE_IDENTITY``    the path of an age identity file (``age-keygen``):
                             only restore reads it; its contents are the
                             secret and are never copied anywhere.

Parsed without I/O, except that a recipients *file* is read here (it holds
public keys only).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

from streamer.age.keys import Recipient, parse_recipients
from streamer.errors import ConfigError


@dataclass(frozen=True)
class Encryption:
    recipients: tuple[Recipient, ...] = ()  # empty: artifacts are stored unencrypted
    identity: Path | None = None  # the identity file restore decrypts with

    @property
    def enabled(self) -> bool:
        return bool(self.recipients)

    def describe(self) -> dict[str, object]:
        return {"age_recipients": [str(r) for r in self.recipients],
                "age_identity": str(self.identity) if self.identity else None}


def parse_encryption(s: Mapping[str, str], layout: str) -> Encryption:
    raw = s.get("STREAMER_AGE_RECIPIENTS", "").strip()
    recipients: tuple[Recipient, ...] = ()
    if raw.lower().startswith("age1"):
        recipients = parse_recipients(raw, "STREAMER_AGE_RECIPIENTS")
    elif raw:
        recipients = parse_recipients(_read_recipients_file(Path(raw)),
                                      f"STREAMER_AGE_RECIPIENTS file {raw}")
    if recipients and layout == "adt":
        raise ConfigError("STREAMER_AGE_RECIPIENTS cannot be used with STREAMER_LAYOUT=adt",
                          "ADT's own restore scripts read its objects in the clear; "
                          "use the streamer layout to encrypt")
    identity = s.get("STREAMER_AGE_IDENTITY", "").strip()
    return Encryption(recipients, Path(identity) if identity else None)


def _read_recipients_file(path: Path) -> str:
    try:
        return path.read_text()
    except (OSError, UnicodeDecodeError) as e:
        reason = e.strerror if isinstance(e, OSError) else "not text"
        raise ConfigError(f"STREAMER_AGE_RECIPIENTS: cannot read {path}: {reason}",
                          "give age1... public keys, or a file of them one per line") from None
