from __future__ import annotations

import pytest

from percept.leads.analytics import Membership, campaign_report, wilson


def test_wilson_interval_matches_the_textbook_values() -> None:
    low, high = wilson(5, 10)
    assert (round(low, 3), round(high, 3)) == (0.237, 0.763)
    low, high = wilson(0, 20)
    assert low == 0.0 and high == pytest.approx(0.161, abs=1e-3)
    assert wilson(0, 0) == (0.0, 0.0)


def test_campaign_report_counts_treated_leads_and_uplift_against_control() -> None:
    members = [
        *(
            Membership(f"t{i}", "spring", False, i < 6, "buyers" if i < 5 else "browsers")
            for i in range(10)
        ),
        *(Membership(f"c{i}", "spring", True, i < 2, "") for i in range(10)),
        Membership("t0", "spring", False, True, "buyers"),  # a second signal changes nothing
        Membership("x1", "winter", False, False, ""),
    ]
    stats = {(s.campaign_id, s.segment): s for s in campaign_report(members)}
    spring = stats[("spring", "")]
    assert (spring.leads, spring.won) == (10, 6)
    assert spring.rate == pytest.approx(0.6)
    assert spring.has_control and spring.uplift == pytest.approx(0.6 - 0.2)
    assert spring.ci_low < 0.6 < spring.ci_high
    assert (stats[("spring", "buyers")].leads, stats[("spring", "buyers")].won) == (5, 5)
    winter = stats[("winter", "")]
    assert not winter.has_control and winter.uplift == 0.0
