-- wrk script for tests/soak/soak.py: rotates X-Forwarded-Preferred-Username over N users,
-- optionally paces each connection (delay in ms between its requests), and tallies statuses.
--   wrk -t1 -c50 -d600s -s soak.lua URL -- <N> <prefix> <delay_ms>
-- done() prints one line "SOAK {json}".

local requests = {}
local count, index, pause = 0, 0, 0
statuses = {}  -- global: done() reads it from each thread (thread:get)
local threads = {}

function setup(thread)
  table.insert(threads, thread)
end

function init(args)
  local n = tonumber(args[1]) or 1
  local prefix = args[2] or "soak"
  pause = tonumber(args[3]) or 0
  for k = 0, n - 1 do
    -- A page load (Accept: text/html): HAProxy's wake policy lets only those reach the spawner.
    requests[k + 1] = wrk.format("GET", "/", {["X-Forwarded-Preferred-Username"] = prefix .. k,
                                              ["Accept"] = "text/html"})
  end
  count = n
end

function request()
  index = index % count + 1
  return requests[index]
end

function delay()
  return pause
end

-- Key: the status, plus "+refresh" when the answer retries by itself (our pages, the spawner).
function response(status, headers, body)
  local key = tostring(status)
  if headers["Refresh"] or headers["refresh"] then key = key .. "+refresh" end
  statuses[key] = (statuses[key] or 0) + 1
end

function done(summary, latency, _)
  local total = {}
  for _, thread in ipairs(threads) do
    for status, n in pairs(thread:get("statuses")) do total[status] = (total[status] or 0) + n end
  end
  local parts = {}
  for status, n in pairs(total) do parts[#parts + 1] = string.format('"%s": %d', status, n) end
  io.write(string.format(
    'SOAK {"requests": %d, "duration_us": %d, "p50_us": %d, "p99_us": %d, "max_us": %d, ' ..
    '"statuses": {%s}, "errors": {"connect": %d, "read": %d, "write": %d, "timeout": %d}}\n',
    summary.requests, summary.duration, latency:percentile(50), latency:percentile(99), latency.max,
    table.concat(parts, ", "), summary.errors.connect, summary.errors.read, summary.errors.write,
    summary.errors.timeout))
end
