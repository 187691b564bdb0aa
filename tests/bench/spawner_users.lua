-- wrk script for tests/bench/spawner_bench.py: requests as a browser sends them for users
-- <prefix><offset> .. <prefix><offset+N-1>, in turn. Requests are formatted once, in init().
--   wrk -t1 -c50 -d10s -s spawner_users.lua URL -- <kind> <N> <prefix> <offset> [<host prefix>]
-- kind: "navigate" (a page load: Sec-Fetch-Mode navigate, Accept text/html, the only request
-- that may wake) or "fetch" (a script's fetch(): Sec-Fetch-Mode cors, Accept JSON, refused 503).
-- With <host prefix>, each request also carries the headers HAProxy adds for the spawner
-- (X-Director-Label, X-Director-Container-Host = <host prefix>-<label>): wrk then talks to the
-- spawner's pages listener directly. done() prints one line "BENCH {json}" with the statuses.

local requests = {}
local count = 0
local index = 0
local threads = {}

function setup(thread)
  table.insert(threads, thread)
end

function init(args)
  local kind = args[1] or "navigate"
  local n = tonumber(args[2]) or 1
  local prefix = args[3] or "bench"
  local offset = tonumber(args[4]) or 0
  local host_prefix = args[5]
  for k = 0, n - 1 do
    local user = prefix .. (k + offset)
    local headers = {["X-Forwarded-Preferred-Username"] = user}
    if kind == "fetch" then
      headers["Accept"] = "application/json"
      headers["Sec-Fetch-Mode"] = "cors"
      headers["Sec-Fetch-Dest"] = "empty"
      headers["Sec-Fetch-Site"] = "same-origin"
    else
      headers["Accept"] = "text/html,application/xhtml+xml"
      headers["Sec-Fetch-Mode"] = "navigate"
      headers["Sec-Fetch-Dest"] = "document"
      headers["Sec-Fetch-Site"] = "none"
    end
    if host_prefix then
      headers["X-Director-Label"] = user
      headers["X-Director-Container-Host"] = host_prefix .. "-" .. user
    end
    requests[k + 1] = wrk.format("GET", "/", headers)
  end
  count = n
  index = 0
  ok, unavailable, other = 0, 0, 0
end

function request()
  index = index + 1
  if index > count then index = 1 end
  return requests[index]
end

function response(status, headers, body)
  if status == 200 then ok = ok + 1
  elseif status == 503 then unavailable = unavailable + 1
  else other = other + 1 end
end

function done(summary, latency, _)
  local s200, s503, sother = 0, 0, 0
  for _, thread in ipairs(threads) do
    s200 = s200 + (thread:get("ok") or 0)
    s503 = s503 + (thread:get("unavailable") or 0)
    sother = sother + (thread:get("other") or 0)
  end
  io.write(string.format(
    'BENCH {"requests": %d, "duration_us": %d, "p50_us": %d, "p99_us": %d, "max_us": %d, ' ..
    '"status": {"200": %d, "503": %d, "other": %d}, ' ..
    '"errors": {"connect": %d, "read": %d, "write": %d, "timeout": %d}}\n',
    summary.requests, summary.duration, latency:percentile(50), latency:percentile(99), latency.max,
    s200, s503, sother,
    summary.errors.connect, summary.errors.read, summary.errors.write, summary.errors.timeout))
end
