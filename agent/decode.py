"""``cti-agent decode``: captured device output → one JSON record per event.

Device plugins contribute decoders through the ``register_decoders`` hook: a
name (the ``--format`` value), a sniffer that says how sure it is that some
bytes are its format, and a function from the whole input to line events. The
records carry the number exactly as the device sent it and its E.164 form
beside it, so a user can check what their device sends.
"""

from __future__ import annotations

import logging
import re
from collections.abc import Callable, Iterator
from datetime import UTC, datetime
from typing import Any

import pluggy

from agent import callerid
from agent.errors import ConfigError
from agent.events import CallerId, CallReport, Decoder, Dialed, LineError, LineEvent
from agent.hookspecs import hookimpl
from agent.names import AUTO, check_encoding
from agent.numbers import DEFAULT_REGION, to_e164

logger = logging.getLogger(__name__)

SNIFF_BYTES = 4096


def collect_decoders(pm: pluggy.PluginManager) -> dict[str, Decoder]:
    """Every decoder the plugins register, by name; a name taken twice is a config error."""
    decoders: dict[str, Decoder] = {}
    owners: dict[str, str] = {}
    for impl in pm.hook.register_decoders.get_hookimpls():

        def register(decoder: Decoder, _owner: str = impl.plugin_name) -> None:
            if decoder.name in decoders:
                raise ConfigError(
                    f"decoder {decoder.name!r} is registered by both {owners[decoder.name]!r} and {_owner!r}"
                )
            decoders[decoder.name] = decoder
            owners[decoder.name] = _owner

        impl.function(register=register)
    return decoders


def pick_decoder(decoders: dict[str, Decoder], head: bytes) -> Decoder | None:
    """The decoder most sure of ``head`` (the input's first bytes), or None when none is."""
    best: tuple[float, str] | None = None
    for name, decoder in decoders.items():
        try:
            score = decoder.sniff(head[:SNIFF_BYTES])
        except Exception:
            logger.exception("decoder %s failed to sniff", name)
            continue
        if score > 0 and (best is None or score > best[0]):
            best = (score, name)
    return decoders[best[1]] if best else None


def event_record(event: LineEvent, region: str = DEFAULT_REGION) -> dict[str, Any]:
    """The JSON record of one event.

    Its fields: ``kind``, ``number`` as sent, ``number_e164``, ``name``, ``absence``,
    ``datetime`` (as the device sent it), ``line`` and ``error``. A ``call_report``
    (the device's own account of a call) adds its counts: ``talk_seconds``,
    ``duration``, ``answered``, ``blocked``, ``ends_call``, and the device's
    ``device_start``/``device_end`` as sent (``datetime`` is the first of them given).
    """
    record: dict[str, Any] = {
        "kind": event.kind,
        "number": None,
        "number_e164": None,
        "name": None,
        "absence": None,
        "datetime": None,
        "line": event.line,
        "error": None,
    }
    if isinstance(event, CallerId):
        record.update(
            number=event.number,
            number_e164=to_e164(event.number, region) if event.number else None,
            name=event.name,
            absence=event.absence.value if event.absence else None,
            datetime=event.device_time,
        )
        if event.name_absence is not None:
            record["name_absence"] = event.name_absence.value
        if event.raw is not None:
            record["raw"] = event.raw
    elif isinstance(event, Dialed):
        record.update(number=event.digits, number_e164=to_e164(event.digits, region))
    elif isinstance(event, LineError):
        record.update(error=event.error, raw=event.raw)
    elif isinstance(event, CallReport):
        record.update(
            datetime=event.device_start or event.device_end,
            talk_seconds=event.talk_seconds,
            duration=event.duration,
            answered=event.answered,
            blocked=event.blocked,
            ends_call=event.ends_call,
            device_start=event.device_start,
            device_end=event.device_end,
        )
    return record


def decode(
    decoder: Decoder, data: bytes, region: str = DEFAULT_REGION, *, name_encoding: str = AUTO
) -> Iterator[dict[str, Any]]:
    """Run ``decoder`` over ``data`` and turn what it finds into records.

    :param name_encoding: how names are read (:mod:`agent.names`); anything but ``auto`` needs a
        decoder that :attr:`~agent.events.Decoder.reads_names` (a :class:`ConfigError` otherwise).
    """
    if name_encoding == AUTO:
        items = decoder.decode(data)
    elif decoder.reads_names:
        items = decoder.decode(data, name_encoding=check_encoding(name_encoding))
    else:
        raise ConfigError(f"the {decoder.name} format takes no name encoding")
    for item in items:
        if isinstance(item, LineEvent):
            yield event_record(item, region)
        else:
            yield item


# -- the core's own format: caller-ID messages as hex (Bellcore GR-30 / ETSI EN 300 659-3) ----

_HEX_TEXT = re.compile(rb"^[0-9A-Fa-f\s:,-]+$")


def _sniff_hex(head: bytes) -> float:
    text = head.strip()
    if not text or not _HEX_TEXT.match(text):
        return 0.0
    first = re.sub(rb"[^0-9A-Fa-f]", b"", text)[:2].upper()
    # SDMF messages start with 04, MDMF with 80 (GR-30); 55/FF are seizure and mark bytes.
    return 0.7 if first in (b"04", b"80", b"55", b"FF") else 0.3


def _decode_hex(data: bytes, *, name_encoding: str = AUTO) -> Iterator[LineEvent]:
    """Each line is one stream of hex digits; every message found in it is an event."""
    at = datetime.now(UTC)
    for number, raw_line in enumerate(data.decode("ascii", "replace").splitlines(), start=1):
        digits = re.sub(r"[\s:,-]", "", raw_line)
        if not digits:
            continue
        try:
            blob = bytes.fromhex(digits)
        except ValueError:
            yield LineError(device_id="file", line="1", at=at, error=f"line {number}: not hex", raw=raw_line)
            continue
        found, consumed = callerid.find_messages(blob, name_encoding=name_encoding)
        for item in found:
            if isinstance(item, callerid.CallerIdError):
                yield LineError(
                    device_id="file", line="1", at=at, error=f"line {number}: {item}", raw=item.raw.hex()
                )
            else:
                yield callerid.to_event(item, device_id="file", line="1", at=at)
        if consumed < len(blob):
            yield LineError(
                device_id="file",
                line="1",
                at=at,
                error=f"line {number}: truncated message",
                raw=blob[consumed:].hex(),
            )


@hookimpl
def register_decoders(register: Callable[[Decoder], None]) -> None:
    """The ``hex`` format: caller-ID messages (SDMF/MDMF) written as hex, one stream per line."""
    register(
        Decoder(
            "hex", "caller-ID messages (SDMF/MDMF) as hex digits", _decode_hex, _sniff_hex, reads_names=True
        )
    )
