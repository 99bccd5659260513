"""Which destination instance (an account, a workspace) an export's members are in.

A destination declares what tells its instances apart (``Destination.instance_settings``,
``observes_instance``). An instance is a dict: the destination's name, the connection's name
(unless the destination observes its account: two Braze workspaces on one endpoint differ only
by the connection each is configured under), those connection settings as the destination
normalises them, and, for a destination that observes its account, what ``observe_instance``
answered under ``"observed"`` (Brevo: the account's ``organization_id``). State records the
instance of each target; members acknowledged in another instance than the run's move to it
(``engine/targets.py`` reaches the old one to remove them).

Observing costs a request, and an unchanged run makes none: state keeps the instance each
export's last run was against and a salted HMAC-SHA256 of the connection settings, key included,
that observed it (:func:`credentials_fingerprint`). A run whose settings match it trusts the
recorded observation; any other (a rotated key, another account's key, another base URL or
connection) asks the destination before planning. The fingerprint is no secret: it can't be
turned back into the settings (a random salt per fingerprint, over a key of a hundred random
bits or more), and tells a later run only whether its settings are the same.

``plan``, ``--dry-run`` and ``validate`` resolve no secret, so they ask nothing:
:func:`assumed_instance` takes the account to be the one the last run found, and reads an
instance setting given by reference only when it resolves without a secret (else it too is taken
as the last run found it).
"""

from __future__ import annotations

import hashlib
import hmac
import os
from collections.abc import Mapping
from typing import Any

import orjson

from segship.config import ConnectionConfig
from segship.destination import Destination
from segship.engine.state import RecordedInstance
from segship.secrets import SecretResolutionError, has_reference, resolve
from segship.settings import with_defaults

#: The key of what the destination answered (``observe_instance``) in an instance.
OBSERVED = "observed"
FINGERPRINT_SCHEME = "hmac-sha256"


def configured_instance(cls: type[Destination], connection: str, settings: Mapping[str, Any]) -> dict[str, Any]:
    """The instance as the connection's settings name it (without what the destination observes)."""
    instance: dict[str, Any] = {"destination": cls.name}
    if not cls.observes_instance:
        instance["connection"] = connection
    settings = with_defaults(cls.connection_schema, settings)
    for name in cls.instance_settings:
        instance[name] = cls.instance_setting(name, settings.get(name))
    return instance


def without_observed(instance: Mapping[str, Any]) -> dict[str, Any]:
    return {name: value for name, value in instance.items() if name != OBSERVED}


def assumed_instance(cls: type[Destination], connection: ConnectionConfig,
                     recorded: RecordedInstance | None) -> dict[str, Any]:
    """The instance as ``plan`` and a dry run can know it, resolving no secret: an instance setting
    that needs one (or an unset variable) and the observed account are as the last run found them."""
    last = recorded.instance if recorded is not None else {}
    known, unknown = _readable_settings(cls, connection)
    instance = configured_instance(cls, connection.name, known)
    for name in unknown:
        instance[name] = last.get(name)
    if cls.observes_instance:
        instance[OBSERVED] = last.get(OBSERVED)
    return instance


def readable_instance(cls: type[Destination], connection: ConnectionConfig) -> dict[str, Any] | None:
    """The instance a connection's settings name, without what the destination observes, when they
    can be read without a secret; else None."""
    known, unknown = _readable_settings(cls, connection)
    return None if unknown else configured_instance(cls, connection.name, known)


def _readable_settings(cls: type[Destination], connection: ConnectionConfig) -> tuple[dict[str, Any], list[str]]:
    """The connection's instance settings that can be read without a secret (literals, references to
    what is no secret and resolves), and the names of the others."""
    known: dict[str, Any] = {}
    unknown: list[str] = []
    for name in cls.instance_settings:
        value = connection.settings.get(name)
        if has_reference(value):
            if connection.is_secret((name,)):
                unknown.append(name)
                continue
            try:
                value = resolve(value, connection.base_dir, where=connection.setting_locations.get((name,), name))
            except SecretResolutionError:
                unknown.append(name)
                continue
        if value is not None:
            known[name] = value
    return known, unknown


def known_instance(destination: Destination, recorded: RecordedInstance | None) -> dict[str, Any] | None:
    """The instance a run's destination (its settings resolved) reaches, when it is known without a
    request: always for a destination that observes nothing; for one that does, when the last run
    observed it with these very settings. None: the destination is to be asked (:func:`observe`)."""
    cls = type(destination)
    settings = destination.connection.settings
    instance = configured_instance(cls, destination.connection.name, settings)
    if not cls.observes_instance:
        return instance
    last = recorded.instance if recorded is not None else {}
    if recorded is not None and last.get(OBSERVED) is not None and without_observed(last) == instance and \
            same_credentials(recorded.credentials, cls.name, settings):
        return {**instance, OBSERVED: last[OBSERVED]}
    return None


async def observe(destination: Destination) -> tuple[dict[str, Any], str]:
    """Ask the destination which account its connection reaches (a request): the instance, and the
    fingerprint of the settings that observed it, to record with it."""
    cls = type(destination)
    settings = destination.connection.settings
    observed = await destination.observe_instance()
    return ({**configured_instance(cls, destination.connection.name, settings), OBSERVED: observed},
            credentials_fingerprint(cls.name, settings))


def credentials_fingerprint(destination: str, settings: Mapping[str, Any], salt: bytes | None = None) -> str:
    """A salted HMAC-SHA256 of a connection's resolved settings (key included): ``scheme:salt:digest``."""
    salt = os.urandom(16) if salt is None else salt
    material = orjson.dumps([destination, dict(settings)], option=orjson.OPT_SORT_KEYS, default=str)
    return f"{FINGERPRINT_SCHEME}:{salt.hex()}:{hmac.new(salt, material, hashlib.sha256).hexdigest()}"


def same_credentials(fingerprint: str | None, destination: str, settings: Mapping[str, Any]) -> bool:
    """Whether ``fingerprint`` was made of these settings."""
    scheme, _, rest = (fingerprint or "").partition(":")
    salt, _, _ = rest.partition(":")
    if scheme != FINGERPRINT_SCHEME or not salt:
        return False
    try:
        expected = credentials_fingerprint(destination, settings, bytes.fromhex(salt))
    except ValueError:
        return False
    return hmac.compare_digest(expected, fingerprint or "")
