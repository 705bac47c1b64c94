"""The field types of what callers send, shared by both HTTP edges (ingest and analytics).

Each type checks with the pure rules (``text``, ``metadata``, ``money``, ``masking``) while
the request body is parsed, so a bad value is refused before anything is looked up, recorded
or published, and states its rule in the OpenAPI schema so clients (and the schema fuzz)
see it. A refusal is a pydantic error of a known type; the edges turn that type into the
stable code of the error envelope (``ERROR_CODES``).
"""

from __future__ import annotations

import re
import uuid
from collections.abc import Callable
from typing import Annotated, Any

from pydantic import AfterValidator, BeforeValidator, Field, WithJsonSchema
from pydantic_core import PydanticCustomError

from domain.exceptions import DomainError, InvalidAmount, InvalidMetadata, InvalidText
from domain.masking import PAN_DIGITS_MAX, PAN_DIGITS_MIN, mask_sensitive
from domain.metadata import (
    INT64_MAX,
    INT64_MIN,
    KEY_PATTERN,
    METADATA_ENTRIES_MAX,
    METADATA_TEXT_LENGTH_MAX,
    MetadataValue,
    check_metadata,
)
from domain.money import AMOUNT_PATTERN, AMOUNT_TEXT_LENGTH_MAX, amount_text_value
from domain.text import check_text

#: pydantic error type → the error envelope's code. Other validation errors keep the
#: edge's generic code (INVALID_FIELD on ingest, INVALID_REQUEST on analytics).
ERROR_CODES = {
    "invalid_text": InvalidText.code,
    "invalid_metadata": InvalidMetadata.code,
    "invalid_amount": InvalidAmount.code,
}
_ERROR_TYPES = {code: kind for kind, code in ERROR_CODES.items()}


def _refuse(error: DomainError) -> PydanticCustomError:
    # The message goes in as context: a caller's braces must not be read as a template.
    return PydanticCustomError(_ERROR_TYPES[error.code], "{reason}", {"reason": error.message})


def _checked(check: Callable[[Any], Any]) -> Callable[[Any], Any]:
    def validate(value: Any) -> Any:
        try:
            return check(value)
        except (InvalidText, InvalidMetadata, InvalidAmount) as error:
            raise _refuse(error) from None

    return validate


# --- ids -------------------------------------------------------------------------------

#: 8-4-4-4-12 hex digits. Upper-case hex is the same UUID (RFC 9562 reads hex case-blind)
#: and is accepted; braces, "urn:uuid:" and the 32 digits without hyphens are not.
UUID_PATTERN = r"^[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}$"
_UUID = re.compile(UUID_PATTERN[1:-1], re.ASCII)


def _canonical_uuid(value: object) -> object:
    if isinstance(value, uuid.UUID):
        return value
    if not isinstance(value, str) or not _UUID.fullmatch(value):
        raise ValueError(
            "must be a UUID written 8-4-4-4-12, e.g. 1b4e28ba-2fa1-11d2-883f-0016d3cca427"
        )
    return value


CanonicalUuid = Annotated[
    uuid.UUID,
    BeforeValidator(_canonical_uuid),
    WithJsonSchema({"type": "string", "format": "uuid", "pattern": UUID_PATTERN}),
]


# --- free text -------------------------------------------------------------------------


#: What the text rules allow, as a JSON-schema pattern (lone surrogates aside, which a
#: pattern cannot name): no C0/C1 controls, DEL, bidi controls or line separators.
TEXT_PATTERN = r"^[^\u0000-\u001f\u007f-\u009f\u2028\u2029\u202a-\u202e\u2066-\u2069]*$"
NOTE_PATTERN = (
    r"^[^\u0000-\u0008\u000b\u000c\u000e-\u001f\u007f-\u009f\u202a-\u202e\u2066-\u2069]*$"
)


def _text(*, multiline: bool = False, mask: bool = False) -> AfterValidator:
    def check(value: str) -> str:
        check_text(value, "the text", multiline=multiline)
        return mask_sensitive(value) if mask else value

    return AfterValidator(_checked(check))


#: A single line of text with a format of its own (an email, a phone number).
PlainText = Annotated[str, _text()]
#: A single line of free text: a name, a password.
FreeText = Annotated[str, _text(), Field(json_schema_extra={"pattern": TEXT_PATTERN})]
#: A single line a card number or IBAN may be pasted into: a description, a reference.
MaskedText = Annotated[str, _text(mask=True), Field(json_schema_extra={"pattern": TEXT_PATTERN})]
#: A note of several lines (tab, LF and CR allowed), masked like MaskedText.
MaskedNote = Annotated[
    str, _text(multiline=True, mask=True), Field(json_schema_extra={"pattern": NOTE_PATTERN})
]


# --- metadata --------------------------------------------------------------------------


def _masked_value(value: MetadataValue) -> MetadataValue:
    if isinstance(value, str):
        return mask_sensitive(value)
    if type(value) is int and PAN_DIGITS_MIN <= len(str(abs(value))) <= PAN_DIGITS_MAX:
        # A card number sent as a JSON number is a card number all the same.
        masked = mask_sensitive(str(value))
        return masked if "*" in masked else value
    return value


def _metadata(value: dict[str, MetadataValue]) -> dict[str, MetadataValue]:
    check_metadata(value)
    return {key: _masked_value(item) for key, item in value.items()}


METADATA_SCHEMA = {
    "type": "object",
    "maxProperties": METADATA_ENTRIES_MAX,
    "propertyNames": {"pattern": KEY_PATTERN},
    "additionalProperties": {
        "anyOf": [
            {"type": "string", "maxLength": METADATA_TEXT_LENGTH_MAX, "pattern": TEXT_PATTERN},
            {"type": "integer", "minimum": INT64_MIN, "maximum": INT64_MAX},
            {"type": "boolean"},
            {"type": "null"},
        ]
    },
    "description": "Flat channel facts (channel, terminal_id, device_id, ...): keys of ASCII "
    "letters, digits and _.:- (at most 64), values strings (at most 256 characters, masked "
    "like descriptions), 64-bit integers (one that is a card number is masked into a string), "
    "booleans or null.",
}

#: The type checks (a dict of scalars, at most 32 entries) come first and keep the generic
#: code; the bounds after them answer INVALID_METADATA or INVALID_TEXT.
Metadata = Annotated[
    dict[str, MetadataValue],
    AfterValidator(_checked(_metadata)),
    WithJsonSchema(METADATA_SCHEMA),
]


# --- amounts ---------------------------------------------------------------------------


def _amount_text(value: object) -> object:
    amount_text_value(value)
    return value


#: An amount as callers write it (domain/money.py's one grammar); its currency's precision
#: is checked where the currency is known.
AmountText = Annotated[
    str,
    BeforeValidator(_checked(_amount_text)),
    WithJsonSchema(
        {
            "type": "string",
            "pattern": AMOUNT_PATTERN,
            "maxLength": AMOUNT_TEXT_LENGTH_MAX,
            "examples": ["12.50"],
        }
    ),
]
