"""Preprocess step: validate the data contract, split deterministically, build the drift baseline.

SageMaker Processing layout (defaults) and the local remapping (arguments):
  input   /opt/ml/processing/input/data   one CSV or Parquet file    --input
  output  /opt/ml/processing/output/{train,validation,test,baseline}  --output-dir
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Any

import numpy as np

from mlops_kit.core import drift

from . import _io
from .schema import FRAUD_SAMPLE_SCHEMA, DatasetSchema, category_names, factorize_categories

DEFAULT_INPUT = "/opt/ml/processing/input/data"
DEFAULT_OUTPUT = "/opt/ml/processing/output"
SPLITS = ("train", "validation", "test")


def validate(frame, schema: DatasetSchema, *, min_rows: int, min_class_rows: int):
    """Check the data contract with pandera; return the frame with contract dtypes.

    Raises BadInputError naming every offending column, not just the first.
    """
    import warnings

    with warnings.catch_warnings():
        # pandera warns that typeguard < 3 checks only the first element of generic types;
        # the dev lock pins typeguard 2.13.3 (the CDK's jsii requires it) and the kit's
        # schemas use no generic types, so the warning says nothing about them.
        warnings.filterwarnings("ignore", message="Using typeguard < 3", category=UserWarning)
        import pandera.pandas as pa
        from pandera.errors import SchemaErrors

    missing = [c for c in schema.required_columns if c not in frame.columns]
    if missing:
        raise _io.BadInputError(f"missing column(s): {', '.join(missing)}",
                                [f"expected columns: {', '.join(schema.required_columns)}",
                                 f"found: {', '.join(map(str, frame.columns))}"])
    if len(frame) < min_rows:
        raise _io.BadInputError(f"too few rows: {len(frame)} (need at least {min_rows})")

    contract = pa.DataFrameSchema(
        {
            **{c: pa.Column(float, coerce=True, nullable=True) for c in schema.numeric},
            **{c: pa.Column(None, nullable=True) for c in schema.categorical},
            schema.target: pa.Column(
                int, coerce=True, nullable=False,
                checks=pa.Check.isin([0, 1], error="label must be 0 or 1")),
        },
        strict=False,
    )
    prepared = frame[list(schema.required_columns) +
                     [c for c in schema.id_columns if c in frame.columns]].copy()
    for column in schema.categorical:
        # Categories are named by the serving rule, so an integer-coded column that pandas read
        # as float (it has gaps) learns "1", not "1.0", which no client would send.
        prepared[column] = category_names(prepared[column])
    if prepared[schema.target].isna().any():
        count = int(prepared[schema.target].isna().sum())
        raise _io.BadInputError(f"missing labels: {count} row(s) have no '{schema.target}'")
    try:
        validated = contract.validate(prepared, lazy=True)
    except SchemaErrors as errors:
        raise _io.BadInputError("data does not match the schema",
                                _summarise_failures(errors.failure_cases)) from None
    counts = validated[schema.target].value_counts()
    if len(counts) < 2:
        raise _io.BadInputError(
            f"single class: every row has {schema.target}={int(counts.index[0])}")
    if int(counts.min()) < min_class_rows:
        raise _io.BadInputError(
            f"too few rows of class {int(counts.idxmin())}: {int(counts.min())} "
            f"(need at least {min_class_rows} to split and evaluate)")
    for column in schema.numeric:
        if np.isinf(validated[column].to_numpy()).any():
            raise _io.BadInputError(f"column '{column}' holds infinite values")
    return validated.reset_index(drop=True)


def _summarise_failures(cases) -> list[str]:
    """One line per column: what was expected, how many rows fail, a few offending values."""
    details = []
    for column, group in cases.groupby("column", dropna=False, sort=True):
        check = str(group["check"].iloc[0])
        if "dtype" in check:
            check = f"expected {check.split('(')[-1].rstrip(')')} values"
        rows = group["index"].dropna().nunique() if "index" in group else len(group)
        examples = ", ".join(repr(v) for v in group["failure_case"].drop_duplicates().head(3))
        details.append(f"column '{column}': {check}; {rows} row(s) fail, e.g. {examples}")
    return details


def split(frame, target: str, *, validation_fraction: float, test_fraction: float, seed: int):
    """Stratified, seeded split; rows keep their input order inside each split."""
    if not (0 < validation_fraction < 1 and 0 < test_fraction < 1
            and validation_fraction + test_fraction < 0.9):
        raise _io.BadInputError("validation_fraction and test_fraction must be in (0, 1) "
                                "and leave at least 10% for training")
    rng = np.random.default_rng(seed)
    labels = frame[target].to_numpy()
    assignment = np.empty(len(frame), dtype=np.int8)
    for label in (0, 1):
        rows = np.flatnonzero(labels == label)
        rows = rows[rng.permutation(rows.size)]
        n_test = max(1, round(rows.size * test_fraction))
        n_validation = max(1, round(rows.size * validation_fraction))
        assignment[rows[:n_test]] = 2
        assignment[rows[n_test:n_test + n_validation]] = 1
        assignment[rows[n_test + n_validation:]] = 0
    return tuple(frame[assignment == i].reset_index(drop=True) for i in range(3))


def build_baseline(train, schema: DatasetSchema, bins: int) -> dict[str, Any]:
    features = {}
    for column in schema.numeric:
        features[column] = drift.numeric_baseline(train[column].to_numpy(dtype=np.float64), bins)
    for column in schema.categorical:
        codes, names = factorize_categories(train[column])
        counts = np.bincount(codes[codes >= 0], minlength=len(names))
        features[column] = drift.categorical_baseline_from_frequencies(
            dict(zip(names, counts.tolist())), int((codes < 0).sum()))
    return {
        "version": 1,
        "bins": bins,
        "rows": int(len(train)),
        "positive_rate": float(train[schema.target].mean()),
        "features": features,
        "schema": {"target": schema.target, "numeric": list(schema.numeric),
                   "categorical": list(schema.categorical), "id_columns": list(schema.id_columns),
                   "columns": list(schema.data_columns)},
    }


def run(input_path: str | Path, output_dir: str | Path, *, schema: DatasetSchema,
        validation_fraction: float, test_fraction: float, seed: int, bins: int,
        min_rows: int = 1000, min_class_rows: int = 30) -> dict[str, Any]:
    source = _io.find_table(input_path)
    frame = _io.read_table(source)
    frame = validate(frame, schema, min_rows=min_rows, min_class_rows=min_class_rows)
    parts = split(frame, schema.target, validation_fraction=validation_fraction,
                  test_fraction=test_fraction, seed=seed)
    output_dir = Path(output_dir)
    for name, part in zip(SPLITS, parts):
        _io.write_table(part, output_dir / name / f"{name}.parquet")
    # Training reads the contract beside its data; SageMaker delivers each channel on its own.
    (output_dir / "train" / "schema.json").write_text(schema.to_json())
    baseline = build_baseline(parts[0], schema, bins)
    manifest = {
        "data": {"file": source.name, "sha256": _io.sha256_file(source), "rows": int(len(frame)),
                 "positive_rate": float(frame[schema.target].mean())},
        "splits": {name: {"rows": int(len(part)), "positives": int(part[schema.target].sum())}
                   for name, part in zip(SPLITS, parts)},
        "parameters": {"validation_fraction": validation_fraction, "test_fraction": test_fraction,
                       "seed": seed, "baseline_bins": bins},
    }
    baseline["data"] = manifest["data"]
    _io.write_json(output_dir / "baseline" / "baseline.json", baseline)
    _io.write_json(output_dir / "baseline" / "manifest.json", manifest)
    return manifest


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--input", default=DEFAULT_INPUT)
    parser.add_argument("--output-dir", default=DEFAULT_OUTPUT)
    parser.add_argument("--schema", default="", help="schema JSON; default: the sample contract")
    parser.add_argument("--target", default="")
    parser.add_argument("--validation-fraction", type=float, default=0.15)
    parser.add_argument("--test-fraction", type=float, default=0.15)
    parser.add_argument("--seed", type=int, default=42)
    parser.add_argument("--baseline-bins", type=int, default=10)
    parser.add_argument("--min-rows", type=int, default=1000)
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    try:
        schema = DatasetSchema.load(args.schema) if args.schema else FRAUD_SAMPLE_SCHEMA
        if args.target:
            schema = schema.with_target(args.target)
        manifest = run(args.input, args.output_dir, schema=schema,
                       validation_fraction=args.validation_fraction,
                       test_fraction=args.test_fraction, seed=args.seed,
                       bins=args.baseline_bins, min_rows=args.min_rows)
    except (_io.BadInputError, ValueError) as exc:
        print(f"bad input: {exc}", file=sys.stderr)
        return 2
    print(f"preprocess: {manifest['data']['rows']} rows -> "
          + ", ".join(f"{k}={v['rows']}" for k, v in manifest["splits"].items()))
    return 0


if __name__ == "__main__":
    sys.exit(main())
