"""Acknowledge links: signed, expiring, bound to one incident and person, never a bearer token."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from shared.acklinks import AckClaim, AckLinkError, AckLinkExpired, sign_ack, verify_ack
from shared.auth import Role, sign_token, verify_token

SECRET = "s" * 32
T = datetime(2026, 3, 18, 9, tzinfo=UTC)
CLAIM = AckClaim("inc-1", "ann", T, T + timedelta(hours=1))


def test_a_signed_link_verifies_until_it_expires() -> None:
    token = sign_ack(SECRET, CLAIM)
    assert verify_ack(SECRET, token, now=T + timedelta(minutes=59)) == CLAIM
    with pytest.raises(AckLinkExpired) as expired:
        verify_ack(SECRET, token, now=T + timedelta(hours=1))
    assert expired.value.status == 410


@pytest.mark.parametrize(
    "tamper",
    [
        lambda t: t[:-2] + ("AA" if not t.endswith("AA") else "BB"),  # another MAC
        lambda t: sign_ack("another secret", CLAIM),  # another secret
        lambda t: t.replace("ack1.", "lp1.", 1),  # another kind of token
        lambda t: "ack1.not-base64!.x",
        lambda t: "nonsense",
        lambda t: (
            "ack1."
            + sign_ack(SECRET, AckClaim("inc-2", "ann", T, T + timedelta(hours=1))).split(".")[1]
            + "."
            + t.split(".")[2]
        ),  # another incident under this MAC
    ],
)
def test_forged_or_malformed_links_are_refused(tamper: object) -> None:
    assert callable(tamper)
    with pytest.raises(AckLinkError) as refused:
        verify_ack(SECRET, tamper(sign_ack(SECRET, CLAIM)), now=T)
    assert refused.value.status == 401


def test_links_and_bearer_tokens_are_not_interchangeable() -> None:
    link = sign_ack(SECRET, CLAIM)
    assert verify_token(SECRET, link, now=T) is None
    assert verify_token(SECRET, "lp1." + link.split(".", 1)[1], now=T) is None
    with pytest.raises(AckLinkError):
        verify_ack(SECRET, sign_token(SECRET, "ann", Role.ADMIN), now=T)
