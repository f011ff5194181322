"""The category naming rule: which category a categorical value names, in every home.

Training encodes categories by it (`mlops_pipelines.steps.train`), serving looks them up by it
(`mlops_pipelines.steps.inference`, the local endpoint, batch scoring) and the drift monitors
count them by it (`core.drift`), so a value the model scores as category "1" is counted as "1"
too. One definition, shipped into every bundle that needs it by the one bundler
(`mlops_pipelines.closure`): the steps and inference code bundles and the Lambda assets.
Imports numpy only (the serving container has it, and nothing of the kit besides this).
"""

from __future__ import annotations

from typing import Any

import numpy as np

_MISSING_TEXTS = frozenset(("nan", "NaN", "<NA>", "NaT", "None"))
"""Texts that name a missing value, as pandas and Python print one."""


def category_key(value: Any) -> str | None:
    """The category a categorical value names, or None when it is missing.

    Integer codes reach us as 1 (JSON, an int column), 1.0 (a float column: pandas reads an
    integer column with gaps as float64), "1" (CSV) or "1.0" (CSV written from such a column):
    all four name the category "1". Otherwise a value names its text, unchanged: real strings
    ("01", "DE", " 1"), non-integral numbers ("2.5"), booleans ("True"/"False": not "1", though
    bool is an int). None and NaN (float, numpy, Decimal), pandas' NA and NaT are missing.
    A category string is already its own key (the rule is idempotent), so lookups may try the
    raw text first and only call this on a miss.
    """
    if type(value) is not str:
        if value is None:
            return None
        if isinstance(value, (float, np.floating)):
            if value != value:
                return None
            # int() and not str(): numpy prints a float32 1e8 as "1e+08", Python prints 1e16
            # as "1e+16"; the integer's digits are what a client sends for that code.
            return str(int(value)) if value.is_integer() else str(value)
        value = str(value)
        if value in _MISSING_TEXTS:
            return None
    if value[-1:] in ("0", "."):  # cheap gate: most category texts end otherwise
        head, dot, fraction = value.partition(".")
        if dot and not fraction.strip("0"):
            digits = head[1:] if head[:1] == "-" else head
            if digits.isascii() and digits.isdigit():  # [0-9]+, like the float's text
                return "0" if head == "-0" else head
    return value
