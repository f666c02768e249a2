"""A stream of alerts posted to intake while faults happen, with every answer recorded.

Each worker owns its own keys, so one key's alerts are posted one after another and the order of its
answers is the order intake decided them. Most alerts fire (first ones open incidents, later ones repeat);
some resolve their key. Every request ends in one of: accepted (202: intake promised it is durable),
refused (503/429 with Retry-After, or the connection refused: intake never had it), or unknown (sent, no
answer: the process died or the store lost the COMMIT's answer). A 503 is counted with the unknowns too
when deciding what may be in the log: a batch whose COMMIT got no answer may have committed.
"""

from __future__ import annotations

import asyncio
import random
import time
from collections import Counter
from dataclasses import dataclass, field

import httpx

from tests.faults.cluster import KEY


@dataclass(frozen=True, slots=True)
class Answer:
    key: str
    status: str  # the alert's status: firing or resolved
    outcome: str  # accepted, refused or unknown
    code: int | None = None
    incident_id: str | None = None
    action: str | None = None
    retry_after: str | None = None
    error: str = ""


@dataclass
class AlertStream:
    """Post up to `count` alerts within `seconds`, from `workers` workers each owning its keys."""

    intake: str
    keys: int
    count: int
    seconds: float
    workers: int = 4
    resolve_share: float = 0.12
    pace: float = 0.01
    seed: int = 7
    answers: list[Answer] = field(default_factory=list)
    stop: asyncio.Event = field(default_factory=asyncio.Event)
    sent: int = 0

    async def run(self) -> None:
        deadline = time.monotonic() + self.seconds
        limits = httpx.Limits(max_connections=self.workers, max_keepalive_connections=self.workers)
        async with httpx.AsyncClient(
            headers={"Authorization": f"Bearer {KEY}"}, timeout=httpx.Timeout(20.0), limits=limits
        ) as client:
            await asyncio.gather(*(self._work(client, w, deadline) for w in range(self.workers)))

    async def _work(self, client: httpx.AsyncClient, worker: int, deadline: float) -> None:
        rng = random.Random(self.seed * 1000 + worker)
        mine = [f"w{worker}-k{i}" for i in range(worker, self.keys, self.workers)]
        while not self.stop.is_set() and self.sent < self.count and time.monotonic() < deadline:
            self.sent += 1
            key = rng.choice(mine)
            status = "resolved" if rng.random() < self.resolve_share else "firing"
            answer = await self._post(client, key, status)
            self.answers.append(answer)
            # pacing: spread the stream over the faults; back off a little after a refusal
            await asyncio.sleep(self.pace if answer.outcome == "accepted" else 0.1)

    async def _post(self, client: httpx.AsyncClient, key: str, status: str) -> Answer:
        alert = {
            "title": f"Fault test alert {key}",
            "service": f"svc-{key}",
            "severity": "critical",
            "dedup_key": key,
            "status": status,
        }
        try:
            r = await client.post(f"{self.intake}/v1/alerts", json=alert)
        except httpx.ConnectError as e:  # never reached intake
            return Answer(key, status, "refused", error=type(e).__name__)
        except httpx.HTTPError as e:  # sent; the answer was lost
            return Answer(key, status, "unknown", error=type(e).__name__)
        if r.status_code == 202:
            body = r.json()
            return Answer(key, status, "accepted", 202, body["incident_id"], body.get("action"))
        return Answer(
            key,
            status,
            "refused",
            r.status_code,
            retry_after=r.headers.get("retry-after"),
            error=r.text[:300],
        )

    def figures(self) -> Counter[str]:
        c: Counter[str] = Counter(a.outcome for a in self.answers)
        c["sent"] = len(self.answers)
        return c
