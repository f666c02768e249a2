"""Triage: priority, routing, SLA clocks, major incidents, roles, problems."""
