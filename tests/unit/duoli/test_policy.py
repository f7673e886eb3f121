from __future__ import annotations

import dataclasses
import itertools
import json
from collections.abc import Callable
from importlib import resources
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from duoli.errors import DuoliError
from duoli.policy import (
    REASONS,
    CreditState,
    CreditView,
    Decision,
    Policy,
    PolicyError,
    carry_forward,
    decide,
    decision_id,
    decision_record,
    load_policy,
    parse_policy,
)

DAY = 86_400.0
DEFAULT = load_policy()

ViewFactory = Callable[..., CreditView]
PolicyFactory = Callable[..., Policy]


@pytest.fixture
def make_view() -> ViewFactory:
    """``make_view(pd=0.3)``: a healthy, unfrozen account on default terms, overridable."""

    def build(**fields: Any) -> CreditView:
        healthy: dict[str, Any] = {
            "account_id": "acc-1",
            "at": 1000 * DAY,
            "credit_limit": 5000.0,
            "apr": 0.09,
            "pd": 0.01,
            "fraud_score": 0.05,
            "on_time_streak": 6,
            "utilisation": 0.4,
        }
        return CreditView(**(healthy | fields))

    return build


@pytest.fixture
def make_policy() -> PolicyFactory:
    """``make_policy(apr_cap=0.18)``: the default policy with some parameters changed."""

    def build(**changes: Any) -> Policy:
        return Policy.model_validate_json(json.dumps(DEFAULT.model_dump() | changes))

    return build


def next_view(view: CreditView, decision: Decision, **signals: Any) -> CreditView:
    """The engine's next view of the account: the carried state plus the new event."""
    state = dataclasses.asdict(carry_forward(view, decision))
    fresh = {"confirmed_fraud": False, "rule_hits": ()}
    return dataclasses.replace(view, **(state | fresh | signals))


def run(
    policy: Policy, view: CreditView, steps: list[dict[str, Any]]
) -> list[tuple[CreditView, Decision]]:
    """Decide on ``view``, then on each step in turn (``days`` advances event time)."""
    history = [(view, decide(policy, view))]
    for step in steps:
        previous, decision = history[-1]
        signals = dict(step)
        signals["at"] = previous.at + signals.pop("days", 1) * DAY
        current = next_view(previous, decision, **signals)
        history.append((current, decide(policy, current)))
    return history


# --- The default policy file ------------------------------------------------------------


def test_the_packaged_policy_loads_and_names_every_parameter_with_a_comment():
    text = resources.files("duoli").joinpath("policies/default.yaml").read_text("utf-8")
    assert DEFAULT.version and DEFAULT.apr_cap == 0.24
    for name in Policy.model_fields:
        line = next((ln for ln in text.splitlines() if ln.startswith(f"{name}:")), None)
        assert line is not None, f"{name} is missing from default.yaml"
        assert "#" in line or name in ("apr_bands", "unfreeze_after_fraud_days"), name


def test_a_policy_file_path_is_read(tmp_path):
    path = tmp_path / "policy.yaml"
    path.write_text(resources.files("duoli").joinpath("policies/default.yaml").read_text("utf-8"))
    assert load_policy(path) == DEFAULT
    assert load_policy(str(path)) == DEFAULT


# --- Example histories ---------------------------------------------------------------


def test_a_reliable_borrower_grows_step_by_step_and_stops_at_the_max(make_view):
    steps = [{"days": 31}] * 14
    limits = [d.new_limit for _, d in run(DEFAULT, make_view(), steps)]
    assert limits[:4] == [6000.0, 7200.0, 8640.0, 10368.0]
    assert all(b <= a * 1.2 for a, b in itertools.pairwise(limits))
    assert limits[-1] == DEFAULT.max_limit == limits[-2]
    final = run(DEFAULT, make_view(), steps)[-1][1]
    assert final.action == "hold" and "AT_MAX_LIMIT" in final.reasons and not final.changed


def test_no_increase_inside_the_cooldown(make_view):
    history = run(DEFAULT, make_view(), [{"days": 29.99}, {"days": 0.02}])
    assert [d.action for _, d in history] == ["increase", "hold", "increase"]
    assert not history[1][1].changed


def test_a_delinquent_borrower_is_cut_then_frozen(make_view):
    steps = [
        {"days_past_due": 16, "on_time_streak": 0},
        {"days_past_due": 20},
        {"days_past_due": 24, "days": 6},
        {"days_past_due": 31},
    ]
    history = run(DEFAULT, make_view(credit_limit=10_000.0, days_past_due=5), steps)
    actions = [d.action for _, d in history]
    assert actions == ["hold", "decrease", "hold", "decrease", "freeze"]
    assert history[1][1].new_limit == 8000.0 and history[1][1].reasons == ("DAYS_PAST_DUE",)
    assert "DECREASE_COOLDOWN" in history[2][1].reasons and not history[2][1].changed
    assert history[3][1].new_limit == 6400.0
    frozen = history[4][1]
    assert frozen.frozen and frozen.new_limit == 6400.0 and "DAYS_PAST_DUE_SEVERE" in frozen.reasons


def test_a_confirmed_fraud_freezes_at_once_and_stays_frozen(make_view):
    steps: list[dict[str, Any]] = [{"confirmed_fraud": True}] + [{"days": 60}] * 5
    history = run(DEFAULT, make_view(), steps)
    first = history[1][1]
    assert first.action == "freeze" and first.reasons[0] == "CONFIRMED_FRAUD"
    assert first.changed and first.new_limit == history[0][1].new_limit
    assert all(d.frozen and d.action == "hold" for _, d in history[2:])


def test_after_a_confirmed_fraud_the_policy_may_unfreeze_once_enough_time_passed(
    make_view, make_policy
):
    policy = make_policy(unfreeze_after_fraud_days=90)
    steps: list[dict[str, Any]] = [{"confirmed_fraud": True}, {"days": 89}, {"days": 1}]
    actions = [d.action for _, d in run(policy, make_view(), steps)]
    assert actions == ["increase", "freeze", "hold", "unfreeze"]


def test_a_critical_fraud_score_freezes_and_a_quiet_week_unfreezes(make_view):
    steps: list[dict[str, Any]] = [
        {"fraud_score": 0.95},
        {"days": 3, "fraud_score": 0.1},
        {"days": 4},
    ]
    history = run(DEFAULT, make_view(last_increase_at=999 * DAY), steps)
    assert [d.action for _, d in history] == ["hold", "freeze", "hold", "unfreeze"]
    assert history[1][1].reasons == ("FRAUD_SCORE_CRITICAL",)
    assert history[3][1].reasons == ("RISK_CLEARED",) and not history[3][1].frozen


def test_a_blocking_rule_freezes_and_a_severe_rule_hit_stops_an_increase(make_view):
    block = decide(DEFAULT, make_view(rule_hits=(("r1", "block", "medium"),)))
    severe = decide(DEFAULT, make_view(rule_hits=(("r2", "review", "high"),)))
    mild = decide(DEFAULT, make_view(rule_hits=(("r3", "alert", "low"),)))
    assert (block.action, block.reasons) == ("freeze", ("RULE_BLOCK",))
    assert (severe.action, mild.action) == ("hold", "increase")


def test_a_frozen_account_never_increases_even_when_healthy(make_view):
    view = make_view(frozen=True, frozen_at=1000 * DAY)
    decision = decide(DEFAULT, view)
    assert decision.action == "hold" and decision.new_limit == view.credit_limit


def test_rising_pd_moves_the_apr_up_its_bands_but_never_past_the_cap(make_view, make_policy):
    pds = [0.01, 0.03, 0.07, 0.12, 0.3, 0.9, 1.0]
    steps = [{"pd": pd, "days": 30} for pd in pds[1:]]  # each after the rate's review
    default = [d.new_apr for _, d in run(DEFAULT, make_view(pd=pds[0]), steps)]
    assert default == [0.09, 0.12, 0.16, 0.2, 0.24, 0.24, 0.24]
    capped = [d.new_apr for _, d in run(make_policy(apr_cap=0.18), make_view(), steps)]
    assert capped == [0.09, 0.12, 0.16, 0.18, 0.18, 0.18, 0.18]


def test_a_pd_wavering_at_a_band_edge_does_not_reprice_back_and_forth(make_view):
    pds = [0.045, 0.055, 0.045, 0.065, 0.045, 0.035, 0.045]  # the 0.12/0.16 edge is 0.05
    steps = [{"pd": pd, "days": 30} for pd in pds[1:]]
    rates = [d.new_apr for _, d in run(DEFAULT, make_view(pd=pds[0]), steps)]
    assert DEFAULT.apr_band_margin == 0.01
    assert rates == [0.12, 0.12, 0.12, 0.16, 0.16, 0.12, 0.12]


def test_a_rate_is_reviewed_at_most_once_per_review_period_but_the_cap_always_holds(
    make_view, make_policy
):
    steps = [{"pd": 0.3, "days": 10}, {"pd": 0.3, "days": 19}, {"pd": 0.3, "days": 1}]
    history = run(DEFAULT, make_view(pd=0.03, apr=0.2), steps)
    assert DEFAULT.apr_review_days == 30
    assert [d.new_apr for _, d in history] == [0.12, 0.12, 0.12, 0.24]  # due after 30 days
    capped = make_policy(apr_cap=0.1)
    view = make_view(pd=0.03, apr=0.12, last_apr_change_at=1000 * DAY - DAY)
    assert decide(capped, view).new_apr == 0.1  # an out-of-bounds rate never waits


def test_an_apr_already_above_the_cap_is_brought_down_to_it(make_view):
    decision = decide(DEFAULT, make_view(apr=0.36, pd=0.5))
    assert decision.new_apr == 0.24 and "APR_CAPPED" in decision.reasons and decision.changed


def test_a_sharp_pd_rise_cuts_the_limit_and_raises_the_apr(make_view):
    decision = decide(DEFAULT, make_view(credit_limit=10_000.0, last_pd=0.01, pd=0.12))
    assert decision.action == "decrease" and decision.reasons == ("PD_ROSE", "APR_UP")
    assert (decision.new_limit, decision.new_apr) == (8000.0, 0.2)


def test_a_hold_where_nothing_moves_is_not_a_change(make_view):
    decision = decide(DEFAULT, make_view(on_time_streak=0))
    assert decision.action == "hold" and decision.reasons == () and not decision.changed


def test_limits_outside_the_policy_are_brought_inside(make_view):
    high = decide(DEFAULT, make_view(credit_limit=80_000.0))
    low = decide(DEFAULT, make_view(credit_limit=100.0, on_time_streak=0))
    assert (high.action, high.new_limit, high.reasons) == ("hold", 50_000.0, ("LIMIT_ABOVE_MAX",))
    assert (low.action, low.new_limit, low.reasons) == ("hold", 500.0, ("LIMIT_BELOW_MIN",))


def test_rounding_never_breaks_a_bound(make_view, make_policy):
    stepped = decide(DEFAULT, make_view(credit_limit=4999.99))
    assert stepped.new_limit == 5999.0  # rounded down: a step never exceeds 20%
    cut = decide(DEFAULT, make_view(credit_limit=4999.99, days_past_due=20))
    assert cut.new_limit == 4000.0  # rounded up
    bands = [{"pd_below": 1.0, "apr": 0.123456}]
    assert decide(make_policy(apr_bands=bands), make_view()).new_apr == 0.1235
    tight = make_policy(apr_bands=bands, apr_cap=0.12345)
    assert decide(tight, make_view()).new_apr == 0.12345


def test_every_reason_code_has_a_sentence(make_view):
    decision = decide(DEFAULT, make_view(apr=0.2))
    assert decision.explanations == tuple(REASONS[c] for c in decision.reasons)
    assert all(text.endswith(".") for text in REASONS.values())


def test_the_decision_id_is_deterministic_and_names_its_inputs():
    first = decision_id("acc-1", "evt-1", "v1")
    assert first == decision_id("acc-1", "evt-1", "v1") and len(first) == 32
    others = {decision_id("acc-1", "evt-1", "v2"), decision_id("acc-1", "evt-2", "v1")}
    assert len(others | {first, decision_id("acc-2", "evt-1", "v1")}) == 4
    assert decision_id("a", "b-c", "v") != decision_id("a-b", "c", "v")


def test_the_published_record_carries_what_the_limit_service_needs(make_view):
    view = make_view(at=0.0)
    record = decision_record(view, decide(DEFAULT, view), "evt-9")
    assert record["decision_id"] == decision_id("acc-1", "evt-9", DEFAULT.version)
    assert (record["old_limit"], record["new_limit"]) == (5000.0, 6000.0)
    assert (record["old_apr"], record["new_apr"]) == (0.09, 0.09)
    assert record["effective_at"] == "1970-01-01T00:00:00Z"
    assert record["reasons"] == ["ON_TIME_STREAK", "HEALTHY_UTILISATION", "LOW_RISK"]
    assert json.loads(json.dumps(record)) == record


def test_the_policy_cannot_see_protected_attributes():
    seen = {f.name for f in dataclasses.fields(CreditView)}
    protected = {"age", "gender", "sex", "ethnicity", "region", "city", "device_id", "device"}
    assert not seen & protected


# --- Bad policy files ----------------------------------------------------------------


def _default_text() -> str:
    return resources.files("duoli").joinpath("policies/default.yaml").read_text("utf-8")


@pytest.mark.parametrize(
    ("edit", "words"),
    [
        (lambda t: t.replace("min_limit: 500 ", "min_limit: 90000 "), "min_limit must not exceed"),
        (lambda t: t.replace("max_step_pct: 20 ", "max_step_pct: 150 "), "max_step_pct"),
        (lambda t: t.replace("max_step_pct: 20 ", "max_step_pct: 0 "), "max_step_pct"),
        (lambda t: t.replace("apr_cap: 0.24", "apr_cap: 1.5"), "apr_cap"),
        (lambda t: t.replace("apr_floor: 0.06", "apr_floor: 0.3"), "apr_floor must not exceed"),
        (lambda t: t.replace("pd_below: 0.05,", "pd_below: 0.01,"), "strictly increasing"),
        (lambda t: t.replace("apr: 0.16}", "apr: 0.10}"), "must not lower the rate"),
        (lambda t: t.replace("freeze_days_past_due: 30", "freeze_days_past_due: 10"), "exceed"),
        (lambda t: t.replace("min_limit: 500", "min_limit: '500'"), "min_limit"),
        (lambda t: t.replace("min_limit:", "minimum_limit:"), "minimum_limit"),
        (lambda t: t.replace("min_limit: 500", ""), "min_limit: Field required"),
        (lambda t: t + "max_limit: 9000\n", "'max_limit' given twice"),
        (lambda t: t + "apr_bands: [\n", "invalid YAML at line"),
        (lambda t: "- just\n- a list\n", "a mapping of parameters"),
    ],
)
def test_a_bad_policy_file_gives_a_clear_error(tmp_path, edit, words):
    path = tmp_path / "bad.yaml"
    edited = edit(_default_text())
    assert edited != _default_text()
    path.write_text(edited)
    with pytest.raises(PolicyError) as caught:
        load_policy(path)
    assert isinstance(caught.value, DuoliError)
    assert words in str(caught.value) and str(path) in str(caught.value)


def test_a_missing_policy_file_gives_a_clear_error(tmp_path):
    with pytest.raises(PolicyError, match="cannot be read"):
        load_policy(tmp_path / "nope.yaml")


def test_parse_policy_names_its_source():
    with pytest.raises(PolicyError, match="analyst-draft"):
        parse_policy("version: x\n", "analyst-draft")


# --- Properties over generated account histories ----------------------------------------

policies = st.builds(
    lambda step, low, width, cooldown, cap: Policy.model_validate(
        DEFAULT.model_dump()
        | {
            "max_step_pct": step,
            "min_limit": low,
            "max_limit": low + width,
            "increase_cooldown_days": cooldown,
            "apr_cap": cap,
        }
    ),
    step=st.sampled_from([1.0, 7.5, 20.0, 50.0, 100.0]),
    low=st.integers(1, 2000),
    width=st.integers(0, 60_000),
    cooldown=st.sampled_from([0.0, 1.0, 30.0]),
    cap=st.sampled_from([0.12, 0.18, 0.24]),
)
rule_hits = st.sampled_from(
    [(), (), (("r1", "alert", "low"),), (("r2", "review", "high"),), (("r3", "block", "critical"),)]
)
anything = st.fixed_dictionaries(
    {
        "days": st.sampled_from([0.0, 0.5, 1.0, 7.0, 29.9, 30.0, 31.0, 90.0]),
        "pd": st.sampled_from([0.005, 0.03, 0.07, 0.15, 0.25, 0.6]) | st.floats(0, 1),
        "fraud_score": st.sampled_from([0.01, 0.2, 0.5, 0.95]) | st.floats(0, 1),
        "days_past_due": st.sampled_from([0, 0, 0, 3, 16, 45]),
        "on_time_streak": st.integers(0, 12),
        "utilisation": st.floats(0, 1.2),
        "confirmed_fraud": st.sampled_from([False] * 9 + [True]),
        "rule_hits": rule_hits,
    }
)
# Half the events are of a borrower who qualifies for an increase, so that histories
# often reach the cooldown and the bounds instead of holding all along.
healthy = st.fixed_dictionaries(
    {
        "days": st.sampled_from([0.0, 1.0, 7.0, 29.9, 30.0, 31.0]),
        "pd": st.floats(0, 0.05),
        "fraud_score": st.floats(0, 0.3),
        "days_past_due": st.just(0),
        "on_time_streak": st.integers(3, 12),
        "utilisation": st.floats(0.1, 0.8),
    }
)
events = healthy | anything


def check_step(policy: Policy, view: CreditView, decision: Decision) -> None:
    old, new = view.credit_limit, decision.new_limit
    assert policy.min_limit <= new <= policy.max_limit
    assert policy.apr_floor <= decision.new_apr <= policy.apr_cap
    # A step is at most max_step_pct of the old limit. The one allowance: an old limit
    # outside [min_limit, max_limit] may jump into the bounds (clamping wins), and the
    # 1e-6 absorbs float error in old * pct.
    clamped = min(max(old, policy.min_limit), policy.max_limit)
    allowed = max(old * policy.max_step_pct / 100, abs(clamped - old))
    assert abs(new - old) <= allowed + 1e-6
    rose = new > old and old >= policy.min_limit
    if rose:
        assert decision.action == "increase"
    if decision.action == "increase":
        assert not view.frozen and new > old
        since = view.last_increase_at
        assert since is None or view.at - since >= policy.increase_cooldown_days * DAY
    if view.frozen:
        assert decision.action != "increase" and not rose
    if view.confirmed_fraud:
        assert decision.frozen and decision.action == "freeze"
    assert decision.frozen == (
        decision.action == "freeze" or (view.frozen and decision.action != "unfreeze")
    )
    assert all(code in REASONS for code in decision.reasons)
    assert not decision.changed or decision.reasons, "an emitted decision explains itself"


@settings(max_examples=200, deadline=None)
@given(
    policy=policies,
    start_limit=st.sampled_from([1.0, 3000.0, 5000.0, 120_000.0]) | st.floats(1, 100_000),
    start_apr=st.floats(0, 0.5),
    history=st.lists(events, min_size=1, max_size=30),
)
def test_every_decision_stays_within_policy(policy, start_limit, start_apr, history):
    view = CreditView("acc-p", at=0.0, credit_limit=start_limit, apr=start_apr, pd=0.02)
    decision = decide(policy, view)
    check_step(policy, view, decision)
    for event in history:
        signals = dict(event)
        signals["at"] = view.at + signals.pop("days") * DAY
        view = next_view(view, decision, **signals)
        decision = decide(policy, view)
        check_step(policy, view, decision)


def test_carry_forward_records_when_things_happened(make_view):
    view = make_view(confirmed_fraud=True, last_pd=0.01)
    state = carry_forward(view, decide(DEFAULT, view))
    assert state == CreditState(
        credit_limit=5000.0,
        apr=0.09,
        frozen=True,
        frozen_at=view.at,
        last_increase_at=None,
        last_decrease_at=None,
        last_apr_change_at=None,  # the rate stayed at 0.09
        last_pd=0.01,
        last_fraud_at=view.at,
    )
