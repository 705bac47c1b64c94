"""domain.text, domain.metadata and domain.inputs: what free text, metadata and ids a caller
may send, and the pydantic error types the HTTP edges turn into stable codes."""

from __future__ import annotations

import uuid

import pytest
from pydantic import BaseModel, ConfigDict, ValidationError

from domain.exceptions import InvalidMetadata, InvalidText
from domain.inputs import (
    ERROR_CODES,
    AmountText,
    CanonicalUuid,
    FreeText,
    MaskedNote,
    MaskedText,
    Metadata,
)
from domain.metadata import INT64_MAX, INT64_MIN, check_metadata
from domain.text import check_text, first_refused, is_visible_ascii

REFUSED_EVERYWHERE = [
    "\x00",  # NUL: PostgreSQL text cannot hold it (it answered a 500)
    "\x01",
    "\x1b[31m",  # an escape sequence for a terminal
    "\x7f",  # DEL
    "\x85",  # NEL, a C1 control
    "\x9f",
    "\ud800",  # a lone surrogate: no UTF-8 store can hold it
    "\udfff",
    "\u202e",  # right-to-left override: text that reads otherwise than it is
    "\u2066",
]
LINE_BREAKS = ["\n", "\r", "\t", "\r\n"]
TEXT = [
    "rent for May",
    "Zoë Ñúñez-O'Brien",
    "東京の家賃",
    "família 👨‍👩‍👧",  # joiners are text
    "shop » café — 12 € ",
    "",
]


@pytest.mark.parametrize("bad", REFUSED_EVERYWHERE + LINE_BREAKS + ["\u2028", "\u2029"])
def test_a_single_line_refuses_controls_line_breaks_and_surrogates(bad: str) -> None:
    with pytest.raises(InvalidText) as caught:
        check_text(f"ab{bad}cd", "description")
    assert caught.value.code == "INVALID_TEXT"
    assert "position 2" in caught.value.message
    assert f"U+{ord(bad[0]):04X}" in caught.value.message


@pytest.mark.parametrize("bad", REFUSED_EVERYWHERE)
def test_a_note_refuses_controls_but_keeps_its_lines(bad: str) -> None:
    assert check_text("line one\r\nline\ttwo\n", "note", multiline=True)
    assert first_refused(f"ok\n{bad}", multiline=True) == 3


@pytest.mark.parametrize("text", TEXT)
def test_text_passes_as_written(text: str) -> None:
    assert check_text(text, "description") == text


@pytest.mark.parametrize(
    ("key", "ok"), [("abc", True), ("Ab_1.x:y-z", True), ("a" * 64, True), ("a" * 65, False),
                    ("", False), ("a b", False), ("é", False), ("a/b", False), ("{x}", False)],
)  # fmt: skip
def test_metadata_keys(key: str, ok: bool) -> None:
    if ok:
        assert check_metadata({key: 1}) == {key: 1}
    else:
        with pytest.raises(InvalidMetadata):
            check_metadata({key: 1})


@pytest.mark.parametrize("value", [INT64_MIN, INT64_MAX, 0, -1, True, None, "x" * 256, "pos"])
def test_metadata_values_within_bounds(value: object) -> None:
    assert check_metadata({"n": value}) == {"n": value}


@pytest.mark.parametrize(
    "value", [INT64_MAX + 1, INT64_MIN - 1, 10**30, "x" * 257, 1.5, [1], {"a": 1}]
)
def test_metadata_values_out_of_bounds(value: object) -> None:
    with pytest.raises(InvalidMetadata) as caught:
        check_metadata({"n": value})
    assert caught.value.code == "INVALID_METADATA"


def test_metadata_text_follows_the_text_rules_and_reserved_keys_are_refused() -> None:
    with pytest.raises(InvalidText):
        check_metadata({"channel": "p\x00s"})
    with pytest.raises(InvalidText):
        check_metadata({"a\x00": 1})
    with pytest.raises(InvalidMetadata, match="set by the API"):
        check_metadata({"reversal_of": str(uuid.uuid4())})
    with pytest.raises(InvalidMetadata, match="at most 32"):
        check_metadata({str(i): i for i in range(33)})


def test_idempotency_keys_are_visible_ascii() -> None:
    assert is_visible_ascii("order-42 retry#1")
    for bad in ("ünïcode", "tab\there", " padded", "\x00", "\x7f"):
        assert not is_visible_ascii(bad)


class Body(BaseModel):
    model_config = ConfigDict(extra="forbid")

    id: CanonicalUuid | None = None
    name: FreeText | None = None
    description: MaskedText | None = None
    note: MaskedNote | None = None
    metadata: Metadata = {}
    amount: AmountText | None = None


def error_type(**fields: object) -> str:
    with pytest.raises(ValidationError) as caught:
        Body(**fields)
    return str(caught.value.errors()[0]["type"])


UUID_TEXT = "1b4e28ba-2fa1-11d2-883f-0016d3cca427"


def test_ids_in_canonical_form_either_case() -> None:
    assert Body(id=UUID_TEXT).id == uuid.UUID(UUID_TEXT)
    assert Body(id=UUID_TEXT.upper()).id == uuid.UUID(UUID_TEXT)


@pytest.mark.parametrize(
    "text",
    [
        UUID_TEXT.replace("-", ""),
        "{" + UUID_TEXT + "}",
        "urn:uuid:" + UUID_TEXT,
        UUID_TEXT + "\n",
        " " + UUID_TEXT,
        UUID_TEXT[:-1] + "g",
        UUID_TEXT[:-1] + "\uff11",  # a full-width digit
        "",
    ],
)
def test_other_spellings_of_an_id_are_refused(text: str) -> None:
    assert error_type(id=text) == "value_error"  # the edge's generic INVALID_FIELD


def test_the_edges_map_the_refusals_to_stable_codes() -> None:
    assert error_type(name="A\x00") == "invalid_text"
    assert error_type(description="\ud800") == "invalid_text"
    assert error_type(note="ok\n\x00") == "invalid_text"
    assert error_type(metadata={"n": 10**30}) == "invalid_metadata"
    assert error_type(metadata={"n": {"nested": 1}}) != "invalid_metadata"  # a type error
    assert error_type(amount="1_0") == "invalid_amount"
    assert ERROR_CODES == {
        "invalid_text": "INVALID_TEXT",
        "invalid_metadata": "INVALID_METADATA",
        "invalid_amount": "INVALID_AMOUNT",
    }


def test_descriptions_notes_and_metadata_strings_are_masked() -> None:
    body = Body(
        description="card 4111 1111 1111 1111",
        note="refund\nto DE89370400440532013000",
        metadata={"ref": "4111111111111111", "n": 4111111111111111, "m": 4111111111111112},
        name="4111111111111111",
    )
    assert body.description == "card **** **** **** 1111"
    assert body.note == "refund\nto ******************3000"
    # A card number sent as an integer is masked too (as a string); other integers stay.
    assert body.metadata == {
        "ref": "************1111",
        "n": "************1111",
        "m": 4111111111111112,
    }
    assert body.name == "4111111111111111"  # names are not payment details


def test_a_message_with_braces_is_not_read_as_a_template() -> None:
    with pytest.raises(ValidationError) as caught:
        Body(metadata={"{reason}": 1})
    assert "{reason}" in caught.value.errors()[0]["msg"]
