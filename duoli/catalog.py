"""The names a rule may read: event fields and the engine's features, each with its meaning.

This catalog is the contract between the feature code (``duoli.features``) and the rule
language (``rules``): a rule that names anything else is refused at load time.
"""

from __future__ import annotations

__all__ = ["EVENT_FIELDS", "FEATURES", "KNOWN_NAMES"]

EVENT_FIELDS: dict[str, str] = {
    "event_type": "the event's type: transaction or repayment",
    "account_id": "the account's id",
    "amount": "the event's amount in yuan",
    "kind": "transaction kind: purchase, cash_withdrawal or loan_drawdown",
    "currency": "ISO currency code, CNY by default",
    "merchant_id": "the merchant's id",
    "merchant_category": "the merchant's category, '' when not given",
    "channel": "app, web, pos... '' when not given",
    "device_id": "the device's id, '' when not given",
    "city": "the city, '' when not given",
    "hour_of_day": "hour of the event in UTC, 0..23",
}

_WINDOWS = ("1h", "24h", "7d", "30d")

FEATURES: dict[str, str] = {
    **{
        f"tx_count_{w}": f"transactions of the account in the last {w}, this one included"
        for w in _WINDOWS
    },
    **{
        f"tx_sum_{w}": f"yuan spent by the account in the last {w}, this one included"
        for w in _WINDOWS
    },
    **{f"distinct_merchants_{w}": f"distinct merchants in the last {w}" for w in _WINDOWS},
    **{f"distinct_devices_{w}": f"distinct devices in the last {w}" for w in _WINDOWS},
    **{f"distinct_cities_{w}": f"distinct cities in the last {w}" for w in _WINDOWS},
    "small_tx_count_1h": "transactions under 20 yuan in the last hour",
    "small_tx_count_24h": "transactions under 20 yuan in the last 24h",
    "cash_withdrawal_count_24h": "cash withdrawals in the last 24h, this one included",
    "cash_withdrawal_sum_24h": "yuan withdrawn as cash in the last 24h, this one included",
    "cash_out_sum_7d": (
        "yuan withdrawn as cash or drawn down to the wallet in the last 7 days, this one included"
    ),
    "typical_amount": (
        "the account's typical amount (geometric moving mean, which one outsized amount "
        "moves only a clipped step), 0 before any"
    ),
    "amount_ratio": "amount divided by the typical amount (1 before any history)",
    "amount_zscore": "deviations of the log amount above the account's norm (0 before history)",
    "seconds_since_prev_tx": "seconds since the previous transaction (infinite for the first)",
    "prior_tx_count": "transactions the account made before this one, all time",
    "peak_fraud_score": (
        "the account's highest fraud_score so far, fading by 1/e every hour (0 before any; "
        "in a rules backtest, of the rules scores)"
    ),
    "is_new_device": "the device was not seen in the last 30 days (false on the first transaction)",
    "is_new_city": "the city was not seen in the last 30 days (false on the first transaction)",
    "is_new_merchant": "the merchant was not seen in the last 30 days",
    "credit_limit": "the account's credit limit",
    "apr": "the account's annual rate, a fraction",
    "balance": "drawn and not yet repaid, before this event",
    "utilisation": "balance / credit_limit, before this event",
    "utilisation_after": "(balance + amount) / credit_limit for a transaction",
    "account_age_days": "days since the credit line opened (0 for never-opened accounts)",
    "is_opened": "the account has a credit_line_opened event",
    "outstanding_installments": "installments not fully repaid",
    "overdue_installments": "installments past due_at plus grace and not fully repaid",
    "days_past_due": "days the oldest overdue installment is past due (0 if none)",
    "on_time_streak": "installments repaid in full by their due time, in a row",
    "settled_installments": "installments the account has repaid in full, ever",
    "settled_late": "of those, repaid in full only after their due time",
    "amount_owed": "yuan still owed on the outstanding installments",
    "repayment_ratio": "for a repayment: amount / what its installment still owed (1 if none)",
    "merchant_tx_count_7d": "the merchant's transactions, all accounts, in the 7 days before today",
    "merchant_amount_7d": "the merchant's volume in yuan, all accounts, 7 days before today",
    "merchant_labelled_30d": "the merchant's transactions labelled in the 30 days before today",
    "merchant_frauds_30d": "of those, confirmed frauds",
    "merchant_fraud_share": "merchant_frauds_30d / merchant_labelled_30d (0 with no labels)",
    "merchant_frauds_7d": "the merchant's frauds labelled in the 7 days before today",
    "merchant_frauds_1d": "the merchant's frauds labelled yesterday",
    "merchant_tx_count_1d": "the merchant's transactions, all accounts, yesterday",
    "merchant_amount_1d": "the merchant's volume in yuan, all accounts, yesterday",
    "merchant_tx_count_30d": "the merchant's transactions, all accounts, 30 days before today",
    "merchant_amount_30d": "the merchant's volume in yuan, all accounts, 30 days before today",
    "merchant_excess_3d": (
        "how far purchases at the merchant lay above each account's usual amounts, in spreads,"
        " on average over the 3 days before today (as if 3 more sales were ordinary ones)"
    ),
    "merchant_excess_7d": "the same over the 7 days before today",
    "confirmed_frauds": "fraud labels the account has received, ever",
    "days_since_confirmed_fraud": "days since the account's last fraud label (-1 if none)",
}

KNOWN_NAMES: frozenset[str] = frozenset(EVENT_FIELDS) | frozenset(FEATURES)
