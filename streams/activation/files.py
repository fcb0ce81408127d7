"""Reading definition files: YAML into validated models, every error naming the file,
the path inside it and the problem (``journeys/churn.yaml: steps[2].wait.duration: ...``).

Shared by the definitions set (streams/activation/definitions.py) and the channel
files (streams/activation/channels.py), which bootstrap reads on their own.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any, TypeVar

import yaml
from pydantic import BaseModel, ValidationError

from streams.errors import ActivationError


class DefinitionError(ActivationError):
    """A definition file is invalid; the message names the file, the path and the problem."""


M = TypeVar("M", bound=BaseModel)


def format_path(loc: Sequence[int | str]) -> str:
    """``('steps', 2, 'wait', 'duration')`` -> ``steps[2].wait.duration``; union tags dropped."""
    out = ""
    for part in loc:
        if isinstance(part, int):
            out += f"[{part}]"
        elif not (part.startswith("<") and part.endswith(">")):  # conditions' <kind> tags
            out += f".{part}" if out else part
    return out or "(top level)"


def read_yaml(path: Path, rel: str) -> dict[str, Any]:
    try:
        data = yaml.safe_load(path.read_text(encoding="utf-8"))
    except yaml.YAMLError as exc:
        raise DefinitionError(f"{rel}: not valid YAML: {exc}") from exc
    if data is None:
        data = {}
    if not isinstance(data, dict):
        raise DefinitionError(f"{rel}: (top level): expected a mapping, got {type(data).__name__}")
    return data


def validate_model(model: type[M], data: dict[str, Any], rel: str) -> M:
    try:
        return model.model_validate(data)
    except ValidationError as exc:
        problems = "; ".join(
            f"{format_path(e['loc'])}: {e['msg'].removeprefix('Value error, ')}"
            for e in exc.errors())
        raise DefinitionError(f"{rel}: {problems}") from exc


def load_dir(root: Path, sub: str, model: type[M]) -> tuple[dict[str, M], dict[str, str]]:
    """Models of ``root/sub/*.yaml`` by id (the file name unless given), and the file each
    came from (for cross-reference errors)."""
    items: dict[str, M] = {}
    files: dict[str, str] = {}
    for path in sorted((root / sub).glob("*.y*ml")):
        rel = f"{sub}/{path.name}"
        data = read_yaml(path, rel)
        data.setdefault("id", path.stem)
        item = validate_model(model, data, rel)
        key = str(getattr(item, "id"))  # noqa: B009 - every model read this way has an id
        if key in items:
            raise DefinitionError(f"{rel}: id: {key!r} is also defined in {files[key]}")
        items[key], files[key] = item, rel
    return items, files
