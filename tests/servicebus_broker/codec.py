"""Raw AMQP 1.0 message sections: split, unpack batches, re-stamp for delivery.

The broker never round-trips a stored message through ``proton.Message``: it keeps
the encoded sections the sender wrote (properties, application properties, body,
footer) byte for byte and only rebuilds the header and message annotations it owns.

Why raw: a Service Bus batch send (``ServiceBusMessageBatch``) arrives as ONE
transfer of message format 0x80013700 whose ``data`` sections each hold a complete
encoded message. ``proton.Message.decode`` keeps only one body section, so it
silently loses all but one message of the batch; and proton's Python binding does
not expose an incoming delivery's message format at all (``pn_delivery_format``
is not in the shipped ``cproton_ffi``). So batches are recognised by content: an
envelope with no body other than ``data`` sections, each of which is itself a
complete, well-formed AMQP message.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from proton import Data, Described, symbol, timestamp, ubyte, uint, ulong

if TYPE_CHECKING:
    from proton._data import PythonAMQPData

HEADER = 0x70
DELIVERY_ANNOTATIONS = 0x71
MESSAGE_ANNOTATIONS = 0x72
PROPERTIES = 0x73
APPLICATION_PROPERTIES = 0x74
DATA = 0x75
AMQP_SEQUENCE = 0x76
AMQP_VALUE = 0x77
FOOTER = 0x78
BODY_SECTIONS = frozenset({DATA, AMQP_SEQUENCE, AMQP_VALUE})
BATCH_FORMAT = 0x80013700  # for reference: what the SDK puts on the transfer frame

_SYMBOLIC = {
    "amqp:header:list": HEADER,
    "amqp:delivery-annotations:map": DELIVERY_ANNOTATIONS,
    "amqp:message-annotations:map": MESSAGE_ANNOTATIONS,
    "amqp:properties:list": PROPERTIES,
    "amqp:application-properties:map": APPLICATION_PROPERTIES,
    "amqp:data:binary": DATA,
    "amqp:amqp-sequence:list": AMQP_SEQUENCE,
    "amqp:amqp-value:*": AMQP_VALUE,
    "amqp:footer:map": FOOTER,
}


class CodecError(ValueError):
    """The bytes are not a well-formed sequence of AMQP message sections."""


@dataclass(frozen=True)
class Section:
    code: int
    raw: bytes
    value: Any  # the decoded section value (list, map, binary, ...)


def split_sections(raw: bytes) -> list[Section]:
    """Split an encoded message into its sections, refusing anything else."""
    sections: list[Section] = []
    view = bytes(raw)
    offset = 0
    while offset < len(view):
        data = Data()
        try:
            used = data.decode(view[offset:])
        except Exception as exc:  # proton raises DataException and friends
            raise CodecError(f"undecodable section at byte {offset}: {exc}") from exc
        if used <= 0:
            raise CodecError(f"empty section at byte {offset}")
        data.rewind()
        if not data.next() or data.type() != Data.DESCRIBED:
            raise CodecError(f"section at byte {offset} is not a described type")
        data.enter()
        data.next()
        descriptor = data.get_object()
        data.next()
        value = _own(data.get_object())
        data.exit()
        code = _SYMBOLIC.get(str(descriptor)) if isinstance(descriptor, str) else descriptor
        if not isinstance(code, int) or not HEADER <= code <= FOOTER:
            raise CodecError(f"section at byte {offset} has descriptor {descriptor!r}")
        sections.append(Section(int(code), view[offset : offset + used], value))
        offset += used
    if not sections:
        raise CodecError("no sections")
    return sections


def _own(value: Any) -> Any:
    """Copy binaries out of proton's buffer (``get_object`` returns views into it)."""
    if isinstance(value, memoryview):
        return bytes(value)
    if isinstance(value, Described):
        return Described(_own(value.descriptor), _own(value.value))
    if isinstance(value, dict):
        return {_own(k): _own(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_own(v) for v in value]
    return value


def _is_message(sections: list[Section]) -> bool:
    codes = [s.code for s in sections]
    return codes == sorted(codes) and any(c in BODY_SECTIONS for c in codes)


def unpack_batch(sections: list[Section]) -> list[bytes] | None:
    """The inner encoded messages if these sections are a batch envelope, else None."""
    body = [s for s in sections if s.code in BODY_SECTIONS]
    if not body or any(s.code != DATA for s in body):
        return None
    inner: list[bytes] = []
    for section in body:
        payload = bytes(section.value) if section.value is not None else b""
        if not payload.startswith(b"\x00S") and not payload.startswith(b"\x00\xa3"):
            return None
        try:
            if not _is_message(split_sections(payload)):
                return None
        except CodecError:
            return None
        inner.append(payload)
    return inner


@dataclass
class StoredMessage:
    """One queued message: the sender's own sections plus broker bookkeeping."""

    sequence_number: int
    enqueued_ms: int
    sections: list[Section]  # without header, delivery and message annotations
    annotations: dict[Any, Any] = field(default_factory=dict)
    durable: bool = False
    priority: int = 4
    ttl: int | None = None
    delivery_count: int = 0

    @classmethod
    def from_encoded(cls, raw: bytes, sequence_number: int, enqueued_ms: int) -> StoredMessage:
        sections = split_sections(raw)
        if not _is_message(sections):
            raise CodecError("message has no body section or sections out of order")
        msg = cls(sequence_number, enqueued_ms, [])
        for section in sections:
            if section.code == HEADER:
                fields = list(section.value or []) + [None] * 5
                msg.durable = bool(fields[0])
                msg.priority = 4 if fields[1] is None else int(fields[1])
                msg.ttl = None if fields[2] is None else int(fields[2])
            elif section.code == MESSAGE_ANNOTATIONS:
                msg.annotations = dict(section.value or {})
            elif section.code != DELIVERY_ANNOTATIONS:
                msg.sections.append(section)
        return msg

    def set_application_property(self, key: str, value: Any) -> None:
        """Add or replace one application property (Service Bus does this on dead-letter)."""
        for i, section in enumerate(self.sections):
            if section.code == APPLICATION_PROPERTIES:
                props = dict(section.value or {})
                props[key] = value
                self.sections[i] = _section(APPLICATION_PROPERTIES, props)
                return
        at = next((i for i, s in enumerate(self.sections) if s.code > APPLICATION_PROPERTIES), 0)
        self.sections.insert(at, _section(APPLICATION_PROPERTIES, {key: value}))

    def encode(self, extra_annotations: dict[str, Any] | None = None) -> bytes:
        """The message as delivered: fresh header and annotations, sender's sections as-is."""
        header: list[PythonAMQPData] = [
            self.durable,
            ubyte(self.priority),
            None if self.ttl is None else uint(self.ttl),
            self.delivery_count == 0,
            uint(self.delivery_count),
        ]
        annotations: dict[Any, Any] = dict(self.annotations)
        annotations[symbol("x-opt-sequence-number")] = self.sequence_number
        annotations[symbol("x-opt-enqueued-time")] = timestamp(self.enqueued_ms)
        for key, value in (extra_annotations or {}).items():
            annotations[symbol(key)] = value
        out = bytearray(_encode(Described(ulong(HEADER), header)))
        out += _encode(Described(ulong(MESSAGE_ANNOTATIONS), annotations))
        for section in self.sections:
            out += section.raw
        return bytes(out)


def _section(code: int, value: Any) -> Section:
    return Section(code, _encode(Described(ulong(code), value)), value)


def _encode(value: Any) -> bytes:
    data = Data()
    data.put_object(value)
    return bytes(data.encode())
