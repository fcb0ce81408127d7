from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from ingest.avro_check import PayloadRules
from ingest.validation import Policy
from streams.schemas import SchemaCatalog
from streams.settings import REPO_ROOT

NOW = datetime(2025, 3, 1, 12, 0, tzinfo=UTC)


@pytest.fixture(scope="session")
def rules() -> PayloadRules:
    return PayloadRules.from_catalog(SchemaCatalog.load(REPO_ROOT / "avro_schemas"))


@pytest.fixture
def policy(rules: PayloadRules) -> Policy:
    return Policy(rules, timedelta(minutes=5), "accept")
