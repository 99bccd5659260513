"""Phone numbers: the strict-E.164 shortcut agrees with phonenumbers, and normalize_phone is the library's answer.

``e164_number`` splits a number written in strict E.164 without ``phonenumbers.parse``; the
properties below hold it to parse's own answer on valid numbers of every region (the library's
example numbers, of every type) and on near misses (a digit changed, added or dropped, a trunk
prefix or a zero after the country code, any run of digits), and ``normalize_phone`` to what the
library alone makes of the same text (the number, or why it is refused).
"""

from __future__ import annotations

import phonenumbers
import pytest
from hypothesis import HealthCheck, event, given, settings
from hypothesis import strategies as st
from segship.destination import RowRejected

from segship_sendinblue.mapping import e164_number, normalize_phone, phone_region

TYPES = [phonenumbers.PhoneNumberType.MOBILE, phonenumbers.PhoneNumberType.FIXED_LINE,
         phonenumbers.PhoneNumberType.TOLL_FREE, phonenumbers.PhoneNumberType.PREMIUM_RATE,
         phonenumbers.PhoneNumberType.VOIP, phonenumbers.PhoneNumberType.UAN]
#: Valid numbers of every region the library knows and of the non-geographic codes, in E.164.
EXAMPLES = sorted({phonenumbers.format_number(number, phonenumbers.PhoneNumberFormat.E164)
                   for number in [*(phonenumbers.example_number_for_type(region, kind)
                                    for region in phonenumbers.SUPPORTED_REGIONS for kind in TYPES),
                                  *(phonenumbers.example_number_for_non_geo_entity(code)
                                    for code in phonenumbers.COUNTRY_CODES_FOR_NON_GEO_REGIONS)]
                   if number is not None})
REGIONS = st.sampled_from([None, "FR", "US", "GB", "DE", "IT", "AR", "BR", "RU", "JP", "IN", "NG"])
PROPERTIES = settings(max_examples=3000, deadline=None, suppress_health_check=[HealthCheck.too_slow])


def country_code_length(text: str) -> int:
    return next(size for size in (1, 2, 3) if int(text[1:1 + size]) in phonenumbers.COUNTRY_CODE_TO_REGION_CODE)


@st.composite
def near_misses(draw: st.DrawFn) -> str:
    """A valid number changed the ways a number is mistyped or mis-stored."""
    text = draw(st.sampled_from(EXAMPLES))
    digits = text[1:]
    at = draw(st.integers(0, len(digits) - 1))
    digit = draw(st.sampled_from("0123456789"))
    after_code = country_code_length(text)
    return "+" + draw(st.sampled_from([
        digits[:at] + digit + digits[at + 1:],               # a digit changed
        digits[:at] + digit + digits[at:],                   # one added
        digits[:at] + digits[at + 1:],                       # one dropped
        digits[:after_code] + "0" + digits[after_code:],     # a trunk 0 kept after the country code
        digits[:after_code] + digit + digits[after_code:],   # another prefix digit there
        digits + draw(st.text("0123456789", min_size=1, max_size=3)),  # too long
    ]))


NUMBERS = st.one_of(
    st.sampled_from(EXAMPLES),
    near_misses(),
    st.text("0123456789", min_size=8, max_size=15).map(lambda digits: "+" + digits),  # any digits
    st.text("0123456789", min_size=1, max_size=20).map(lambda digits: "+" + digits),
)


def by_the_library(text: str, region: str | None) -> tuple[str, str]:
    """What phonenumbers alone makes of ``text``: ("number", its E.164) or ("refused", why)."""
    try:
        number = phonenumbers.parse(text, region)
    except phonenumbers.NumberParseException as exc:
        return "refused", f"parse error {exc.error_type}"
    if not phonenumbers.is_valid_number(number):
        return "refused", f"no valid +{number.country_code} number"
    return "number", phonenumbers.format_number(number, phonenumbers.PhoneNumberFormat.E164)


@PROPERTIES
@given(text=NUMBERS, region=REGIONS)
def test_the_shortcut_splits_a_strict_e164_number_exactly_as_parse_does(text: str, region: str | None) -> None:
    shortcut = e164_number(text)
    event("shortcut" if shortcut is not None else "parsed")
    if shortcut is not None:
        assert shortcut == phonenumbers.parse(text, region)


@PROPERTIES
@given(text=NUMBERS, region=REGIONS)
def test_normalize_phone_gives_the_librarys_answer(text: str, region: str | None) -> None:
    expected = by_the_library(text, region)
    try:
        answer = ("number", normalize_phone(text, region))
    except RowRejected as exc:
        answer = ("refused", exc.reason)
    assert answer[0] == expected[0], (text, answer, expected)
    if expected[0] == "number":
        assert answer == expected
    elif expected[1].startswith("no valid"):
        assert answer[1] == f"invalid phone number {text!r}: {expected[1]}"


def test_valid_numbers_of_every_region_take_the_shortcut_unless_parse_has_more_to_do() -> None:
    shortcuts = [text for text in EXAMPLES if e164_number(text) is not None]
    assert len(shortcuts) > 0.8 * len(EXAMPLES)  # the shortcut is the common path
    assert e164_number("+33612345678") == phonenumbers.parse("+33612345678")
    assert e164_number("+440791112345") is None  # a trunk 0 after the country code: parse strips it
    assert e164_number("+390612345678") is None  # a national number's leading zero: parse keeps it apart
    assert e164_number("33612345678") is None and e164_number("+33 6 12 34 56 78") is None


@pytest.mark.parametrize("code", ["+33", "+1", "+44", "+7", "+39", "+54", "+55", "+81", "+91"])
def test_numbers_written_nationally_are_read_in_the_default_countrys_region(code: str) -> None:
    region = phone_region(code)
    for kind in TYPES[:2]:
        number = phonenumbers.example_number_for_type(region, kind)
        national = phonenumbers.format_number(number, phonenumbers.PhoneNumberFormat.NATIONAL)
        assert normalize_phone(national, region) == phonenumbers.format_number(
            number, phonenumbers.PhoneNumberFormat.E164)
