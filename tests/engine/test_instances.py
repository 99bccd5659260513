"""The destination instance: what identifies it, what a plan assumes, and the fingerprint of the settings
that observed an account (no secret in it)."""

from __future__ import annotations

from pathlib import Path

from segship.config import ConnectionConfig
from segship.engine.instances import (
    OBSERVED,
    assumed_instance,
    configured_instance,
    credentials_fingerprint,
    readable_instance,
    same_credentials,
)
from segship.engine.state import RecordedInstance

from .memory_destination import MemoryDestination

KEY = "memory-secret-key-0123456789abcdef"


class EndpointDestination(MemoryDestination):
    """A destination whose instances differ by an endpoint setting."""

    name = "endpointed"
    connection_schema = {"type": "object", "properties": {
        "api_key": {"type": "string", "x-secret": True},
        "endpoint": {"type": "string", "default": "https://api.example.com"}}}
    instance_settings = ("endpoint",)

    @classmethod
    def instance_setting(cls, name: str, value: object) -> object:
        return str(value).rstrip("/")


class AccountDestination(EndpointDestination):
    """A destination that observes the account its key belongs to."""

    name = "accounted"
    observes_instance = True


def connection(cls: type, **settings: str) -> ConnectionConfig:
    return ConnectionConfig("conn", cls.name, "Conn", ("admins",), True, settings, ("api_key",), Path("."))


def test_an_instance_is_the_destination_the_connection_and_the_normalised_instance_settings():
    assert configured_instance(MemoryDestination, "mem", {"api_key": KEY}) == {"destination": "memory",
                                                                               "connection": "mem"}
    assert configured_instance(EndpointDestination, "conn", {"endpoint": "https://eu.example.com/"}) == {
        "destination": "endpointed", "connection": "conn", "endpoint": "https://eu.example.com"}
    assert configured_instance(EndpointDestination, "conn", {})["endpoint"] == "https://api.example.com"  # default
    # an observed account identifies the instance: the connection's name does not
    assert configured_instance(AccountDestination, "conn", {}) == {"destination": "accounted",
                                                                   "endpoint": "https://api.example.com"}


def test_a_plan_reads_what_it_can_without_a_secret_and_assumes_the_rest_as_the_last_run_found_it(monkeypatch):
    monkeypatch.delenv("ENDPOINT_URL", raising=False)
    last = RecordedInstance({"destination": "accounted", "endpoint": "https://eu.example.com",
                             OBSERVED: {"account": "a1"}}, "hmac-sha256:00:00")
    unset = connection(AccountDestination, api_key="${env:SOME_KEY}", endpoint="${env:ENDPOINT_URL}")
    assert assumed_instance(AccountDestination, unset, last) == last.instance
    assert readable_instance(AccountDestination, unset) is None
    monkeypatch.setenv("ENDPOINT_URL", "https://us.example.com/")  # no secret: read, and it differs
    assert assumed_instance(AccountDestination, unset, last) == {
        "destination": "accounted", "endpoint": "https://us.example.com", OBSERVED: {"account": "a1"}}
    assert assumed_instance(AccountDestination, unset, None)[OBSERVED] is None  # nothing recorded yet


def test_the_credentials_fingerprint_is_salted_one_way_and_tells_only_whether_settings_are_the_same():
    settings = {"api_key": KEY, "endpoint": "https://api.example.com"}
    first, second = credentials_fingerprint("accounted", settings), credentials_fingerprint("accounted", settings)
    assert first != second  # a random salt each time: equal keys can't be spotted across states
    assert KEY not in first and KEY.encode().hex() not in first
    assert first.startswith("hmac-sha256:") and len(first.split(":")) == 3
    assert same_credentials(first, "accounted", settings) and same_credentials(second, "accounted", dict(settings))
    assert not same_credentials(first, "accounted", {**settings, "api_key": KEY + "x"})  # a rotated key
    assert not same_credentials(first, "accounted", {**settings, "endpoint": "https://eu.example.com"})
    assert not same_credentials(first, "endpointed", settings)
    for broken in (None, "", "hmac-sha256", "hmac-sha256:zz:00", "md5:00:00", first[:-1]):
        assert not same_credentials(broken, "accounted", settings)
