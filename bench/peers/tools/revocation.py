#!/usr/bin/env python3
"""How fast a logout takes effect, on the server that handled it and on a
second server of the same deployment, for bench/peers/revocation.sh.

    revocation.py --a http://127.0.0.1:PORT_A --b http://127.0.0.1:PORT_B

Logs in on A, checks whether B accepts the session (are sessions shared?),
logs out on A, then replays the old cookie on A and on B every millisecond
until each refuses it (as a thief holding a copy of the cookie would). Prints
one JSON object: shared, and the milliseconds until A and B refused the
copy (null if still accepted after --limit seconds).
"""

import argparse
import http.client
import json
import time
import urllib.parse


def request(url, method, path, cookie=None, csrf=None):
    parts = urllib.parse.urlsplit(url)
    connection = http.client.HTTPConnection(parts.hostname, parts.port, timeout=10)
    headers = {"Content-Length": "0"} if method == "POST" else {}
    if cookie:
        headers["Cookie"] = cookie
    if csrf:
        headers["X-CSRF-Token"] = csrf
    try:
        connection.request(method, path, body=b"" if method == "POST" else None, headers=headers)
        response = connection.getresponse()
        body = response.read()
        return response.status, response.getheaders(), body
    finally:
        connection.close()


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--a", required=True)
    parser.add_argument("--b", required=True)
    parser.add_argument("--limit", type=float, default=15.0)
    args = parser.parse_args()

    status, headers, body = request(args.a, "POST", "/login")
    if status != 200:
        raise SystemExit(f"POST /login answered {status}")
    cookie = "; ".join(
        value.split(";", 1)[0] for name, value in headers if name.lower() == "set-cookie"
    )
    csrf = json.loads(body).get("csrf_token")
    on_a, _, _ = request(args.a, "GET", "/me", cookie)
    on_b, _, _ = request(args.b, "GET", "/me", cookie)
    if on_a != 200:
        raise SystemExit(f"GET /me on the server that created the session answered {on_a}")
    shared = on_b == 200

    status, _, _ = request(args.a, "POST", "/logout", cookie, csrf)
    if status != 200:
        raise SystemExit(f"POST /logout answered {status}")
    start = time.monotonic()
    refused = {"a": None, "b": None if shared else 0.0}
    while time.monotonic() - start < args.limit and None in refused.values():
        for name, url in (("a", args.a), ("b", args.b)):
            if refused[name] is None:
                code, _, _ = request(url, "GET", "/me", cookie)
                if code == 401:
                    refused[name] = (time.monotonic() - start) * 1000
        time.sleep(0.001)
    print(json.dumps({
        "shared": shared,
        "refused_on_same_server_ms": refused["a"],
        "refused_on_other_server_ms": refused["b"] if shared else None,
    }))


if __name__ == "__main__":
    main()
