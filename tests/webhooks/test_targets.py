"""Which URLs a webhook may target: each refusal with its exact message, checked on every
address the host resolves to (docs/webhooks.md, "Which targets are refused")."""

import pytest
from django.test import override_settings

from webhooks.targets import Target, TargetRefused, TargetUnresolved, checked_target

HINT = "; set PADDOCK_WEBHOOK_ALLOW_PRIVATE=1 to allow it"


@pytest.mark.parametrize(("url", "message"), [
    ("http://127.0.0.1:8000/hook", "webhook target 127.0.0.1 is a loopback address" + HINT),
    ("http://[::1]/hook", "webhook target ::1 is a loopback address" + HINT),
    ("http://[::ffff:127.0.0.1]/hook", "webhook target ::ffff:127.0.0.1 is a loopback address" + HINT),
    ("http://localhost/hook", "webhook target localhost resolves to 127.0.0.1, a loopback address" + HINT),
    ("http://2130706433/hook", "webhook target 2130706433 resolves to 127.0.0.1, a loopback address" + HINT),
    ("http://127.1/hook", "webhook target 127.1 resolves to 127.0.0.1, a loopback address" + HINT),
    ("https://10.1.2.3/hook", "webhook target 10.1.2.3 is a private address" + HINT),
    ("http://192.168.0.10/", "webhook target 192.168.0.10 is a private address" + HINT),
    ("http://[fc00::1]/", "webhook target fc00::1 is a private address" + HINT),
    ("http://169.254.169.254/latest/meta-data/", "webhook target 169.254.169.254 is a link-local address" + HINT),
    ("http://[fe80::1]/", "webhook target fe80::1 is a link-local address" + HINT),
    ("http://100.64.0.1/", "webhook target 100.64.0.1 is a non-public address" + HINT),
    ("http://0.0.0.0:5432/", "webhook target 0.0.0.0 is an unspecified address, which is never allowed"),
    ("http://[::]/", "webhook target :: is an unspecified address, which is never allowed"),
    ("http://224.0.0.1/", "webhook target 224.0.0.1 is a multicast address, which is never allowed"),
    ("http://240.0.0.1/", "webhook target 240.0.0.1 is a reserved address, which is never allowed"),
])
def test_non_public_addresses_are_refused_by_default(url: str, message: str) -> None:
    with pytest.raises(TargetRefused) as refused:
        checked_target(url)
    assert refused.value.message == message
    assert refused.value.http_status == 400


@pytest.mark.parametrize(("url", "message"), [
    ("ftp://example.com/hook", "'url' must start with http:// or https://"),
    ("file:///etc/passwd", "'url' must start with http:// or https://"),
    ("gopher://127.0.0.1:6379/_FLUSHALL", "'url' must start with http:// or https://"),
    ("//93.184.216.34/hook", "'url' must start with http:// or https://"),
    ("http://user:pass@93.184.216.34/", "'url' must not carry a user or password: a receiver checks the "
                                        "signature instead"),
    ("http:///hook", "'url' must name a host: https://hooks.example.com/paddock"),
    ("http://93.184.216.34/#top", "'url' must not have a #fragment"),
    ("http://93.184.216.34/a b", "'url' must not contain spaces or control characters"),
    ("http://93.184.216.34/\x00", "'url' must not contain spaces or control characters"),
    ("http://[::1/", "'url' is not a valid URL: https://hooks.example.com/paddock"),
    ("http://93.184.216.34:99999/", "'url' is not a valid URL: https://hooks.example.com/paddock"),
    ("http://93.184.216.34/" + "a" * 500, "'url' must be at most 500 characters (it has 521)"),
])
def test_malformed_urls_are_refused_with_the_reason(url: str, message: str) -> None:
    with pytest.raises(TargetRefused) as refused:
        checked_target(url)
    assert refused.value.message == message


def test_a_public_address_is_a_target_and_keeps_its_path_and_query() -> None:
    assert checked_target("https://93.184.216.34/hooks/paddock?source=ml") == Target(
        scheme="https", host="93.184.216.34", port=443, path="/hooks/paddock?source=ml", addresses=("93.184.216.34",))
    assert checked_target("HTTP://93.184.216.34:8080").path == "/"


@override_settings(PADDOCK_WEBHOOK_ALLOW_PRIVATE=True)
def test_the_setting_allows_loopback_private_and_link_local_but_never_the_rest() -> None:
    assert checked_target("http://127.0.0.1:9/hook").addresses == ("127.0.0.1",)
    assert checked_target("http://10.1.2.3/").addresses == ("10.1.2.3",)
    assert checked_target("http://169.254.169.254/").addresses == ("169.254.169.254",)
    with pytest.raises(TargetRefused) as refused:
        checked_target("http://0.0.0.0:8000/")
    assert refused.value.message == "webhook target 0.0.0.0 is an unspecified address, which is never allowed"


def test_a_host_that_does_not_resolve_is_refused_as_unresolved() -> None:
    with pytest.raises(TargetUnresolved) as unresolved:
        checked_target("https://paddock-hooks.invalid/hook")
    assert unresolved.value.message.startswith("webhook target paddock-hooks.invalid does not resolve: ")
    assert unresolved.value.http_status == 400
