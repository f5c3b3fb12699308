"""schemathesis hooks for server/tests/api_contract.sh (loaded through SCHEMATHESIS_HOOKS).

POST /v1/musicians/bulk takes `application/x-ndjson`, a media type schemathesis has no
serializer for; its body schema is a string, which the text/plain serializer sends as is.

`before_call` makes the requests schemathesis generates as valid obey the rules the document
states in words because OpenAPI cannot state them (a rule between the path and the body, between
query parameters, or between a request and the server's state). Only requests generated as
valid are touched: invalid ones are sent as generated, and schemathesis revalidates an edited
request before judging its answer. Each rule is stated in the operation's parameter or 422
description in the document.
"""
import hashlib
import json
import re

import schemathesis

schemathesis.serializer.alias("application/x-ndjson", "text/plain")

# The Idempotency-Key syntax of the document (`^[!-~]{1,255}$`).
KEY = re.compile(r"^[!-~]{1,255}$")
# Operations whose body's `id` must equal the path's (a 422 otherwise).
PUT_BY_ID = {("PUT", "/v1/musicians/{id}"), ("PUT", "/v1/gigs/{id}")}
CIRCLE = {"lat": 40.4, "lon": -3.7, "radius_km": 50}
WEIGHTS = ("w_proximity", "w_rating", "w_genres", "w_price", "w_level")


def _search_query(query):
    """GET /v1/musicians/search: `lat`, `lon` and `radius_km` go together, `sort=distance` needs
    them, `max_fee` and `currency` go together (each documented; a 422 otherwise)."""
    given = [k for k in CIRCLE if k in query]
    if given or query.get("sort") == "distance":
        for k, v in CIRCLE.items():
            query.setdefault(k, v)
    if "max_fee" in query:
        query.setdefault("currency", "EUR")
    if "currency" in query:
        query.setdefault("max_fee", 10000)
    # At most 16 instruments and 16 genres, counted after splitting comma lists and across
    # repeated parameters (each value's parts are bounded by the schema's pattern).
    for name in ("instrument", "genre"):
        if name in query:
            values = query[name] if isinstance(query[name], list) else [query[name]]
            parts = [p for v in values for p in str(v).split(",") if p.strip()]
            if len(parts) > 16:
                query[name] = parts[:16]
    return query


def _match_query(query):
    """GET /v1/gigs/{id}/matches: the weights must not all be zero (documented; a 422)."""
    if all(k in query for k in WEIGHTS) and all(query[k] == 0 for k in WEIGHTS):
        query["w_level"] = 1
    return query


def _positive(case):
    meta = case.meta
    return meta is not None and meta.generation.mode.is_positive


def _fingerprint(case):
    body = case.body if isinstance(case.body, (dict, list, str, int, float, bool)) else None
    text = json.dumps([case.method, case.formatted_path, body], sort_keys=True, default=str)
    return hashlib.sha256(text.encode()).hexdigest()[:8]


@schemathesis.hook
def before_call(context, case, kwargs):
    if not _positive(case):
        return
    op = (case.method.upper(), case.path)
    # PUT: the body's `id` must equal the path's; the schema of each knows only itself.
    if op in PUT_BY_ID and isinstance(case.body, dict) and isinstance(case.body.get("id"), str):
        case.path_parameters = {**(case.path_parameters or {}), "id": case.body["id"]}
    # Rules between query parameters.
    if op == ("GET", "/v1/musicians/search") and case.query is not None:
        case.query = _search_query(dict(case.query))
    if op == ("GET", "/v1/gigs/{id}/matches") and case.query is not None:
        case.query = _match_query(dict(case.query))
    # Idempotency-Key: a key reused with another request is refused (422, documented) by
    # design. Generated keys repeat (`0`, `A`, …) across unrelated requests; suffixing a digest
    # of the request keeps equal requests on equal keys (the replay is still exercised) and
    # gives different requests different keys.
    headers = case.headers
    if headers:
        for name in list(headers):
            if name.lower() == "idempotency-key" and isinstance(headers[name], str):
                key = headers[name]
                if KEY.match(key):
                    new = dict(headers)
                    new[name] = f"{key[:246]}.{_fingerprint(case)}"
                    case.headers = new


@schemathesis.hook
def filter_case(context, case):
    # POST /v1/musicians/bulk: its body is NDJSON text (schema `string`). A "negative" body that
    # is a JSON value other than a string reaches the server as its text, a string like any other
    # (the server reads each line and reports bad ones with 200, as documented): it is not
    # invalid on the wire, so it is not sent as an invalid case.
    if (case.method.upper(), case.path) == ("POST", "/v1/musicians/bulk"):
        meta = case.meta
        negative = meta is not None and meta.generation.mode.is_negative
        if negative and not isinstance(case.body, str):
            return False
    return True
