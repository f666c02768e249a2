"""The analytics policy as the service applies it: its own section, with triage's calendars.

Both the service and `lynchpin rebuild` judge SLA clocks under it (the read store keeps each
incident's standing, `metrics.sla_standing`), so both take it from the same policy file.
"""

from __future__ import annotations

from shared.policy import Policy, load_policy
from shared.policy.analytics import AnalyticsPolicy, BusinessHours
from shared.settings import Settings

WEEK = ("mon", "tue", "wed", "thu", "fri", "sat", "sun")


def policy_from(whole: Policy) -> AnalyticsPolicy:
    """The analytics section, with triage's business-hours calendars unless it names its own, so that
    analytics measures an SLA clock in the calendar triage ran it in."""
    own = whole.analytics
    if own.calendars:
        return own
    calendars = {
        name: BusinessHours(
            timezone=c.timezone,
            days=tuple(WEEK.index(str(d.value)) for d in c.days),
            start=c.start,
            end=c.end,
            holidays=tuple(c.holidays),
        )
        for name, c in whole.triage.calendars.items()
    }
    return own.model_copy(update={"calendars": calendars})


def analytics_policy(settings: Settings) -> AnalyticsPolicy:
    """The policy file's (or the built-in) analytics policy."""
    return policy_from(load_policy(settings.policy))
