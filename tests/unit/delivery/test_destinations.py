"""Destination definitions: validation, routing, the definitions version."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from streams.activation.definitions import (
    DefinitionError,
    from_snapshot,
    load_definitions,
    snapshot,
)
from streams.delivery.destinations import Destination, missing_secrets, routed
from streams.settings import REPO_ROOT


def dest(**kw: object) -> Destination:
    base: dict[str, object] = {"id": "crm", "url": "http://127.0.0.1:1/x",
                               "routes": [{"channel": "crm"}]}
    return Destination.model_validate({**base, **kw})


def test_routing_by_channel_and_action_type() -> None:
    crm = dest()
    mail = dest(id="mail", routes=[{"channel": "email", "action_types": ["send_email"]}])
    both = {"crm": crm, "mail": mail}
    assert [d.id for d in routed(both, {"channel": "crm", "action_type": "update_crm"})] == [
        "crm"]
    assert routed(both, {"channel": "email", "action_type": "other"}) == []
    assert routed(both, {"channel": "paid_media", "action_type": "audience_add"}) == []


def test_missing_secrets_are_named() -> None:
    d = dest(signing_secrets=["A_V2", "A_V1"], auth={"secret": "TOKEN"})
    assert missing_secrets({"crm": d}, {"A_V2"}) == {"crm": ["A_V1", "TOKEN"]}


def test_a_bad_destination_file_names_file_and_path(tmp_path: Path) -> None:
    shutil.copytree(REPO_ROOT / "definitions", tmp_path / "d")
    (tmp_path / "d" / "destinations" / "bad.yaml").write_text(
        "url: ftp://x\ntimeout: PT10M\nroutes: []\n")
    with pytest.raises(DefinitionError) as err:
        load_definitions(tmp_path / "d")
    text = str(err.value)
    assert "destinations/bad.yaml" in text and "url" in text and "timeout" in text
    assert "routes" in text


def test_destinations_are_versioned_and_published(tmp_path: Path) -> None:
    shutil.copytree(REPO_ROOT / "definitions", tmp_path / "d")
    with_dest = load_definitions(tmp_path / "d")
    assert "local_receiver" in with_dest.destinations
    assert from_snapshot(snapshot(with_dest)) == with_dest
    shutil.rmtree(tmp_path / "d" / "destinations")
    without = load_definitions(tmp_path / "d")
    assert without.version != with_dest.version
    assert b"destinations" not in snapshot(without)  # older sets keep their version


def test_erasures_go_to_the_deletion_url_only() -> None:
    plain = dest()
    deleting = dest(id="crm2", deletion_url="http://127.0.0.1:1/erase")
    erase = {"channel": "crm", "action_type": "erase_profile"}
    assert [d.id for d in routed({"crm": plain, "crm2": deleting}, erase)] == ["crm2"]
    assert deleting.url_for(erase) == "http://127.0.0.1:1/erase"
    assert deleting.url_for({"channel": "crm", "action_type": "update_crm"}) == (
        "http://127.0.0.1:1/x")


def test_the_router_remembers_routes_per_definition_set() -> None:
    from streams.delivery.destinations import Router

    crm, mail = dest(), dest(id="mail", routes=[
        {"channel": "email", "action_types": ["send_email"]}])
    first, second = {"crm": crm, "mail": mail}, {"crm": crm}
    router = Router()
    commands = [{"channel": c, "action_type": t} for c, t in (
        ("crm", "update_crm"), ("email", "send_email"), ("email", "other"),
        ("crm", "erase_profile"))]
    for cmd in commands * 2:
        assert router(first, first, cmd) == routed(first, cmd)
    # a new definition set (another object) is routed afresh, not from the old answers
    assert router(second, second, commands[1]) == [] == routed(second, commands[1])
