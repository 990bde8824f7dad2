#!/usr/bin/env bash
# Fails when the manual and the server disagree:
#
# * docs/http-api.md: its route table lists exactly the (method, path) pairs
#   of tesserad's /openapi.json, each with the document's authentication,
#   success status, success body fields and error statuses; each route has a
#   section whose field or parameter table matches the document; the tables
#   of the session, client and error objects match their schemas; every
#   error code and invalid-session reason is named.
# * docs/cli.md: every subcommand of `tesserad --help` (recursively) has a
#   section; every long flag each one prints is in its section's table (or
#   a parent command's) with the same default and environment variable;
#   every flag the page names exists.
# * README.md and docs/*.md: every relative link points to a file that
#   exists, and every #anchor to a heading of that file.
#
# tesserad is $TESSERAD_BIN, else target/debug/tesserad (built if missing;
# scripts/test.sh runs this after the tests, which build it afresh).
set -euo pipefail
cd "$(dirname "$0")/../.."

bin="${TESSERAD_BIN:-target/debug/tesserad}"
if [[ -z "${TESSERAD_BIN:-}" && ! -x "$bin" ]]; then
  cargo build -q -p tesserad
fi
[[ -x "$bin" ]] || { echo "docs-contract: no tesserad at $bin" >&2; exit 1; }

work=$(mktemp -d)
key="tsk_docs-contract-$(od -An -N8 -tx1 /dev/urandom | tr -d ' \n')"
# A clean environment: TESSERA_* variables would change defaults and help text.
clean_env=(env $(env | sed -n 's/^\(TESSERA_[A-Za-z0-9_]*\)=.*/-u \1/p'))
"${clean_env[@]}" "$bin" serve --store memory: --data-dir "$work" --api-key "$key" \
  --listen 127.0.0.1:0 --log-level warn >"$work/out" 2>"$work/err" &
server=$!
cleanup() {
  kill "$server" 2>/dev/null || true
  wait "$server" 2>/dev/null || true
  rm -rf "$work"
}
trap cleanup EXIT

url=""
for _ in $(seq 1 100); do
  url=$(sed -n 's/^tesserad listening on \(http[^ ]*\).*/\1/p' "$work/out")
  [[ -n "$url" ]] && break
  kill -0 "$server" 2>/dev/null || { cat "$work/err" >&2; exit 1; }
  sleep 0.1
done
[[ -n "$url" ]] || { echo "docs-contract: tesserad did not start" >&2; cat "$work/err" >&2; exit 1; }
curl -fsS "$url/openapi.json" >"$work/openapi.json"

"${clean_env[@]}" python3 - "$bin" "$work/openapi.json" <<'PY'
import json
import os
import re
import subprocess
import sys

BIN, OPENAPI = sys.argv[1], sys.argv[2]
METHODS = {"GET", "POST", "PUT", "PATCH", "DELETE", "HEAD", "OPTIONS"}
problems = []


def problem(where, text):
    line = f"{where}: {text}"
    if line not in problems:
        problems.append(line)


def read(path):
    with open(path, encoding="utf-8") as f:
        return f.read()


def outside_code(text):
    """The lines of a Markdown text with their numbers, fenced code left out."""
    fenced = False
    for number, line in enumerate(text.splitlines(), 1):
        if line.lstrip().startswith("```"):
            fenced = not fenced
            continue
        if not fenced:
            yield number, line


def cells(line):
    """The cells of a Markdown table row (escaped pipes kept)."""
    inner = line.strip().strip("|")
    return [c.strip().replace("\\|", "|") for c in re.split(r"(?<!\\)\|", inner)]


def tables(text):
    """Every table as (line number of its header, section heading, header, rows)."""
    found, heading, current = [], "", None
    for number, line in outside_code(text):
        if line.startswith("#"):
            heading = line.lstrip("#").strip()
        if line.lstrip().startswith("|"):
            row = cells(line)
            if current is None:
                current = (number, heading, [c.lower() for c in row], [])
                found.append(current)
            elif not set(line.strip()) <= set("|-: "):
                current[3].append((number, row))
        else:
            current = None
    return found


def unquote(cell):
    return cell.replace("`", "").strip()


# ---------------------------------------------------------------- HTTP API
doc = json.load(open(OPENAPI, encoding="utf-8"))
schemas = doc.get("components", {}).get("schemas", {})


def resolve(schema):
    while isinstance(schema, dict) and "$ref" in schema:
        schema = schemas[schema["$ref"].rsplit("/", 1)[1]]
    return schema or {}


def json_properties(holder):
    schema = holder.get("content", {}).get("application/json", {}).get("schema")
    return set(resolve(schema).get("properties", {})) if schema else set()


page = "docs/http-api.md"
api_text = read(page)
api_tables = tables(api_text)
routes = {}
for path, operations in doc["paths"].items():
    for method, operation in operations.items():
        if method.upper() in METHODS:
            routes[(method.upper(), path)] = operation

route_table = next((t for t in api_tables if t[2][:2] == ["method", "path"]), None)
if route_table is None:
    problem(page, "no route table (a table whose columns start with `method | path`)")
else:
    _, _, header, rows = route_table
    column = {name: header.index(name) for name in ("auth", "success", "errors") if name in header}
    missing_columns = {"auth", "success", "errors"} - set(column)
    if missing_columns:
        problem(page, f"the route table has no column {sorted(missing_columns)}")
    listed = {}
    for number, row in rows:
        key = (row[0].upper(), unquote(row[1]))
        where = f"{page}:{number}"
        if key in listed:
            problem(where, f"{key[0]} {key[1]} is listed twice")
        listed[key] = row
        operation = routes.get(key)
        if operation is None:
            problem(where, f"{key[0]} {key[1]} is not in /openapi.json")
            continue
        if missing_columns:
            continue
        statuses = sorted(operation["responses"])
        success = [s for s in statuses if s.startswith("2")]
        failures = [s for s in statuses if not s.startswith("2")]
        auth = "API key" if operation.get("security") else "none"
        if row[column["auth"]] != auth:
            problem(where, f"{key[0]} {key[1]}: auth is `{auth}` in /openapi.json, the table says `{row[column['auth']]}`")
        shown = re.findall(r"\b[1-5]\d\d\b", row[column["success"]])
        if shown != success:
            problem(where, f"{key[0]} {key[1]}: success status {success} in /openapi.json, the table says {shown}")
        shown = sorted(re.findall(r"\b[1-5]\d\d\b", row[column["errors"]]))
        if shown != failures:
            problem(where, f"{key[0]} {key[1]}: error statuses {failures} in /openapi.json, the table says {shown}")
        if success:
            fields = json_properties(operation["responses"][success[0]])
            braces = re.search(r"\{([^}]*)\}", row[column["success"]])
            named = {f.strip().rstrip("?") for f in braces.group(1).split(",")} if braces else set()
            if fields and named != fields:
                problem(where, f"{key[0]} {key[1]}: the success body has fields {sorted(fields)}, the table says {sorted(named)}")
    for key in sorted(set(routes) - set(listed)):
        problem(page, f"{key[0]} {key[1]} is in /openapi.json but not in the route table")

# A section per route, whose field or parameter table matches the document.
sections = {}
for number, line in outside_code(api_text):
    m = re.match(r"^###\s+`?([A-Z]+)\s+(/\S*?)`?\s*$", line)
    if m:
        sections[(m.group(1), m.group(2))] = number
for key, operation in sorted(routes.items()):
    if key not in sections:
        problem(page, f"no section `### {key[0]} {key[1]}`")
        continue
    heading = f"{key[0]} {key[1]}"
    body = operation.get("requestBody")
    fields = json_properties(body) if body else set()
    params = {p["name"] for p in operation.get("parameters", [])}
    success = [s for s in sorted(operation["responses"]) if s.startswith("2")]
    returned = json_properties(operation["responses"][success[0]]) if success else set()
    for kind, expected in (("field", fields), ("parameter", params), ("response field", returned)):
        table = next((t for t in api_tables if t[1].strip("`") == heading and t[2][0] == kind), None)
        if table is None and kind == "response field":
            continue  # optional: the route table names the success body's fields
        named = {unquote(row[0]) for _, row in table[3]} if table else set()
        if named != expected:
            problem(page, f"section {heading}: {kind}s {sorted(expected)} in /openapi.json, the page lists {sorted(named)}")
for key in sorted(set(sections) - set(routes)):
    problem(f"{page}:{sections[key]}", f"section {key[0]} {key[1]} is not a route of /openapi.json")

# The shared objects, and every error code and reason.
for name, schema in (("session", "SessionView"), ("client", "ClientBody"), ("error", "ErrorBody")):
    table = next((t for t in api_tables if re.match(rf"The `{name}` (object|body)$", t[1])), None)
    expected = set(schemas.get(schema, {}).get("properties", {}))
    named = {unquote(row[0]) for _, row in table[3]} if table else set()
    if named != expected:
        problem(page, f"the `{name}` table lists {sorted(named)}; {schema} has {sorted(expected)}")
for schema in ("ErrorCode", "Reason"):
    for value in schemas.get(schema, {}).get("enum", []):
        if f"`{value}`" not in api_text:
            problem(page, f"{schema} `{value}` is not documented")

# ---------------------------------------------------------------- command line
OPTION = re.compile(r"^\s+(?:-\w, )?(--[a-z0-9][a-z0-9-]*)")


def help_of(path):
    result = subprocess.run([BIN, *path, "--help"], capture_output=True, text=True,
                            env={**os.environ, "COLUMNS": "1000"})
    if result.returncode != 0:
        problem("tesserad", f"`{' '.join(path)} --help` failed: {result.stderr.strip()}")
    return result.stdout


def parse_help(text):
    """Subcommands and {flag: (default, env)} of one --help page."""
    commands, flags, section, current = [], {}, None, None
    for line in text.splitlines():
        if re.match(r"^\S.*:$", line):
            section, current = line[:-1], None
            continue
        if section == "Commands":
            m = re.match(r"^  (\S+)", line)
            if m and m.group(1) != "help":
                commands.append(m.group(1))
        elif section == "Options":
            m = OPTION.match(line)
            if m:
                current = m.group(1)
                flags[current] = ""
            if current:
                flags[current] += " " + line
    parsed = {}
    for flag, block in flags.items():
        if flag in ("--help", "--version"):
            continue
        default = re.search(r"\[default: ([^\]]*)\]", block)
        env = re.search(r"\[env: ([A-Z0-9_]+)", block)
        parsed[flag] = (default.group(1) if default else None, env.group(1) if env else None)
    return commands, parsed


tree = {}  # "keys create" -> {flag: (default, env)}
pending = [()]
while pending:
    path = pending.pop()
    commands, flags = parse_help(help_of(path))
    tree[" ".join(path)] = flags
    pending.extend(path + (c,) for c in commands)

page = "docs/cli.md"
cli_text = read(page)
documented = {}  # "keys create" -> {flag: (line, default cell, env cell)}
heading_of = {}
for number, line in outside_code(cli_text):
    m = re.match(r"^#+\s+`tesserad(?: ([a-z -]+))?`\s*$", line)
    if m:
        heading_of[(m.group(1) or "").strip()] = number
for number, heading, header, rows in tables(cli_text):
    m = re.match(r"^`tesserad(?: ([a-z -]+))?`$", heading)
    if not m or "flag" not in header:
        continue
    command = (m.group(1) or "").strip()
    where = {name: header.index(name) for name in ("default", "environment") if name in header}
    for line_number, row in rows:
        flag = re.match(r"`?(--[a-z0-9][a-z0-9-]*)", row[header.index("flag")])
        if flag:
            documented.setdefault(command, {})[flag.group(1)] = (
                line_number,
                unquote(row[where["default"]]) if "default" in where else "",
                unquote(row[where["environment"]]) if "environment" in where else "",
            )

for command, flags in sorted(tree.items()):
    if command and command not in heading_of:
        problem(page, f"no section for `tesserad {command}`")
    # The root command takes serve's flags; a subcommand inherits its parents' sections.
    owners = ["serve"] if command == "" else [" ".join(command.split()[:i]) for i in range(len(command.split()), 0, -1)]
    for flag, (default, env) in sorted(flags.items()):
        entry = next((documented[o][flag] for o in owners if flag in documented.get(o, {})), None)
        if entry is None:
            problem(page, f"`tesserad {command or 'serve'}` has {flag}, which its table does not list")
            continue
        line, default_cell, env_cell = entry
        if default is not None and default not in default_cell:
            problem(f"{page}:{line}", f"{flag}: the default is `{default}`, the table says `{default_cell}`")
        named_env = set(re.findall(r"TESSERA_[A-Z0-9_]+", env_cell))
        if named_env != ({env} if env else set()):
            problem(f"{page}:{line}", f"{flag}: the environment variable is {env or 'none'}, the table says {sorted(named_env) or 'none'}")
for command, flags in sorted(documented.items()):
    for flag, (line, _, _) in sorted(flags.items()):
        if command not in tree:
            problem(f"{page}:{line}", f"`tesserad {command}` is not a command")
        elif flag not in tree[command]:
            problem(f"{page}:{line}", f"`tesserad {command}` has no {flag}")
for command, line in sorted(heading_of.items()):
    if command not in tree:
        problem(f"{page}:{line}", f"`tesserad {command}` is not a command")
every_flag = {f for flags in tree.values() for f in flags} | {"--help", "--version"}
for number, line in outside_code(cli_text):
    for flag in re.findall(r"(?<![\w-])--[a-z][a-z0-9-]*", line):
        if flag not in every_flag:
            problem(f"{page}:{number}", f"{flag} is not a flag of any tesserad command")

# ---------------------------------------------------------------- links


def slug(heading):
    text = re.sub(r"\[([^\]]*)\]\([^)]*\)", r"\1", heading).strip().lower()
    return re.sub(r"[^\w\- ]", "", text).replace(" ", "-")


def anchors(path):
    seen, result = {}, set()
    for _, line in outside_code(read(path)):
        m = re.match(r"^#{1,6}\s+(.*?)\s*#*\s*$", line)
        if m:
            base = slug(m.group(1))
            n = seen.get(base, 0)
            seen[base] = n + 1
            result.add(base if n == 0 else f"{base}-{n}")
    return result


pages = ["README.md"] + sorted(os.path.join("docs", f) for f in os.listdir("docs") if f.endswith(".md"))
LINK = re.compile(r"!?\[[^\]]*\]\(\s*<?([^)\s>]+)>?(?:\s+\"[^\"]*\")?\s*\)|^\s*\[[^\]]+\]:\s*(\S+)")
for source in pages:
    for number, line in outside_code(read(source)):
        line = re.sub(r"`[^`]*`", "", line)
        for m in LINK.finditer(line):
            target = m.group(1) or m.group(2)
            if re.match(r"^[a-z][a-z0-9+.-]*:", target):
                continue  # https:, mailto: …
            file, _, anchor = target.partition("#")
            path = os.path.normpath(os.path.join(os.path.dirname(source), file)) if file else source
            where = f"{source}:{number}"
            if not os.path.exists(path):
                problem(where, f"the link target {target} does not exist")
            elif anchor and path.endswith(".md") and anchor not in anchors(path):
                problem(where, f"{path} has no heading for #{anchor}")

if problems:
    print("docs-contract: the manual and the server disagree:", file=sys.stderr)
    for p in problems:
        print(f"  {p}", file=sys.stderr)
    sys.exit(1)
print(f"docs-contract: {len(routes)} routes, {sum(len(f) for f in tree.values())} flags "
      f"of {len(tree)} commands and the links of {len(pages)} pages agree with the manual")
PY
