#!/usr/bin/env python3
"""Writes the fuzz target's seeds into corpus/ (run from anywhere; it replaces the corpus).

A seed is what src/check.rs decodes: the HTTP status as two little-endian bytes
(status - 100, since the target reads 100 + n % 500), the key's offset and length in the
body as one byte each, then the body. The key is given here as a string whose first
occurrence in the body is the slice the header points at.

Each seed is named after what it reaches, checked by tests/fuzz_seeds.rs:
<status>-<outcome>[-<workers>][-echo]-<what>, with the outcome one of workers, ratelimited,
auth, notfound, http, remote, malformed, and "echo" when the error text, before
redaction, shows what redaction must remove: the key whole, URL-encoded, or a piece of it
(see find_key in src/check.rs). Every key starts with vk1- (see hack/leak-check.sh).
"""

import pathlib
import struct

ODD_FIELDS = (
    '[{"id": 3.0, "status": "model_loading", "url": "", "created_at": 1700000000.75,'
    ' "cur_load": 2, "reqs_working": 1.0, "perf": "12.5", "gpu_name": "RTX 4090",'
    ' "unknown": {"nested": true}},'
    ' {"id": 4, "created_at": "2024-05-01T10:00:00"},'
    ' {"id": 5, "status": null, "created_at": "2024-05-01T10:00:00.4+02:00"},'
    ' {"status": "idle"}, {"id": "x"}, 17, null]'
)

NGINX = (
    "<html>\r\n<head><title>{0}</title></head>\r\n<body>\r\n<center><h1>{0}</h1></center>\r\n"
    "<hr><center>nginx</center>\r\n</body>\r\n</html>\r\n"
)

K_200_AUTH = "vk1-fuzz-seed-200-error-msg-7d3c9b2a41e0f5"
K_200_STRING = "vk1-fuzz-seed-200-bare-string-4f8e2d19c6a3"
K_200_NOT_FOUND = "vk1-fuzz-seed-200-not-found-a4c9e1f7b2"
K_PERCENT = "vk1-fuzz/seed+percent=encoded-63b1e9d07a"
K_LOWER = "vk1-fuzz/seed+lower=case-hex-2a90c4e5b1"
K_PARTIAL = "vk1-fuzz-seed-partial-echo-0c5a7e19b3"
K_CUT = "vk1-fuzz-seed-across-the-cut-9e4f1a6c02"
K_NOT_JSON = "vk1-fuzz-seed-not-json-5b2c8e0f7d"
K_429 = "vk1-fuzz-seed-429-echo-8a3f6c1e9d"
K_401 = "vk1-fuzz-seed-401-error-msg-b8e2f6a0d3c1"
K_401_STRING = "vk1-fuzz-seed-401-bare-string-3c7a9e2f05"
K_403 = "vk1-fuzz-seed-403-error-e1d4b7c2a960"
K_404 = "vk1-fuzz-seed-404-html-5e0d92b7c4"
K_500 = "vk1-fuzz-seed-500-error-msg-d6a1c3e8f2"


def percent(key, case="%{:02X}"):
    keep = set(b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-._~")
    return "".join(chr(b) if b in keep else case.format(b) for b in key.encode())


SEEDS = {
    # HTTP 200, every shape the parser accepts.
    "200-workers-3-bare-array": (
        '[{"id":3,"status":"idle","url":"http://198.51.100.7:8000",'
        '"created_at":"2024-05-01T10:00:00Z","cur_load":0.5,"reqs_working":1,"perf":98.5},'
        '{"id":1,"status":"loading"},'
        '{"id":2,"status":"model_loading","url":"http://203.0.113.9:8000"}]',
        "",
    ),
    "200-workers-2-object-workers": (
        '{"workers":[{"id":7,"status":"idle","url":"http://192.0.2.10:8000"},'
        '{"id":8,"status":"created"}],"total":2,"workergroup_id":4242}',
        "",
    ),
    "200-workers-3-odd-fields": (ODD_FIELDS, ""),
    "200-workers-3-string-ids": (
        '[{"id":"11","status":"idle","url":" http://198.51.100.11:8000 "},'
        '{"id":"12.0","cur_load":"0.5","reqs_working":"2"},'
        '{"id":" 13 ","perf":"1.5e3","created_at":"1714557600"}]',
        "",
    ),
    "200-workers-2-duplicate-ids": ('[{"id":5},{"id":5,"status":"idle"},{"id":4}]', ""),
    "200-workers-2-millisecond-epochs": (
        '{"workers":[{"id":21,"created_at":1700000000000},'
        '{"id":22,"created_at":"1700000000.5","status":"   "}]}',
        "",
    ),
    "200-workers-0-empty-array": ("[]", ""),
    # HTTP 200 carrying an error.
    "200-auth-echo-error_msg": (
        '{"error_msg":"authenticate_workergroup_apikey: invalid api_key ' + K_200_AUTH + '"}',
        K_200_AUTH,
    ),
    "200-auth-echo-bare-string": (
        '"authenticate_workergroup_apikey: invalid api_key ' + K_200_STRING
        + ' or workergroup 12345 not found"',
        K_200_STRING,
    ),
    "200-notfound-bare-string": ('"workergroup 4242 not found"', ""),
    "200-notfound-echo-error_msg": (
        '{"error_msg":"workergroup 5 does not exist for ' + K_200_NOT_FOUND + '"}',
        K_200_NOT_FOUND,
    ),
    "200-remote-error": ('{"error":"internal failure while listing workers"}', ""),
    "200-remote-error-not-a-string": ('{"error":{"code":17,"detail":"queue full"}}', ""),
    # The key in a field of its own (the slice), echoed in the error text only in part or
    # encoded: what the piece and percent-decoding passes of the redaction remove.
    "200-remote-echo-percent-encoded": (
        '{"key":"' + K_PERCENT + '","error":"upstream echo: GET /workers?key='
        + percent(K_PERCENT) + ' failed"}',
        K_PERCENT,
    ),
    "200-remote-echo-percent-encoded-lower-case": (
        '{"key":"' + K_LOWER + '","error":"upstream echo: key=' + percent(K_LOWER, "%{:02x}")
        + ' failed"}',
        K_LOWER,
    ),
    "200-remote-echo-partial": (
        '{"key":"' + K_PARTIAL + '","error":"token starts with ' + K_PARTIAL[:17]
        + '... and ends in ' + K_PARTIAL[-13:] + ', refused upstream"}',
        K_PARTIAL,
    ),
    # The key starts 5 bytes before the final cut (at byte 509, before the ellipsis):
    # cut first, those 5 bytes would survive, too few for the piece pass.
    "200-remote-echo-across-the-cut": (
        '{"key":"' + K_CUT + '","error":"' + "x" * 503 + " " + K_CUT + ' and more text after it"}',
        K_CUT,
    ),
    "200-malformed-html": (NGINX.format("502 Bad Gateway"), ""),
    "200-malformed-echo-not-json": ("invalid api_key " + K_NOT_JSON + "\n", K_NOT_JSON),
    "200-malformed-workers-not-a-list": ('{"workers":{"id":1,"status":"idle"}}', ""),
    "200-malformed-no-workers": ('{"success":true,"results":[]}', ""),
    "200-malformed-truncated": ('[{"id":1,"status":"idle"},{"id":2', ""),
    # HTTP 429: the plain text the service sends, the console's JSON form, an echo.
    "429-ratelimited-plain-text": ("API requests too frequent endpoint threshold=2.0", ""),
    "429-ratelimited-detail-json": (
        '{"detail": "API requests too frequent endpoint threshold=2.0"}',
        "",
    ),
    "429-ratelimited-echo-plain-text": (
        "API requests too frequent endpoint threshold=2.0 for " + K_429,
        K_429,
    ),
    # Other statuses: classified by the code alone, whatever the body.
    "401-auth-echo-error_msg": ('{"error_msg":"invalid api_key ' + K_401 + '"}', K_401),
    "401-auth-echo-bare-string": ('"unauthorized: ' + K_401_STRING + '"', K_401_STRING),
    "403-auth-echo-error": ('{"error":"permission denied for ' + K_403 + '"}', K_403),
    "403-auth-html": (NGINX.format("403 Forbidden"), ""),
    "404-notfound-error_msg": ('{"error_msg":"workergroup 4242 not found"}', ""),
    "404-notfound-echo-html": (
        "<html><body><h1>Not Found</h1><p>The requested URL /get_workergroup_workers/?api_key="
        + K_404 + " was not found on this server.</p></body></html>",
        K_404,
    ),
    "500-http-echo-error_msg": ('{"error_msg":"internal error for key ' + K_500 + '"}', K_500),
    "502-http-html": (NGINX.format("502 Bad Gateway"), ""),
    "503-http-bare-string": ('"service unavailable"', ""),
    "504-http-empty": ("", ""),
    "302-http-redirect": ("<html><body>Moved to https://run.vast.ai/</body></html>", ""),
}


def seed(status, body, key):
    body = body.encode()
    at, length = 0, 0
    if key:
        at = body.index(key.encode())
        length = len(key.encode())
    assert 100 <= status < 600 and at < 256 and length < 256, (status, at, length)
    return struct.pack("<HBB", status - 100, at, length) + body


def main():
    corpus = pathlib.Path(__file__).resolve().parent / "corpus"
    corpus.mkdir(exist_ok=True)
    for old in corpus.iterdir():
        old.unlink()
    for name, (body, key) in SEEDS.items():
        (corpus / name).write_bytes(seed(int(name.split("-")[0]), body, key))
    print(f"{len(SEEDS)} seeds in {corpus}")


if __name__ == "__main__":
    main()
