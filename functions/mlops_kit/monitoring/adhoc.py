"""`mlops drift`: compare two files feature by feature, with the monitors' own maths."""

from __future__ import annotations

import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any, NamedTuple

import numpy as np

from mlops_kit.core import drift

PSI_LEVELS = ((0.25, "major"), (0.1, "moderate"), (0.0, "stable"))


class DriftInputError(ValueError):
    pass


def psi_level(value: float) -> str:
    return next(label for bound, label in PSI_LEVELS if value >= bound)


def _read(path: Path):
    from mlops_pipelines.steps._io import BadInputError, read_table

    try:
        return read_table(path)
    except BadInputError as exc:
        raise DriftInputError(exc.cause) from None


class _Columns(NamedTuple):
    numeric: list[str]
    categorical: list[str]
    identifiers: list[str]
    """Text columns unique on (nearly) every row: skipped."""
    declared: list[str]
    """The schema's label and id columns: skipped."""


def compare_frames(reference, current, *, bins: int = 10, score_column: str = "score",
                   workers: int = 2, label_columns: tuple[str, ...] = (),
                   id_columns: tuple[str, ...] = ()) -> dict[str, Any]:
    """PSI (and KS for numbers) of every shared column that is a feature: the schema's label
    and id columns are never features (the rule serving, batch and stream follow too), nor is
    a text column unique on nearly every row."""
    started = time.perf_counter()
    columns = _split_columns(reference, current, score_column, (*label_columns, *id_columns))
    results = _feature_drift(reference, current, columns, bins, workers)
    return {
        "reference": {"rows": int(len(reference))},
        "current": {"rows": int(len(current))},
        "bins": bins,
        "features": {name: results[name] for name in columns.numeric + columns.categorical},
        "max_psi": max((m["psi"] for m in results.values()), default=0.0),
        "skipped_identifiers": columns.identifiers,
        "skipped_label": [c for c in columns.declared if c in label_columns],
        "skipped_ids": [c for c in columns.declared if c in id_columns],
        "score_psi": _score_psi(reference, current, score_column, bins),
        "seconds": time.perf_counter() - started,
    }


def _split_columns(reference, current, score_column: str,
                   declared_columns: tuple[str, ...]) -> _Columns:
    shared = [c for c in reference.columns if c in current.columns]
    if not shared:
        raise DriftInputError("the two files share no column")
    declared = [c for c in shared if c in set(declared_columns)]
    shared = [c for c in shared if c not in declared]
    numeric = [c for c in shared if c != score_column and reference[c].dtype.kind in "fiub"
               and current[c].dtype.kind in "fiub"]
    # A text column unique on (nearly) every row is an identifier, not a feature.
    identifiers = [c for c in shared if c not in numeric and c != score_column
                   and reference[c].nunique() > 0.5 * max(len(reference), 1)]
    categorical = [c for c in shared if c != score_column and c not in numeric
                   and c not in identifiers]
    return _Columns(numeric, categorical, identifiers, declared)


def _feature_drift(reference, current, columns: _Columns, bins: int,
                   workers: int) -> dict[str, dict[str, Any]]:
    def numeric_feature(name: str) -> tuple[str, dict[str, Any]]:
        ref = reference[name].to_numpy(dtype=np.float64, na_value=np.nan)
        cur = current[name].to_numpy(dtype=np.float64, na_value=np.nan)
        result = drift.numeric_drift(ref, cur, bins)
        return name, {"kind": "numeric", "psi": result["psi"], "ks": result["ks"],
                      "level": psi_level(result["psi"])}

    def categorical_feature(name: str) -> tuple[str, dict[str, Any]]:
        baseline = drift.categorical_baseline_from_frequencies(*_frequencies(reference[name]))
        observed, missing = _frequencies(current[name])
        actual = drift.proportions(drift.categorical_counts_from_frequencies(
            observed, missing, baseline["categories"]))
        value = drift.psi(np.asarray(baseline["proportions"]), actual)
        return name, {"kind": "categorical", "psi": value, "ks": None, "level": psi_level(value)}

    # numpy sorts and searches release the GIL: features run in parallel on the cores.
    with ThreadPoolExecutor(max_workers=workers) as pool:
        results = dict(pool.map(numeric_feature, columns.numeric))
        results.update(pool.map(categorical_feature, columns.categorical))
    return results


def _frequencies(column) -> tuple[dict[str, int], int]:
    """(count by category, missing count). Counted by category as serving names them: an
    integer-coded column read as float in one file (it has gaps) and as text in the other
    still compares "1" with "1"."""
    from mlops_pipelines.steps.schema import factorize_categories

    codes, names = factorize_categories(column)
    counts = np.bincount(codes[codes >= 0], minlength=len(names))
    return dict(zip(names, counts.tolist())), int((codes < 0).sum())


def _score_psi(reference, current, score_column: str, bins: int) -> float | None:
    if score_column not in reference.columns or score_column not in current.columns:
        return None
    ref_scores = reference[score_column].to_numpy(dtype=np.float64, na_value=np.nan)
    return drift.psi_against_baseline(drift.numeric_baseline(ref_scores, bins),
                                      current[score_column].to_numpy(
                                          dtype=np.float64, na_value=np.nan))


def compare_files(reference: Path, current: Path, **kwargs: Any) -> dict[str, Any]:
    report = compare_frames(_read(reference), _read(current), **kwargs)
    report["reference"]["path"] = str(reference)
    report["current"]["path"] = str(current)
    return report
