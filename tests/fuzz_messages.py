"""Hypothesis strategies for arbitrary protobuf messages, built from their descriptors.

Every field may be set or not; strings mix plain words with odd Unicode, controls and
long runs; numbers include the extremes, NaN and infinities; enums include values no
one defined; nested messages (timestamps too) recurse to a small depth.
"""

from __future__ import annotations

from typing import Any

from google.protobuf.descriptor import Descriptor, FieldDescriptor
from google.protobuf.message import Message
from google.protobuf.message_factory import GetMessageClass
from hypothesis import strategies as st

F = FieldDescriptor
ODD_TEXT = st.sampled_from(
    ["", " ", "\x00", "../../etc/passwd", "😀" * 50, "a" * 5000, "\u202e", "+1 555", "é\u0301"]
)
INT_RANGES = {
    F.TYPE_INT32: (-(2**31), 2**31 - 1),
    F.TYPE_SINT32: (-(2**31), 2**31 - 1),
    F.TYPE_SFIXED32: (-(2**31), 2**31 - 1),
    F.TYPE_INT64: (-(2**63), 2**63 - 1),
    F.TYPE_SINT64: (-(2**63), 2**63 - 1),
    F.TYPE_SFIXED64: (-(2**63), 2**63 - 1),
    F.TYPE_UINT32: (0, 2**32 - 1),
    F.TYPE_FIXED32: (0, 2**32 - 1),
    F.TYPE_UINT64: (0, 2**64 - 1),
    F.TYPE_FIXED64: (0, 2**64 - 1),
}


def _scalar(field: FieldDescriptor) -> st.SearchStrategy[Any]:
    kind = field.type
    if kind == F.TYPE_STRING:
        return st.one_of(st.text(max_size=40), ODD_TEXT)
    if kind == F.TYPE_BYTES:
        return st.binary(max_size=300)
    if kind == F.TYPE_BOOL:
        return st.booleans()
    if kind == F.TYPE_FLOAT:
        return st.floats(width=32)
    if kind == F.TYPE_DOUBLE:
        return st.floats()
    if field.enum_type is not None:
        top = max(v.number for v in field.enum_type.values)
        return st.integers(-2, top + 3)  # proto3 enums are open: unknown numbers arrive too
    low, high = INT_RANGES[kind]
    return st.one_of(st.integers(low, high), st.sampled_from([0, 1, -1 if low < 0 else 2]))


def messages(descriptor: Descriptor, depth: int = 3) -> st.SearchStrategy[Message]:
    """Messages of this type with random fields set."""
    cls = GetMessageClass(descriptor)

    @st.composite
    def build(draw: st.DrawFn) -> Message:
        message = cls()
        for field in descriptor.fields:
            if not draw(st.booleans()):
                continue
            if field.type == F.TYPE_MESSAGE and depth <= 0:
                continue
            if field.message_type is not None and field.message_type.GetOptions().map_entry:
                key_field, value_field = field.message_type.fields
                entries = draw(
                    st.lists(st.tuples(_scalar(key_field), _value(value_field)), max_size=3)
                )
                target = getattr(message, field.name)
                for key, value in entries:
                    if isinstance(value, Message):
                        target[key].CopyFrom(value)
                    else:
                        target[key] = value
                continue
            if field.is_repeated:
                values = draw(st.lists(_value(field), max_size=3))
                target = getattr(message, field.name)
                for value in values:
                    if isinstance(value, Message):
                        target.add().CopyFrom(value)
                    else:
                        target.append(value)
                continue
            value = draw(_value(field))
            if isinstance(value, Message):
                getattr(message, field.name).CopyFrom(value)
            else:
                setattr(message, field.name, value)
        return message

    def _value(field: FieldDescriptor) -> st.SearchStrategy[Any]:
        if field.message_type is not None:
            return messages(field.message_type, depth - 1)
        return _scalar(field)

    return build()


def mutated(data: bytes) -> st.SearchStrategy[bytes]:
    """Wire bytes with a few bytes flipped, cut short or extended."""

    @st.composite
    def build(draw: st.DrawFn) -> bytes:
        out = bytearray(data)
        for _ in range(draw(st.integers(1, 4))):
            if out and draw(st.booleans()):
                i = draw(st.integers(0, len(out) - 1))
                out[i] = draw(st.integers(0, 255))
            else:
                out += draw(st.binary(min_size=1, max_size=8))
        if out and draw(st.booleans()):
            out = out[: draw(st.integers(0, len(out)))]
        return bytes(out)

    return build()
