"""Request field validators name the field and reject what they must."""

import pytest

from flashsale.common import errors, validation


def test_email_is_normalised() -> None:
    assert validation.email("  Ann@Example.COM ") == "ann@example.com"


@pytest.mark.parametrize("bad", ["", "ann", "ann@", "@example.com", "a b@example.com", "ann@example"])
def test_bad_email_names_the_field(bad: str) -> None:
    with pytest.raises(errors.InvalidArgument) as caught:
        validation.email(bad)
    assert caught.value.field == "email"


@pytest.mark.parametrize("bad", ["", "has space", "x" * 65, "semi;colon"])
def test_bad_identifier(bad: str) -> None:
    with pytest.raises(errors.InvalidArgument) as caught:
        validation.identifier(bad, "request_id")
    assert caught.value.field == "request_id"
    assert "request_id" in caught.value.detail()


def test_phone_is_optional_but_checked() -> None:
    assert validation.phone("") == ""
    assert validation.phone("+15551234567") == "+15551234567"
    with pytest.raises(errors.InvalidArgument):
        validation.phone("5551234")


def test_integer_bounds() -> None:
    assert validation.integer(5, "stock", low=1, high=10) == 5
    with pytest.raises(errors.InvalidArgument, match="between 1 and 10"):
        validation.integer(0, "stock", low=1, high=10)
