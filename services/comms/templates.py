"""Message templates: Jinja2 in a sandbox, per event kind x audience x channel.

Built-in shapes: responders get the tactical report (conditions / actions / needs), management the
executive one (current status / overview / next steps), end users a short plain notice that the
problem is known. The policy's `templates` override any of them; the most specific match wins.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from jinja2 import TemplateError, Undefined
from jinja2.sandbox import SandboxedEnvironment

from shared.errors import DomainError
from shared.policy.comms import TemplateOverride


class TemplateInvalid(DomainError):
    status = 422
    title = "Invalid template"


HEADLINES: Mapping[str, str] = {
    "PriorityAssigned": "Incident {{ incident.id }} opened on {{ incident.service }}: {{ incident.title }}."
    " Priority {{ incident.priority }}{% if event.reason %} ({{ event.reason }}){% endif %}.",
    "PriorityChanged": "Priority changed to {{ incident.priority }}"
    "{% if event.reason %}: {{ event.reason }}{% endif %}.",
    "IncidentRouted": "Routed to team {{ event.team }}.",
    "IncidentAcknowledged": "Acknowledged{% if event.by %} by {{ event.by }}{% endif %}.",
    "SlaWarningRaised": "The {{ event.kind or 'SLA' }} target is close: due at {{ event.due_at }}.",
    "SlaBreached": "The {{ event.kind or 'SLA' }} target was breached.",
    "MajorIncidentProposed": "Proposed as a major incident{% if event.by %} by {{ event.by }}{% endif %}"
    "{% if event.reason %}: {{ event.reason }}{% endif %}.",
    "MajorIncidentAccepted": "Declared a major incident{% if event.by %} by {{ event.by }}{% endif %}."
    "{% if event.business_impact %} Business impact: {{ event.business_impact }}.{% endif %}",
    "MajorIncidentRejected": "Not a major incident{% if event.reason %}: {{ event.reason }}{% endif %}.",
    "HandoverCompleted": "{{ event.role }} handed over from {{ event.from_person }} to {{ event.to_person }}."
    "{% if event.briefing %} Briefing: {{ event.briefing.current_state or event.briefing }}{% endif %}",
    "IncidentResolved": "Resolved{% if event.by %} by {{ event.by }}{% endif %}"
    "{% if event.reason %}: {{ event.reason }}{% endif %}.",
    "IncidentReopened": "Reopened{% if event.reason %}: {{ event.reason }}{% endif %}.",
    "IncidentClosed": "Closed.",
    "PageRequested": "You are paged for incident {{ incident.id }} on"
    " {{ incident.service or event.service }}: {{ incident.title or event.title }}"
    " (priority {{ incident.priority or event.priority }}, escalation step {{ event.step }}).\n"
    "Acknowledge: {{ event.ack_url }} (valid until {{ event.ack_expires_at }})",
    "StatusUpdatePublished": "Status update: {{ update.text }}",
    "StatusUpdateOverdue": "The status update due at {{ event.due_at }} is overdue ({{ event.level }}):"
    " please publish one now.",
    "Digest": "{{ event.count }} more notifications were held back to avoid a flood:\n"
    "{% for s in event.subjects %}- {{ s }}\n{% endfor %}",
}

SUBJECTS: Mapping[str, str] = {
    "PriorityAssigned": "[{{ incident.priority }}] {{ incident.title }} ({{ incident.service }})",
    "IncidentResolved": "[resolved] {{ incident.title or 'incident ' ~ incident.id }}",
    "PageRequested": "[page] [{{ incident.priority or event.priority }}] {{ incident.title or event.title }}"
    " ({{ incident.service or event.service }})",
    "StatusUpdatePublished": "[update] {{ incident.title or 'incident ' ~ incident.id }}",
    "StatusUpdateOverdue": "[{{ event.level }}] status update overdue: {{ incident.title or incident.id }}",
    "Digest": "{{ event.count }} incident notifications held back",
}
DEFAULT_SUBJECT = (
    "[{{ incident.priority or 'incident' }}] {{ kind_label }}: {{ incident.title or incident.id }}"
)

TACTICAL = """{{ headline }}

Conditions: {{ update.conditions or (incident.title ~ ' on ' ~ incident.service) }}
Actions: {{ update.actions or 'see the incident timeline' }}
Needs: {{ update.needs or 'none stated' }}

Incident {{ incident.id }} | service {{ incident.service }} | priority {{ incident.priority }}\
 | status {{ incident.status }}{% if incident.major %} | major incident {{ incident.major }}{% endif %}"""

EXECUTIVE = """{{ headline }}

Current status: {{ update.current_status or incident.status }}
Overview: {{ update.overview or (incident.title ~ ' on ' ~ incident.service) }}\
{% if incident.business_impact %} Business impact: {{ incident.business_impact }}.{% endif %}
Next steps: {{ update.next_steps or ('next update due ' ~ incident.next_due_at if incident.next_due_at \
else 'we will update you as the situation changes') }}

Incident {{ incident.id }} | priority {{ incident.priority }}"""

END_USERS: Mapping[str, str] = {
    "IncidentResolved": "The problem affecting {{ incident.service }} has been resolved. Thank you for your"
    " patience.",
    "StatusUpdatePublished": "{{ update.text or update.current_status }}",
}
END_USERS_DEFAULT = (
    "We are aware of a problem affecting {{ incident.service }} and are working to fix it."
    " There is no need to report it to the service desk.{% if incident.next_due_at %} Next update by"
    " {{ incident.next_due_at }}.{% endif %}"
)


@dataclass(frozen=True, slots=True)
class Rendered:
    subject: str
    body: str


def _label(kind: str) -> str:
    return "".join(f" {c.lower()}" if c.isupper() else c for c in kind).strip()


class Templates:
    """Renders messages; overrides are compiled at start, so a broken one fails early."""

    def __init__(self, overrides: Sequence[TemplateOverride] = ()) -> None:
        self.env = SandboxedEnvironment(autoescape=False, undefined=Undefined, keep_trailing_newline=False)
        self.overrides = list(overrides)
        self._compiled: dict[str, Any] = {}
        for o in self.overrides:
            for text in (o.subject, o.body):
                if text is not None:
                    self.compile(text)

    def compile(self, text: str) -> Any:
        """The compiled template, cached: compiling costs far more than rendering, on every message."""
        compiled = self._compiled.get(text)
        if compiled is not None:
            return compiled
        try:
            compiled = self.env.from_string(text)
        except TemplateError as e:
            raise TemplateInvalid(f"template does not compile: {e}") from None
        if len(self._compiled) >= 512:  # previews render arbitrary text: keep the cache bounded
            self._compiled.clear()
        self._compiled[text] = compiled
        return compiled

    def _render(self, text: str, context: Mapping[str, Any]) -> str:
        try:
            return str(self.compile(text).render(**context)).strip()
        except TemplateInvalid:
            raise
        except (TemplateError, TypeError, ValueError, AttributeError) as e:
            raise TemplateInvalid(f"template does not render: {e}") from None

    def override(self, kind: str, audience: str, channel: str) -> TemplateOverride | None:
        best: tuple[int, TemplateOverride] | None = None
        for o in self.overrides:
            keys = ((o.event, kind), (o.audience, audience), (o.channel, channel))
            if all(want in ("*", have) for want, have in keys):
                score = sum(want != "*" for want, _ in keys)
                if best is None or score >= best[0]:
                    best = (score, o)
        return best[1] if best is not None else None

    def builtin(self, kind: str, audience: str, channel: str, shape: str = "") -> tuple[str, str]:
        """The built-in text; `shape` (tactical or executive) is a status update's chosen report."""
        subject = SUBJECTS.get(kind, DEFAULT_SUBJECT)
        if shape == "tactical":
            return subject, TACTICAL
        if shape == "executive":
            return subject, EXECUTIVE
        if audience == "end_users":
            body = END_USERS.get(kind, END_USERS_DEFAULT)
        elif audience == "management":
            body = EXECUTIVE
        else:
            body = TACTICAL
        return subject, body

    def render(
        self,
        kind: str,
        audience: str,
        channel: str,
        context: Mapping[str, Any],
        *,
        subject: str | None = None,
        body: str | None = None,
    ) -> Rendered:
        """Render for one recipient. `subject`/`body` given: try those (a preview); otherwise the
        policy's override, falling back to the built-in text if the override fails at render time."""
        ctx = {"kind": kind, "kind_label": _label(kind), **context}
        ctx["headline"] = self._render(HEADLINES.get(kind, "{{ kind_label | capitalize }}."), ctx)
        update = context.get("update") or {}
        shape = str(update.get("template", "")) if isinstance(update, Mapping) else ""
        default_subject, default_body = self.builtin(kind, audience, channel, shape)
        if subject is not None or body is not None:
            return Rendered(
                self._render(subject or default_subject, ctx)[:500], self._render(body or default_body, ctx)
            )
        o = self.override(kind, audience, channel)
        try:
            s = self._render(o.subject if o and o.subject else default_subject, ctx)
            b = self._render(o.body if o and o.body else default_body, ctx)
        except TemplateInvalid:
            s, b = self._render(default_subject, ctx), self._render(default_body, ctx)
        if channel in ("slack", "teams"):
            b = "\n".join(line for line in b.splitlines() if line.strip())
        return Rendered(s[:500], b)
