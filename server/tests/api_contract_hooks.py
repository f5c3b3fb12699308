"""schemathesis hooks for server/tests/api_contract.sh (loaded through SCHEMATHESIS_HOOKS).

POST /v1/musicians/bulk takes `application/x-ndjson`, a media type schemathesis has no
serializer for; its body schema is a string, which the text/plain serializer sends as is.
"""
import schemathesis

schemathesis.serializer.alias("application/x-ndjson", "text/plain")
