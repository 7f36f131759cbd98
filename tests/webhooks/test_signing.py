"""The signature of a delivery: HMAC-SHA256 over `<timestamp>.<body>`, checked by Paddock's own
`verify` and by the receiver snippet docs/webhooks.md publishes."""

import hashlib
import hmac
import re
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from webhooks import signing

SECRET = "whsec_test-secret"
BODY = b'{"data":{"model":"iris"},"event":"version.ready"}'
NOW = 1_796_436_611
DOCS = Path(__file__).resolve().parents[2] / "docs" / "webhooks.md"


def docs_verifier() -> Callable[..., bool]:
    """The Python snippet of docs/webhooks.md, run as a receiver would paste it."""
    blocks = re.findall(r"```python\n(.*?)```", DOCS.read_text(), flags=re.S)
    assert len(blocks) == 1
    namespace: dict[str, Any] = {}
    exec(blocks[0], namespace)  # our own documentation's code
    return namespace["verify_paddock_signature"]


def test_the_header_is_an_hmac_sha256_over_the_timestamp_a_dot_and_the_body() -> None:
    expected = hmac.new(SECRET.encode(), f"{NOW}.".encode() + BODY, hashlib.sha256).hexdigest()
    assert signing.signature_header(SECRET, BODY, NOW) == f"t={NOW},v1={expected}"


@pytest.mark.parametrize("verify", [signing.verify, docs_verifier()], ids=["paddock", "docs snippet"])
def test_a_signature_verifies_with_its_secret_body_and_a_recent_time(verify: Callable[..., bool]) -> None:
    header = signing.signature_header(SECRET, BODY, NOW)
    assert verify(SECRET, header, BODY, now=NOW + 299)
    assert verify(SECRET, header, BODY, now=NOW - 299)  # a receiver's clock a little behind


@pytest.mark.parametrize("verify", [signing.verify, docs_verifier()], ids=["paddock", "docs snippet"])
def test_another_body_secret_or_time_does_not_verify(verify: Callable[..., bool]) -> None:
    header = signing.signature_header(SECRET, BODY, NOW)
    assert not verify(SECRET, header, BODY + b" ", now=NOW)
    assert not verify("whsec_another", header, BODY, now=NOW)
    assert not verify(SECRET, header.replace(f"t={NOW}", f"t={NOW + 1}"), BODY, now=NOW)
    assert not verify(SECRET, header, BODY, now=NOW + 301)  # a replay past the tolerance


@pytest.mark.parametrize("verify", [signing.verify, docs_verifier()], ids=["paddock", "docs snippet"])
@pytest.mark.parametrize("header", ["", "v1=abc", f"t={NOW}", "t=²,v1=abc", "garbage", f"t={NOW},v0=abc"])
def test_a_malformed_header_does_not_verify(verify: Callable[..., bool], header: str) -> None:
    assert not verify(SECRET, header, BODY, now=NOW)
