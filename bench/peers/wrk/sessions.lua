-- wrk script for bench/peers: every request of one route, round-robin over a
-- file of session cookies, and a one-line JSON result for run.sh.
--
--   wrk -t2 -c64 -d10s -s sessions.lua http://127.0.0.1:PORT -- METHOD PATH COOKIES THREADS
--
-- COOKIES holds one session per line: the `Cookie` header value, optionally
-- followed by a tab and a CSRF token (sent as `X-CSRF-Token`). `-` sends no
-- cookie (POST /login of a new visitor). Each wrk thread starts at its own
-- offset (THREADS is wrk's -t) so that threads do not walk the sessions in
-- lockstep.
--
-- init() only reads the file into one string: wrk runs each thread's init()
-- one after the other and starts a thread as soon as its own init() returns,
-- but starts its clock only once every thread has started, so a slow init
-- (formatting a request per line of a large file) let the first thread send
-- requests that wrk counted over a duration that left them out. A request is
-- built from its line the first time it is sent and kept for the next round.
--
-- The response() hook is deliberately not defined: it makes wrk parse every
-- header into Lua and would cost the load generator, which shares the CPUs
-- with the server, more than the servers under test. Answers with a status of
-- 400 and above are counted by wrk itself (errors.status); run.sh checks the
-- 2xx of every route before each measurement.

local threads = {}

function setup(thread)
  thread:set("index", #threads)
  table.insert(threads, thread)
end

local method, path
local data = nil -- the cookie file's text, ending with a newline
local prefix     -- request line and Host header
local pos = 1    -- where the next request's line starts in data
local built = {} -- request text, by the offset of its line
local after = {} -- the offset of the next line, by the offset of a line
local plain = nil

function init(args)
  method = args[1] or "GET"
  path = args[2] or "/"
  local file = args[3] or "-"
  if file == "-" then
    return
  end
  local f = assert(io.open(file, "rb"))
  data = f:read("*a")
  f:close()
  if data:sub(-1) ~= "\n" then
    data = data .. "\n"
  end
  if not data:find("[^\n]") then
    error("no sessions in " .. file)
  end
  if data:sub(1, 1) == "\n" or data:find("\n\n", 1, true) then
    error("an empty line in " .. file)
  end
  prefix = string.format("%s %s HTTP/1.1\r\nHost: %s\r\n", method, path, wrk.headers["Host"])
  -- This thread's first line: the one at or after its share of the file.
  local count = tonumber(args[4]) or 1
  pos = math.floor(index * #data / count) + 1
  if pos > 1 and data:sub(pos - 1, pos - 1) ~= "\n" then
    local newline = data:find("\n", pos, true)
    pos = newline + 1
  end
  if pos > #data then
    pos = 1
  end
end

-- The request for the line at `at`, and the offset of the line after it.
local function build(at)
  local newline = data:find("\n", at, true)
  local line = data:sub(at, newline - 1)
  local cookie, csrf = line:match("^([^\t]*)\t(.*)$")
  if cookie == nil then
    cookie = line
  end
  local headers = "Cookie: " .. cookie .. "\r\n"
  if csrf ~= nil and csrf ~= "" then
    headers = headers .. "X-CSRF-Token: " .. csrf .. "\r\n"
  end
  local next_at = newline + 1
  if next_at > #data then
    next_at = 1
  end
  return prefix .. headers .. "\r\n", next_at
end

function request()
  if data == nil then
    if plain == nil then
      plain = wrk.format(method, path)
    end
    return plain
  end
  local req = built[pos]
  if req == nil then
    req, after[pos] = build(pos)
    built[pos] = req
  end
  pos = after[pos]
  return req
end

function done(summary, latency, requests)
  local errors = summary.errors
  local seconds = summary.duration / 1e6
  io.write(string.format(
    'WRK_RESULT {"requests":%d,"duration_s":%.3f,"requests_per_s":%.1f,' ..
    '"p50_us":%d,"p90_us":%d,"p99_us":%d,"max_us":%d,' ..
    '"errors":{"connect":%d,"read":%d,"write":%d,"timeout":%d,"status":%d}}\n',
    summary.requests, seconds, summary.requests / seconds,
    latency:percentile(50), latency:percentile(90), latency:percentile(99), latency.max,
    errors.connect, errors.read, errors.write, errors.timeout, errors.status))
end
