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
local sessions = {}
local next_session = 1

function init(args)
  method = args[1] or "GET"
  path = args[2] or "/"
  local file = args[3] or "-"
  if file ~= "-" then
    for line in io.lines(file) do
      local cookie, csrf = line:match("^([^\t]*)\t(.*)$")
      if cookie == nil then
        cookie = line
      end
      local headers = { ["Cookie"] = cookie }
      if csrf ~= nil and csrf ~= "" then
        headers["X-CSRF-Token"] = csrf
      end
      sessions[#sessions + 1] = wrk.format(method, path, headers)
    end
    if #sessions == 0 then
      error("no sessions in " .. file)
    end
    local count = tonumber(args[4]) or 1
    next_session = math.floor(index * #sessions / count) + 1
  end
end

local plain = nil

function request()
  if #sessions == 0 then
    if plain == nil then
      plain = wrk.format(method, path)
    end
    return plain
  end
  local req = sessions[next_session]
  next_session = next_session + 1
  if next_session > #sessions then
    next_session = 1
  end
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
