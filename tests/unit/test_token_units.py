"""parse_units / format_units: exact decimal <-> token units, and clear rejections."""

from __future__ import annotations

from decimal import Decimal, localcontext

import pytest
from hypothesis import example, given
from hypothesis import strategies as st

from verinfer.chain.token import MAX_UINT256, format_units, parse_units
from verinfer.errors import ConfigError

decimals = st.integers(min_value=0, max_value=36) | st.sampled_from([6, 18, 77, 78, 255])
units = st.integers(min_value=0, max_value=MAX_UINT256)
digits = st.text(alphabet="0123456789", min_size=1, max_size=40)


def exact(text: str, places: int) -> Decimal:
    """``text`` scaled by 10**places, computed with Decimal at a precision that cannot round."""
    with localcontext() as ctx:
        ctx.prec = 1000
        return Decimal(text) * Decimal(10) ** places


@given(units, decimals)
@example(0, 0)
@example(MAX_UINT256, 0)
@example(MAX_UINT256, 255)
@example(1, 255)
def test_format_then_parse_round_trips(amount: int, places: int) -> None:
    text = format_units(amount, places)
    assert parse_units(text, places) == amount
    # The text is canonical: no leading zeros, no trailing fractional zeros, no bare point.
    whole, _, fraction = text.partition(".")
    assert whole == str(int(whole))
    assert not fraction.endswith("0") and not text.endswith(".")
    assert len(fraction) <= places


@given(digits, st.text(alphabet="0123456789", max_size=40), decimals)
def test_parse_is_exact_and_format_canonicalises(whole: str, fraction: str, places: int) -> None:
    text = f"{whole}.{fraction}" if fraction else whole
    value = exact(text, places)
    if value != value.to_integral_value():
        with pytest.raises(ConfigError, match="decimal places"):
            parse_units(text, places)
        return
    if value > MAX_UINT256:
        with pytest.raises(ConfigError, match="too large"):
            parse_units(text, places)
        return
    amount = parse_units(text, places)
    assert amount == int(value)
    assert Decimal(format_units(amount, places)) == Decimal(text)


@given(st.integers(min_value=1, max_value=10**30), st.integers(min_value=0, max_value=30))
def test_more_significant_places_than_the_token_has_are_rejected(amount: int, places: int) -> None:
    text = format_units(amount * 10 + 7, places + 1)  # one significant digit too many
    with pytest.raises(ConfigError, match=f"has {places + 1} decimal places") as info:
        parse_units(text, places)
    assert info.value.hint and str(places) in info.value.hint


@given(digits, decimals)
def test_zeros_beyond_the_token_decimals_are_fine(whole: str, places: int) -> None:
    if exact(whole, places) > MAX_UINT256:
        return
    assert parse_units(f"{whole}.{'0' * (places + 3)}", places) == int(whole) * 10**places


@given(st.text(max_size=60), decimals)
@example("1.5", 6)
@example("\u0661", 6)  # ARABIC-INDIC DIGIT ONE: int() accepts it, we do not
def test_any_text_parses_or_raises_config_error(text: str, places: int) -> None:
    try:
        amount = parse_units(text, places)
    except ConfigError:
        return
    assert 0 <= amount <= MAX_UINT256
    assert set(text.strip()) <= set("0123456789.")


@pytest.mark.parametrize(
    "text",
    [
        "", " ", ".", "..", "1..2", "1.2.3", "abc", "0x10", "1e6", "1E6", "1e-6", "NaN", "nan",
        "inf", "Infinity", "-inf", "+1", "1,000", "1_000", "1 000", "1.5 2", "1/2", "\u0661",
        "\uff11", "\u00b2", "1.\u0661",
    ],
)  # fmt: skip
def test_garbage_is_rejected_with_a_hint(text: str) -> None:
    with pytest.raises(ConfigError, match="not a plain decimal number") as info:
        parse_units(text, 6)
    assert info.value.hint and "12.5" in info.value.hint


@pytest.mark.parametrize("text", ["-1", "-0.5", " -3 ", "-.5"])
def test_negative_amounts_are_rejected(text: str) -> None:
    with pytest.raises(ConfigError, match="negative"):
        parse_units(text, 6)


@pytest.mark.parametrize(
    ("text", "places", "expected"),
    [
        ("1.5", 6, 1_500_000), (".5", 6, 500_000), ("5.", 6, 5_000_000), (" 7 ", 0, 7),
        ("0.000001", 6, 1), ("1.0", 0, 1), ("000012.340000", 6, 12_340_000),
        ("1", 18, 10**18),
    ],
)  # fmt: skip
def test_examples(text: str, places: int, expected: int) -> None:
    assert parse_units(text, places) == expected


def test_overflow_and_huge_inputs_are_rejected() -> None:
    assert parse_units(str(MAX_UINT256), 0) == MAX_UINT256
    with pytest.raises(ConfigError, match="too large"):
        parse_units(str(MAX_UINT256 + 1), 0)
    with pytest.raises(ConfigError, match="too large"):
        parse_units("1", 78)  # 10**78 units
    with pytest.raises(ConfigError, match="characters"):
        parse_units("1" * 10_000, 0)


@pytest.mark.parametrize("value", [1.5, 1, None, b"1", Decimal("1.5")])
def test_non_text_amounts_are_rejected(value: object) -> None:
    with pytest.raises(ConfigError, match="as text"):
        parse_units(value, 6)  # type: ignore[arg-type]


@pytest.mark.parametrize("places", [-1, 256, True, 6.0, "6", None])
def test_bad_decimals_are_rejected(places: object) -> None:
    with pytest.raises(ConfigError, match="decimals"):
        parse_units("1", places)  # type: ignore[arg-type]
    with pytest.raises(ConfigError, match="decimals"):
        format_units(1, places)  # type: ignore[arg-type]


@pytest.mark.parametrize("amount", [-1, MAX_UINT256 + 1, 1.5, True, "1", None])
def test_format_rejects_what_is_not_a_token_amount(amount: object) -> None:
    with pytest.raises(ConfigError):
        format_units(amount, 6)  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("amount", "places", "expected"),
    [
        (0, 6, "0"), (1, 6, "0.000001"), (1_500_000, 6, "1.5"), (10**6, 6, "1"), (10, 0, "10"),
        (123_456_789, 6, "123.456789"), (10**18, 18, "1"),
    ],
)  # fmt: skip
def test_format_examples(amount: int, places: int, expected: str) -> None:
    assert format_units(amount, places) == expected


def test_errors_name_the_value() -> None:
    with pytest.raises(ConfigError, match="^price '-1' is negative"):
        parse_units("-1", 6, what="price")
    with pytest.raises(ConfigError, match="token has 6 decimals"):
        parse_units("0.0000001", 6, what="price")
