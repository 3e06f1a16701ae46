"""The sandbox upstream and the project's fixtures, checked against Amazon's own API models.

Amazon's models are read from ../shared/amazon-models (beside the repository, Apache-2.0; never
copied into it). Where they are absent, the tests that need them skip and say so.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any
from urllib.parse import quote

import httpx
import orjson
import pytest

from partnerwatch.local_worker import free_port
from tests.gateway.harness import SELLER
from tests.gateway.pki import Pki
from tests.gateway.sandbox import (
    MODELS,
    Entry,
    Operation,
    Sandbox,
    fixture_files,
    load_definitions,
    match,
    model_files,
)

needs_models = pytest.mark.skipif(
    not model_files(),
    reason=f"Amazon's SP-API models are not at {MODELS} (../shared/amazon-models): conformance not checked",
)


def _model_by_operation() -> dict[str, tuple[dict[str, Any], str, str, dict[str, Any]]]:
    out = {}
    for path in model_files():
        doc = orjson.loads(path.read_bytes())
        for template, item in doc["paths"].items():
            for method, op in item.items():
                if isinstance(op, dict) and "operationId" in op:
                    out[op["operationId"]] = (doc, method.upper(), template, op)
    return out


def test_most_specific_entry_wins() -> None:
    op = Operation("x", "GET", "/x", __import__("re").compile("/x"), {})
    op.entries = [
        Entry(200, {"body": {}}, "any"),
        Entry(200, {"sku": {"value": "A"}, "mode": {"value": "PREVIEW"}}, "preview-a"),
        Entry(400, {"sku": {"value": "A"}}, "bad-a"),
        Entry(200, {"ids": {"value": ["1", "2"]}}, "list"),
    ]
    assert match(op, {"sku": "B"}).response == "any"  # type: ignore[union-attr]
    assert match(op, {"sku": "A"}).response == "bad-a"  # type: ignore[union-attr]
    assert match(op, {"sku": "A", "mode": "PREVIEW"}).response == "preview-a"  # type: ignore[union-attr]
    assert match(op, {"ids": ["1", "2"]}).response == "list"  # type: ignore[union-attr]
    assert match(op, {"ids": ["2", "1"]}).response == "any"  # type: ignore[union-attr]
    op.entries = op.entries[1:]
    assert match(op, {"sku": "B"}) is None


@needs_models
def test_fixtures_conform_to_amazons_models() -> None:
    import jsonschema

    models = _model_by_operation()
    checked = 0
    for operation in load_definitions(fixture_files()):
        assert operation.name in models, f"{operation.name}: no such operation in Amazon's models"
        doc, method, template, model_op = models[operation.name]
        assert (operation.method, operation.template) == (method, template), operation.name
        declared = {p["name"]: p["in"] for p in model_op.get("parameters", []) if "name" in p}
        declared.update(
            {
                p["name"]: p["in"]
                for p in doc["paths"][template].get("parameters", [])
                if "name" in p
            }
        )
        for name, place in operation.where.items():
            assert declared.get(name) == place, (
                f"{operation.name}: parameter {name} ({place}) is not the model's"
            )
        assert operation.entries, f"{operation.name}: a fixture without sandbox entries"
        for entry in operation.entries:
            response = model_op["responses"].get(str(entry.status))
            assert response is not None, f"{operation.name}: the model declares no {entry.status}"
            for name in entry.parameters:
                assert name in declared, f"{operation.name}: the model has no parameter {name}"
            schema = response.get("schema")
            if schema is not None:
                validator = jsonschema.Draft4Validator(
                    {**schema, "definitions": doc.get("definitions", {})}
                )
                errors = [e.message for e in validator.iter_errors(entry.response)]
                assert not errors, f"{operation.name} {entry.status}: {errors[:3]}"
            checked += 1
    assert checked >= 20


def _request_for(op: Operation, entry: Entry) -> tuple[str, dict[str, Any], Any, dict[str, str]]:
    values = {
        name: rule["value"]
        for name, rule in entry.parameters.items()
        if isinstance(rule, dict) and "value" in rule
    }
    path = op.template
    for name in [n for n, place in op.where.items() if place == "path"]:
        path = path.replace("{" + name + "}", quote(str(values.get(name, "any-" + name)), safe=""))
    query = {n: values[n] for n, place in op.where.items() if place == "query" and n in values}
    headers = {
        n: str(values[n]) for n, place in op.where.items() if place == "header" and n in values
    }
    body = values.get("body", {} if op.method in ("POST", "PUT", "PATCH") else None)
    return path, query, body, headers


@needs_models
def test_the_sandbox_answers_amazons_own_sandbox_requests(pki: Pki) -> None:
    operations = load_definitions(model_files())
    upstream = Sandbox(operations, SELLER).start(pki.server_context(), free_port())
    checked = skipped = 0
    try:
        with httpx.Client(verify=pki.client_context(), base_url=upstream.base_url) as http:
            token = http.post(
                "/auth/o2/token", data={"grant_type": "refresh_token", **SELLER}
            ).json()["access_token"]
            for op in operations:
                for entry in op.entries:
                    path, query, body, headers = _request_for(op, entry)
                    given = dict(query)
                    if body is not None:
                        given["body"] = body
                    # Where another entry as specific also fits this request, Amazon's choice is
                    # not defined either: leave it out.
                    given |= headers | _path_values(op, path)
                    rivals = [
                        e
                        for e in op.entries
                        if e is not entry
                        and e.specificity >= entry.specificity
                        and match(
                            Operation(op.name, op.method, op.template, op.regex, op.where, [e]),
                            given,
                        )
                        is not None
                    ]
                    if rivals:
                        skipped += 1
                        continue
                    answer = http.request(
                        op.method,
                        path,
                        params=query,
                        headers={"x-amz-access-token": token, **headers},
                        content=orjson.dumps(body) if body is not None else None,
                    )
                    assert answer.status_code == entry.status, (
                        op.name,
                        entry.parameters,
                        answer.text[:300],
                    )
                    assert answer.json() == upstream._rewrite_urls(entry.response), op.name
                    checked += 1
    finally:
        upstream.stop()
    assert checked >= 150, (checked, skipped)
    print(
        f"{checked} of Amazon's sandbox pairs answered as the model says ({skipped} ambiguous left out)"
    )


def _path_values(op: Operation, path: str) -> dict[str, str]:
    from urllib.parse import unquote

    found = op.regex.fullmatch(path)
    return {k: unquote(v) for k, v in (found.groupdict() if found else {}).items()}


def test_fixture_files_are_the_projects_own(tmp_path: Path) -> None:
    """The fixtures are written for this project (own ids), not copies of Amazon's entries."""
    for path in fixture_files():
        text = path.read_text()
        assert "PartnerWatch fixtures" in text or "pw-" in text, path.name
        assert "GM-ZDPI-9B4E" not in text and "d34o8swod1owfl" not in text, path.name
