import datetime as dt

from renewal.flow.due import MIRRORED_TRIGGER_TAG, OVERRIDE_DAYS_TAG, is_due
from renewal.model import LifetimeTrigger

NB = dt.datetime(2026, 1, 1, tzinfo=dt.UTC)
EXP = NB + dt.timedelta(days=90)


def test_default_fraction_when_no_trigger():
    before = is_due(now=NB + dt.timedelta(days=59), not_before=NB, expires_on=EXP)
    after = is_due(now=NB + dt.timedelta(days=61), not_before=NB, expires_on=EXP)
    assert not before.due and after.due and after.trigger == "default"
    assert before.renew_at == NB + dt.timedelta(days=60)


def test_policy_days_before_expiry_and_percentage():
    days = (LifetimeTrigger(days_before_expiry=10),)
    assert not is_due(now=EXP - dt.timedelta(days=11), not_before=NB, expires_on=EXP, policy_triggers=days).due
    assert is_due(now=EXP - dt.timedelta(days=9), not_before=NB, expires_on=EXP, policy_triggers=days).due
    pct = (LifetimeTrigger(lifetime_percentage=50),)
    decision = is_due(now=NB + dt.timedelta(days=46), not_before=NB, expires_on=EXP, policy_triggers=pct)
    assert decision.due and decision.trigger == "policy"


def test_override_tag_beats_policy_and_mirrored_tag_stands_in_for_policy():
    pct = (LifetimeTrigger(lifetime_percentage=99),)
    now = EXP - dt.timedelta(days=20)
    assert is_due(now=now, not_before=NB, expires_on=EXP, tags={OVERRIDE_DAYS_TAG: "30"}, policy_triggers=pct).due
    mirrored = is_due(now=now, not_before=NB, expires_on=EXP, tags={MIRRORED_TRIGGER_TAG: "days_before_expiry=30"})
    assert mirrored.due and mirrored.trigger == "policy-tag"


def test_expired_and_unknown_expiry():
    assert is_due(now=EXP + dt.timedelta(seconds=1), not_before=NB, expires_on=EXP).trigger == "expired"
    assert not is_due(now=EXP, not_before=NB, expires_on=None).due


def test_bad_override_tag_falls_back():
    decision = is_due(now=NB + dt.timedelta(days=1), not_before=NB, expires_on=EXP, tags={OVERRIDE_DAYS_TAG: "soon"})
    assert decision.trigger == "default" and not decision.due
