"""Schemathesis fuzzes every operation of /openapi.json: no 5xx, answers match the document.

Skipped when schemathesis is not installed (it is a dev-only tool).
"""

from __future__ import annotations

import json
import shutil
import subprocess
from pathlib import Path

import httpx
import pytest

from streams.settings import Settings
from tests.integration.ingest.conftest import ADMIN_KEY, gateway_process

CHECKS = ("not_a_server_error,status_code_conformance,content_type_conformance,"
          "response_schema_conformance")


def test_fuzz_openapi_no_server_errors(
    prepared: Settings, stack_settings: object, tmp_path: Path
) -> None:
    tool = shutil.which("schemathesis") or str(Path(__file__).resolve().parents[3] /
                                                ".venv/bin/schemathesis")
    if not Path(tool).exists():
        pytest.skip("schemathesis is not installed")
    settings = prepared.model_copy(update={"gateway_rate_limit_per_second": 100_000.0,
                                           "gateway_rate_limit_burst": 100_000})
    with gateway_process(settings) as url:
        spec = httpx.get(f"{url}/openapi.json", headers={"Authorization": f"Bearer {ADMIN_KEY}"})
        assert spec.status_code == 200
        schema = tmp_path / "openapi.json"
        schema.write_text(json.dumps(spec.json()))
        run = subprocess.run(
            [tool, "run", str(schema), "--url", url, "-H", f"Authorization: Bearer {ADMIN_KEY}",
             "--checks", CHECKS, "--max-examples", "25", "--seed", "1", "--workers", "1",
             "--phases", "examples,coverage,fuzzing", "--no-color", "--request-timeout", "20"],
            capture_output=True, text=True, timeout=500, check=False, cwd=tmp_path,
        )
    print(run.stdout[-3000:])
    assert run.returncode == 0, run.stdout[-6000:] + run.stderr[-2000:]
