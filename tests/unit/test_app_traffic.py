"""The arithmetic of the app-errors / app-slow drifts (provision/drifts/app_traffic.py): how many
requests break the 5-minute window, and when a diluted window stays compliant."""

from provision.drifts import app_traffic as t


def window(total, errors=0.0, slow=0.0, lagging=None, p95=0.01, since_drift=None):
    return {"total": total, "errors": errors, "slow": slow, "lagging": slow if lagging is None else lagging,
            "p95": p95, "since_drift": total if since_drift is None else since_drift}


def test_missing_makes_the_share_of_the_window_with_a_few_spare():
    now = window(1000, slow=10)
    add = t.missing(now, "slow", 0.065)
    assert (now["slow"] + add) / (now["total"] + add) >= 0.065
    assert (now["slow"] + add - 4) / (now["total"] + add - 4) < 0.065
    assert t.missing(window(100, slow=50), "slow", 0.065) == 3  # already more than enough


def test_broken_needs_the_p95_over_the_threshold_without_errors():
    assert t.broken("slow", window(1000, slow=70, p95=1.3))
    assert not t.broken("slow", window(1000, slow=70, p95=1.05))  # too close to call
    assert not t.broken("slow", window(1000, errors=10, slow=70, p95=1.3))  # the error rate broke too
    assert t.broken("errors", window(1000, errors=20))
    assert not t.broken("errors", window(1000, errors=10))
    assert not t.broken("errors", window(1000, errors=20, p95=1.2))


def test_healed_ignores_the_requests_before_the_drift_which_leave_the_window_first():
    assert not t.healed(window(1000, slow=70))  # 70 of the other 930: 7.5%
    assert t.healed(window(2000, slow=70))  # 70 of 1930 (3.6%)
    # the same window, but 1200 of its requests came before the drift: 70 of 730 once they left
    assert not t.healed(window(2000, slow=70, since_drift=800))
    assert not t.healed(window(400, errors=5))  # 1.3% of the rest
    assert t.healed(window(1000, errors=5))


def test_healed_counts_requests_between_half_a_second_and_one():
    # few over 1 s, but many over 0.5 s: the p95 would climb back over 1 s as the window slides
    assert not t.healed(window(1000, slow=10, lagging=60))
    assert t.healed(window(2000, slow=10, lagging=60))
    assert not t.healed(window(5000, slow=10, lagging=60, p95=0.95))


def test_paused_sends_exactly_the_requests_asked_for(monkeypatch):
    sent = []
    monkeypatch.setattr(t, "paused_requests", sent.append)
    t.paused(65)
    assert sent == [30, 30, 5]
