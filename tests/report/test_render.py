"""How report tables print numbers: a reader must be able to compare two cells by eye."""

from __future__ import annotations

import math

import pandas as pd
import pytest

from hpo.report.render import number, table_html


@pytest.mark.parametrize(
    ("value", "shown"),
    [
        (0.94593, "0.9459"),  # AUCs and losses: four decimals, as every report has printed them
        (822.56831, "822.5683"),
        (0.0123, "0.0123"),
        (0.0, "0.0000"),
        (0.000274, "0.000274"),  # below 0.01: three significant digits
        (8.055e-05, "0.0000806"),
        (-3.2e-05, "-0.0000320"),
        (3.75e-07, "3.75e-07"),  # p-values far below 1e-6: scientific notation, never 0.0000
        (math.inf, "inf"),
        (math.nan, ""),
    ],
)
def test_number_keeps_three_significant_digits_below_a_hundredth(value: float, shown: str) -> None:
    assert number(value) == shown


def test_signed_numbers_show_their_sign() -> None:
    assert number(8.055e-05, signed=True) == "+0.0000806"
    assert number(-0.5, signed=True) == "-0.5000"


def test_a_gain_and_its_tolerance_stay_comparable_in_a_table() -> None:
    """With four decimals both cells read 0.0001 and the table hides that the gain is under the tolerance."""
    page = table_html(pd.DataFrame({"gain": [8.055e-05], "tolerance": [0.000102]}))
    assert "<td>0.0000806</td>" in page and "<td>0.000102</td>" in page
