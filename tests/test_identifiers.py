"""Identifiers in statements: what is accepted, what is refused, and what the user is told."""

from __future__ import annotations

import unicodedata
from collections.abc import Callable
from uuid import uuid5

import pytest
from hypothesis import assume, given
from hypothesis import strategies as st
from stdnum.cn import uscc as stdnum_uscc

from ledger.domain.ids import NAMESPACE, named
from ledger.errors import Rejected, Rejection
from ledger.identifiers import (
    gtin_check_digit,
    normalize_gtin,
    validate_gtin14,
    validate_lot,
    validate_org_code,
    validate_region,
    validate_uscc,
)

USCC_ALPHABET = "0123456789ABCDEFGHJKLMNPQRTUWXY"

# Written out from GS1 General Specifications Figure 7.11-1, independently of the module.
GS1_82 = "!\"%&'()*+,-./0123456789:;<=>?ABCDEFGHIJKLMNOPQRSTUVWXYZ_abcdefghijklmnopqrstuvwxyz"


def rejection(validate: Callable[[str], str], value: str) -> str:
    """Run `validate`, insist it refuses with BAD_IDENTIFIER and a one-line message; return it."""
    with pytest.raises(Rejected) as caught:
        validate(value)
    assert caught.value.kind is Rejection.BAD_IDENTIFIER
    assert "\n" not in caught.value.detail and "\r" not in caught.value.detail
    return caught.value.detail


# --- USCC -----------------------------------------------------------------------

# Published codes, from each company's public business licence information
# (national enterprise credit information publicity system).
REAL_USCCS = {
    "914403001922038216": "Huawei Technologies Co., Ltd.",
    "9144030071526726XG": "Tencent Technology (Shenzhen) Co., Ltd.",
    "91440300708461136T": "Shenzhen Tencent Computer Systems Co., Ltd.",
    "91330100716105852F": "Alibaba (China) Network Technology Co., Ltd.",
    "91110108551385082Q": "Xiaomi Technology Co., Ltd. (小米科技有限责任公司)",
    "91110000802100433B": "Beijing Baidu Netcom Science and Technology Co., Ltd.",
    "91440300192185379H": "Ping An Bank Co., Ltd.",
    "91310000132260250X": "SAIC Motor Corporation Limited",
    "12100000425006133D": "East China Normal University (a public institution, prefix 12)",
}
HUAWEI = "914403001922038216"


@pytest.mark.parametrize("code", sorted(REAL_USCCS))
def test_published_usccs_are_accepted_unchanged(code: str) -> None:
    assert stdnum_uscc.is_valid(code)  # the sample itself is right, independently of us
    assert validate_uscc(code) == code


def test_a_wrong_check_digit_names_the_expected_one() -> None:
    assert (
        rejection(validate_uscc, "91350100M000100Y44")
        == "USCC 91350100M000100Y44 has a wrong check digit (expected 3)"
    )
    assert validate_uscc("91350100M000100Y43") == "91350100M000100Y43"


@pytest.mark.parametrize("code", sorted(REAL_USCCS))
def test_every_other_check_character_is_rejected(code: str) -> None:
    for c in USCC_ALPHABET.replace(code[-1], ""):
        message = rejection(validate_uscc, code[:-1] + c)
        assert message.endswith(f"has a wrong check digit (expected {code[-1]})")


def test_any_single_substitution_in_the_body_is_caught() -> None:
    # GB 32100's mod-31 check detects every single-character error; we rely on that.
    for i in range(17):
        allowed = "0123456789" if 2 <= i <= 7 else USCC_ALPHABET
        for c in allowed.replace(HUAWEI[i], ""):
            rejection(validate_uscc, HUAWEI[:i] + c + HUAWEI[i + 1 :])


@pytest.mark.parametrize("code", [HUAWEI[:17], HUAWEI + "0", "", "9144 0300 1922 0382 16"])
def test_wrong_length_says_how_long_it_was(code: str) -> None:
    assert f"has {len(code)} characters; a USCC has 18" in rejection(validate_uscc, code)


def test_lowercase_is_rejected_because_codes_are_uppercase() -> None:
    message = rejection(validate_uscc, "9144030071526726xg")
    assert "uppercase" in message
    assert "U+0078" in message and "position 17" in message
    # One byte form per identifier: we do not quietly uppercase it for the caller.
    assert "uppercase" in rejection(validate_uscc, "9144030071526726Xg")


@pytest.mark.parametrize("letter", list("IOZSV"))
def test_letters_gb32100_never_uses_are_rejected(letter: str) -> None:
    # 'X' → letter at position 17 of Tencent's code; the check digit is irrelevant.
    message = rejection(validate_uscc, "9144030071526726" + letter + "G")
    assert "I, O, Z, S, V" in message and "position 17" in message


def test_region_part_must_be_digits_and_no_separators_are_accepted() -> None:
    assert "position 3; positions 3 to 8" in rejection(validate_uscc, "91A403001922038216")
    assert "position 8; positions 3 to 8" in rejection(validate_uscc, "9144030A1922038216")
    message = rejection(validate_uscc, "91440300-922038216")
    assert "U+002D" in message and "position 9" in message
    assert "U+FF19" in rejection(validate_uscc, "\uff19" + HUAWEI[1:])  # fullwidth 9


def test_embedded_organization_code_is_not_required_to_be_gb11714() -> None:
    # A code whose positions 9-17 are not a valid GB 11714 code, like many
    # issued since 2015; constructed here with a correct GB 32100 check digit.
    body = "92350103MA2YQ0001"
    code = body + stdnum_uscc.calc_check_digit(body)
    rejection(validate_org_code, code[8:17])
    assert validate_uscc(code) == code


def test_letter_registration_authority_is_accepted() -> None:
    # GB 32100 lets positions 1-2 be letters (e.g. 'N' agriculture); stdnum's
    # validate() would refuse this, so the module must not depend on it.
    body = "N2350100MA1234567"
    code = body + stdnum_uscc.calc_check_digit(body)
    assert not stdnum_uscc.is_valid(code)
    assert validate_uscc(code) == code


def test_non_text_is_refused_cleanly() -> None:
    with pytest.raises(Rejected, match="must be text, not int"):
        validate_uscc(914403001922038216)  # type: ignore[arg-type]


# --- Organization code (GB 11714) -------------------------------------------------


@pytest.mark.parametrize("code", sorted(REAL_USCCS))
def test_organization_code_embedded_in_real_usccs_is_valid(code: str) -> None:
    # These companies' USCCs carry their pre-2015 organization code at 9-17,
    # e.g. Huawei's 19220382-1 → "192203821"; Tencent's ends in an 'X'.
    assert validate_org_code(code[8:17]) == code[8:17]


def test_check_character_x_and_zero() -> None:
    # 1·3 + 1·4 + 8·2 = 23; 23 mod 11 = 1; 11 - 1 = 10 → 'X'.
    assert validate_org_code("10000018X") == "10000018X"
    # 1·3 + 4·2 = 11; 11 mod 11 = 0; 11 - 0 = 11 → '0'.
    assert validate_org_code("100000040") == "100000040"
    assert "expected X" in rejection(validate_org_code, "100000180")
    assert validate_org_code("71526726X") == "71526726X"


def test_wrong_organization_check_character_names_the_expected_one() -> None:
    assert (
        rejection(validate_org_code, "192203822")
        == "organization code 192203822 has a wrong check character (expected 1)"
    )


@pytest.mark.parametrize("code", ["19220382", "1922038210", "", "19220382-1"])
def test_organization_code_wrong_length(code: str) -> None:
    assert "an organization code has 9" in rejection(validate_org_code, code)


def test_organization_code_hyphen_and_case() -> None:
    assert "without the hyphen" in rejection(validate_org_code, "19220382-1")
    assert "uppercase" in rejection(validate_org_code, "71526726x")
    assert "check character is a digit or X" in rejection(validate_org_code, "19220382A")


# --- GTIN (GS1) --------------------------------------------------------------------


@pytest.mark.parametrize(
    ("gtin", "gtin14"),
    [
        ("4006381333931", "04006381333931"),  # GTIN-13
        ("96385074", "00000096385074"),  # GTIN-8
        ("036000291452", "00036000291452"),  # GTIN-12 (UPC-A)
        ("00036000291452", "00036000291452"),  # already GTIN-14
        ("14006381333938", "14006381333938"),  # GTIN-14 with indicator digit 1
    ],
)
def test_gtins_normalize_to_fourteen_digits(gtin: str, gtin14: str) -> None:
    assert normalize_gtin(gtin) == gtin14
    assert validate_gtin14(gtin14) == gtin14


def test_wrong_gtin_check_digit_names_the_expected_one() -> None:
    assert (
        rejection(normalize_gtin, "4006381333932")
        == "GTIN 4006381333932 has a wrong check digit (expected 1)"
    )
    assert "expected 1" in rejection(validate_gtin14, "04006381333932")


@pytest.mark.parametrize("length", [7, 9, 10, 11, 15])
def test_gtin_wrong_lengths_are_rejected_even_with_a_valid_check_digit(length: int) -> None:
    body = "4006381333931"[: length - 1].ljust(length - 1, "7")
    value = body + gtin_check_digit(body)
    assert f"has {length} digits; a GTIN has 8, 12, 13 or 14" in rejection(normalize_gtin, value)


def test_gtin14_is_strict_about_the_stored_form() -> None:
    assert "it must have 14" in rejection(validate_gtin14, "4006381333931")
    assert "it must have 14" in rejection(validate_gtin14, "96385074")


@pytest.mark.parametrize(
    ("value", "char", "position"),
    [
        ("400638133393A", "U+0041", 13),
        ("4006381-333931", "U+002D", 8),
        (" 4006381333931", "U+0020", 1),
        ("\uff14006381333931", "U+FF14", 1),  # fullwidth 4: str.isdigit() would say yes
        ("\u0664006381333931", "U+0664", 1),  # Arabic-Indic 4
    ],
)
def test_gtin_non_digits_are_named(value: str, char: str, position: int) -> None:
    message = rejection(normalize_gtin, value)
    assert char in message and f"position {position}" in message


@given(st.text(alphabet="0123456789", min_size=12, max_size=12), st.integers(1, 9))
def test_any_body_with_its_check_digit_is_a_gtin13(body: str, shift: int) -> None:
    assume(body.strip("0"))  # all zeros is refused on its own (below)
    check = gtin_check_digit(body)
    gtin13 = body + check
    assert normalize_gtin(gtin13) == "0" + gtin13
    wrong = body + str((int(check) + shift) % 10)
    assert f"(expected {check})" in rejection(normalize_gtin, wrong)


def test_an_all_zero_gtin_is_refused_though_its_check_digit_is_right() -> None:
    for zeros in ("00000000", "000000000000", "0000000000000", "00000000000000"):
        assert "all zeros" in rejection(normalize_gtin, zeros)


# --- Lot (GS1 AI 10) -----------------------------------------------------------------


def test_all_82_characters_and_length_bounds() -> None:
    assert len(GS1_82) == 82 == len(set(GS1_82))
    for c in GS1_82:
        assert validate_lot(c) == c
    assert validate_lot("A" * 20) == "A" * 20
    assert "is empty" in rejection(validate_lot, "")
    assert "has 21 characters; at most 20" in rejection(validate_lot, "A" * 21)


@pytest.mark.parametrize(
    ("lot", "char", "position"),
    [
        ("LOT-\uff2c1", "U+FF2C", 5),  # fullwidth L
        ("\u0410B123", "U+0410", 1),  # Cyrillic A, looks like Latin A
        ("CAF\u00e9", "U+00E9", 4),  # é, NFC
        ("CAFe\u0301", "U+0301", 5),  # é, NFD: the combining accent is the bad one
        ("AB\u200bC", "U+200B", 3),  # zero-width space
        ("AB C", "U+0020", 3),
        ("AB#1", "U+0023", 3),
        ("AB\x00", "U+0000", 3),
        ("AB\n1", "U+000A", 3),
    ],
)
def test_look_alikes_and_other_characters_are_named_by_code_point(
    lot: str, char: str, position: int
) -> None:
    message = rejection(validate_lot, lot)
    assert f"{char}" in message and f"at position {position};" in message


def test_nfc_and_nfd_are_both_refused() -> None:
    for form in ("NFC", "NFD"):
        rejection(validate_lot, unicodedata.normalize(form, "LOT\u00e9"))


def test_invisible_characters_are_visible_in_the_message() -> None:
    assert '"AB\\u200bC"' in rejection(validate_lot, "AB\u200bC")


# head + bad + tail stays within 20 characters, so the bad character is what is reported.
gs1_head = st.text(alphabet=GS1_82, max_size=10)
gs1_tail = st.text(alphabet=GS1_82, max_size=9)


@given(st.text(alphabet=GS1_82, min_size=1, max_size=20))
def test_any_string_of_the_82_characters_is_accepted(lot: str) -> None:
    assert validate_lot(lot) == lot


@given(gs1_head, st.characters().filter(lambda c: c not in GS1_82), gs1_tail)
def test_any_string_with_an_outside_character_is_rejected(head: str, bad: str, tail: str) -> None:
    message = rejection(validate_lot, head + bad + tail)
    assert f"U+{ord(bad):04X}" in message and f"position {len(head) + 1};" in message


# --- Region (GB/T 2260) ----------------------------------------------------------------


@pytest.mark.parametrize("code", ["110000", "350100", "820000", "710000"])
def test_regions_with_a_province_prefix_are_accepted(code: str) -> None:
    assert validate_region(code) == code


def test_bad_regions_are_rejected() -> None:
    assert "99, which is not a GB/T 2260 province-level code" in rejection(
        validate_region, "990000"
    )
    assert "has 5 digits; a region code has 6" in rejection(validate_region, "12345")
    assert "U+0061" in rejection(validate_region, "11000a")
    assert "U+0661" in rejection(validate_region, "\u0661\u0661\u0660\u0660\u0660\u0660")


@pytest.mark.slow
@given(st.text(), st.lists(st.text(), max_size=3))
def test_aggregate_ids_are_name_based_uuids(kind: str, parts: list[str]) -> None:
    # Stored aggregates are found by these ids: they must stay uuid5's, as ever.
    try:
        expected = uuid5(NAMESPACE, "\x1d".join((kind, *parts)))
    except UnicodeEncodeError:  # a lone surrogate has no UTF-8: no id either way
        return
    assert named(kind, *parts) == expected
    assert named(kind, *parts).version == 5
