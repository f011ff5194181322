"""Deterministic, fraud-like sample data with controllable drift.

Rows are card transactions; about 3% are fraud. Fraud is driven by a latent risk score built from
behavioural features (velocity, amount against the usual amount, device and IP risk, merchant
history), so a good model reaches a useful but imperfect AUPR. Three kinds of drift:

- covariate: the feature distributions move (bigger amounts, more online traffic, riskier IPs),
  the rule linking features to fraud stays;
- prior: the share of fraud changes, features given the class stay;
- concept: the rule changes (fraud moves to patterns the old model scores as safe).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

import numpy as np

DriftKind = Literal["none", "covariate", "prior", "concept"]
DRIFT_KINDS: tuple[str, ...] = ("none", "covariate", "prior", "concept")

MERCHANT_CATEGORIES = ("grocery", "fuel", "restaurants", "retail", "electronics", "travel",
                       "gaming", "digital_goods", "jewelry", "money_transfer")
MERCHANT_WEIGHTS = (0.22, 0.12, 0.16, 0.18, 0.08, 0.06, 0.05, 0.07, 0.02, 0.04)
MERCHANT_RISK = (-0.6, -0.4, -0.5, -0.2, 0.5, 0.3, 0.6, 0.8, 0.9, 1.0)
CHANNELS = ("pos", "online", "atm", "mobile_wallet")
CHANNEL_WEIGHTS = (0.55, 0.30, 0.05, 0.10)
CHANNEL_RISK = (-0.5, 0.6, 0.1, 0.2)
COUNTRIES = ("US", "GB", "DE", "FR", "CA", "BR", "IN", "NG", "RU", "OTHER")
COUNTRY_WEIGHTS = (0.55, 0.08, 0.07, 0.06, 0.06, 0.05, 0.05, 0.02, 0.02, 0.04)
COUNTRY_RISK = (-0.3, -0.2, -0.2, -0.2, -0.2, 0.4, 0.3, 0.9, 0.8, 0.5)
CARD_TYPES = ("debit", "credit", "prepaid", "corporate")
CARD_WEIGHTS = (0.50, 0.38, 0.07, 0.05)
CARD_RISK = (0.0, 0.1, 0.8, -0.3)


@dataclass(frozen=True)
class DriftSpec:
    kind: DriftKind = "none"
    strength: float = 1.0
    """0 = no change, 1 = the documented shift; values in between interpolate."""


def generate(rows: int = 100_000, *, seed: int = 42, positive_rate: float = 0.03,
             drift: DriftSpec = DriftSpec()):
    """A pandas DataFrame in the FRAUD_SAMPLE_SCHEMA contract; same arguments, same frame."""
    import pandas as pd

    if rows < 1:
        raise ValueError("rows must be positive")
    if not 0.001 <= positive_rate <= 0.5:
        raise ValueError("positive_rate must be between 0.001 and 0.5")
    if drift.kind not in DRIFT_KINDS:
        raise ValueError(f"unknown drift kind '{drift.kind}'; use one of {', '.join(DRIFT_KINDS)}")
    covariate = drift.strength if drift.kind == "covariate" else 0.0
    concept = drift.strength if drift.kind == "concept" else 0.0
    columns, risk = _simulate(rows, seed, covariate=covariate, concept=concept)

    rate = positive_rate
    if drift.kind == "prior":
        rate = min(0.5, positive_rate * (1 + 2.0 * drift.strength))
    # The offset is set on the undrifted population, so covariate and concept drift move the
    # fraud rate only as much as the features themselves do.
    reference = risk if covariate == 0 and concept == 0 else _simulate(
        min(rows, 50_000), seed, covariate=0.0, concept=0.0)[1]
    offset = _offset_for_rate(reference, rate)
    label_rng = np.random.default_rng([seed, 1])
    probability = 1 / (1 + np.exp(-(risk - offset) * _LINK_SCALE))
    columns["is_fraud"] = (label_rng.random(rows) < probability).astype(np.int64)

    # Missing values as real feeds have them: no device score for ATM and some other traffic,
    # distance unknown when geolocation fails, no 30-day average for some new accounts,
    # some countries unresolved.
    gaps = np.random.default_rng([seed, 2])
    channel = columns["channel"]
    columns["device_trust_score"] = np.where(
        (channel == "atm") | (gaps.random(rows) < 0.04), np.nan, columns["device_trust_score"])
    columns["distance_from_home_km"] = np.where(
        gaps.random(rows) < 0.02, np.nan, columns["distance_from_home_km"])
    columns["avg_amount_30d"] = np.where(
        (columns["account_age_days"] < 30) & (gaps.random(rows) < 0.5), np.nan,
        columns["avg_amount_30d"])
    columns["amount_to_avg_ratio"] = np.round(columns["amount"] / columns["avg_amount_30d"], 4)
    country = columns["country"].copy()
    country[gaps.random(rows) < 0.01] = None
    columns["country"] = country

    order = ["transaction_id", "amount", "account_age_days", "txn_count_1h", "txn_count_24h",
             "avg_amount_30d", "amount_to_avg_ratio", "distance_from_home_km", "hour_of_day",
             "device_trust_score", "ip_risk_score", "failed_logins_24h", "merchant_fraud_rate",
             "merchant_category", "channel", "country", "card_type", "is_fraud"]
    columns["transaction_id"] = np.asarray(
        [f"tx-{seed:04d}-{i:08d}" for i in range(rows)], dtype=object)
    return pd.DataFrame({name: columns[name] for name in order})


_LINK_SCALE = 3.0


def _simulate(rows: int, seed: int, *, covariate: float, concept: float):
    """Feature columns and the latent fraud risk of each row."""
    rng = np.random.default_rng(seed)
    s = covariate
    merchant = rng.choice(len(MERCHANT_CATEGORIES), rows,
                          p=_tilt(MERCHANT_WEIGHTS, MERCHANT_RISK, s))
    channel = rng.choice(len(CHANNELS), rows, p=_tilt(CHANNEL_WEIGHTS, CHANNEL_RISK, s))
    country = rng.choice(len(COUNTRIES), rows, p=_tilt(COUNTRY_WEIGHTS, COUNTRY_RISK, s))
    card = rng.choice(len(CARD_TYPES), rows, p=CARD_WEIGHTS)

    account_age_days = np.round(rng.gamma(2.0, 400.0, rows) * (1 - 0.5 * s), 0)
    avg_amount_30d = np.round(rng.lognormal(3.6 + 0.3 * s, 0.7, rows), 2)
    txn_count_24h = rng.poisson(3.0 * (1 + 0.8 * s), rows).astype(float)
    txn_count_1h = np.minimum(rng.poisson(0.4 * (1 + 1.5 * s), rows), txn_count_24h)
    hour_of_day = (rng.normal(14 + 2 * s, 4.5, rows) % 24).round(0)
    distance_from_home_km = np.round(rng.lognormal(2.0 + 0.6 * s, 1.2, rows), 1)
    device_trust_score = np.clip(rng.beta(6 - 2 * s, 2, rows), 0, 1).round(4)
    ip_risk_score = np.clip(rng.beta(1.5, 8 - 3 * s, rows), 0, 1).round(4)
    failed_logins_24h = rng.poisson(0.15 * (1 + 2 * s), rows).astype(float)
    merchant_risk = np.asarray(MERCHANT_RISK)[merchant]
    merchant_fraud_rate = np.clip(
        0.004 * np.exp(merchant_risk) * rng.lognormal(0, 0.35, rows), 0, 1).round(5)
    amount = np.round(avg_amount_30d * rng.lognormal(0.0, 0.8, rows), 2)
    night = (hour_of_day <= 5) | (hour_of_day >= 23)
    daytime = (hour_of_day >= 10) & (hour_of_day <= 16)

    c = concept
    # Concept drift: fraud moves to trusted devices, established accounts and daytime
    # purchases, the patterns the old rule scores as safe.
    risk = (0.55 * np.log1p(txn_count_1h) + 0.25 * np.log1p(txn_count_24h)
            + 0.9 * np.log(amount / avg_amount_30d).clip(-2, 4)
            + (1 - c) * 1.1 * (account_age_days < 60) + c * 1.1 * (account_age_days > 900)
            + (1 - 2 * c) * -2.4 * (device_trust_score - 0.75)
            + (1 - c) * 4.0 * ip_risk_score
            + 0.5 * failed_logins_24h
            + merchant_risk + 60 * merchant_fraud_rate
            + np.asarray(CHANNEL_RISK)[channel]
            + 0.7 * np.asarray(COUNTRY_RISK)[country]
            + np.asarray(CARD_RISK)[card]
            + (1 - c) * 0.6 * night + c * 0.6 * daytime
            + 0.35 * np.log1p(distance_from_home_km / 50)
            + rng.normal(0, 0.5, rows))
    columns = {
        "amount": amount,
        "account_age_days": account_age_days,
        "txn_count_1h": txn_count_1h.astype(float),
        "txn_count_24h": txn_count_24h,
        "avg_amount_30d": avg_amount_30d,
        "distance_from_home_km": distance_from_home_km,
        "hour_of_day": hour_of_day,
        "device_trust_score": device_trust_score,
        "ip_risk_score": ip_risk_score,
        "failed_logins_24h": failed_logins_24h,
        "merchant_fraud_rate": merchant_fraud_rate,
        "merchant_category": np.asarray(MERCHANT_CATEGORIES, dtype=object)[merchant],
        "channel": np.asarray(CHANNELS, dtype=object)[channel],
        "country": np.asarray(COUNTRIES, dtype=object)[country],
        "card_type": np.asarray(CARD_TYPES, dtype=object)[card],
    }
    return columns, risk


def _tilt(weights, risk, strength: float) -> np.ndarray:
    """Shift category weights towards the risky categories by `strength`."""
    tilted = np.asarray(weights) * np.exp(strength * np.asarray(risk))
    return tilted / tilted.sum()


def _offset_for_rate(risk: np.ndarray, rate: float) -> float:
    """Bisect the logistic offset so the expected share of positives equals `rate`."""
    lo, hi = float(risk.min()) - 20, float(risk.max()) + 20
    for _ in range(60):
        mid = (lo + hi) / 2
        expected = float(np.mean(1 / (1 + np.exp(-(risk - mid) * _LINK_SCALE))))
        lo, hi = (mid, hi) if expected > rate else (lo, mid)
    return (lo + hi) / 2
