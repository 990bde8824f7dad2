#!/usr/bin/env python3
"""Creates sessions over HTTP the way a browser would (POST /login), and
writes one line per session for the wrk script: the `Cookie` header value a
browser would send back, plus a tab and the CSRF token when the app returned
one in its JSON answer (`csrf_token`).

    load_sessions.py --url http://127.0.0.1:PORT --count 10000 --out cookies.txt

Then checks the answers of every route for the first sessions (2xx, never a
redirect), so that a run whose routes fail is rejected before measuring.
"""

import argparse
import http.client
import json
import sys
import threading
import urllib.parse


def cookie_pairs(response):
    """The name=value pairs of every Set-Cookie of a response, as a browser
    would send them back (a removal, with an empty value, is dropped)."""
    pairs = []
    for header, value in response.getheaders():
        if header.lower() != "set-cookie":
            continue
        pair = value.split(";", 1)[0].strip()
        name, _, cookie_value = pair.partition("=")
        if cookie_value == "":
            pairs = [p for p in pairs if not p.startswith(name + "=")]
            continue
        pairs = [p for p in pairs if not p.startswith(name + "=")] + [pair]
    return pairs


def worker(host, port, count, results, errors):
    connection = http.client.HTTPConnection(host, port, timeout=30)
    try:
        for _ in range(count):
            connection.request("POST", "/login", body=b"", headers={"Content-Length": "0"})
            response = connection.getresponse()
            body = response.read()
            if not 200 <= response.status < 300:
                errors.append(f"POST /login answered {response.status}: {body[:200]!r}")
                return
            pairs = cookie_pairs(response)
            if not pairs:
                errors.append("POST /login set no cookie")
                return
            csrf = ""
            try:
                csrf = json.loads(body).get("csrf_token") or ""
            except (ValueError, AttributeError):
                pass
            results.append("; ".join(pairs) + ("\t" + csrf if csrf else ""))
    except OSError as error:
        errors.append(f"POST /login failed: {error}")
    finally:
        connection.close()


def check_routes(host, port, lines, sample):
    """Every route answers 2xx for the first `sample` sessions; GET /me
    answers 401 without a cookie."""
    connection = http.client.HTTPConnection(host, port, timeout=30)
    try:
        connection.request("GET", "/me")
        response = connection.getresponse()
        response.read()
        if response.status != 401:
            return f"GET /me without a cookie answered {response.status}, not 401"
        for line in lines[:sample]:
            cookie, _, csrf = line.partition("\t")
            headers = {"Cookie": cookie, "Content-Length": "0"}
            if csrf:
                headers["X-CSRF-Token"] = csrf
            for method, path in (("GET", "/me"), ("POST", "/incr"), ("GET", "/me")):
                connection.request(method, path, body=b"" if method == "POST" else None, headers=headers)
                response = connection.getresponse()
                body = response.read()
                if not 200 <= response.status < 300:
                    return f"{method} {path} answered {response.status}: {body[:200]!r}"
                if method == "GET":
                    answer = json.loads(body)
                    if "user_id" not in answer or "counter" not in answer:
                        return f"GET /me answered {body[:200]!r}, without user_id and counter"
    except (OSError, ValueError) as error:
        return f"checking the routes failed: {error}"
    finally:
        connection.close()
    return None


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--url", required=True)
    parser.add_argument("--count", type=int, default=10000)
    parser.add_argument("--out", required=True)
    parser.add_argument("--connections", type=int, default=8)
    parser.add_argument("--check", type=int, default=20, help="sessions whose routes are checked")
    args = parser.parse_args()
    url = urllib.parse.urlsplit(args.url)
    host, port = url.hostname, url.port

    results, errors = [], []
    per_worker = [args.count // args.connections] * args.connections
    for i in range(args.count % args.connections):
        per_worker[i] += 1
    threads = [
        threading.Thread(target=worker, args=(host, port, n, results, errors)) for n in per_worker
    ]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    if errors:
        sys.exit(f"creating sessions failed: {errors[0]}")
    if len(results) != args.count:
        sys.exit(f"created {len(results)} sessions instead of {args.count}")
    with open(args.out, "w", encoding="utf-8") as out:
        out.write("\n".join(results) + "\n")

    # The check runs on a copy of the first sessions' answers; it increments
    # their counters, which the benchmark does anyway.
    problem = check_routes(host, port, results, args.check)
    if problem:
        sys.exit(problem)
    cookie_bytes = sum(len(line.partition("\t")[0]) for line in results) / len(results)
    print(json.dumps({"sessions": len(results), "cookie_bytes": round(cookie_bytes, 1)}))


if __name__ == "__main__":
    main()
