-- wrk script: every request carries X-Forwarded-Preferred-Username, rotating over N users
-- <prefix><offset> .. <prefix><offset+N-1>. Requests are formatted once, in init() (100,000
-- users: about 12 MiB of Lua strings, formatted in well under a second).
--   wrk -t1 -c50 -d10s -s users.lua http://127.0.0.1:8080/ -- <N> <prefix> [<offset>] [once]
-- "once": after N responses (every user visited once) the thread prints "COVERED", flushes and
-- stops; wrk itself still runs for -d, so tests/bench/bench.py ends it on that line. A warm-up
-- thus covers every user however many there are.
-- done() prints one line "BENCH {json}" that tests/bench/bench.py reads.

local requests = {}
local count = 0
local index = 0
local responses = 0

function init(args)
  local n = tonumber(args[1]) or 1
  local prefix = args[2] or "bench"
  local offset = tonumber(args[3]) or 0
  for k = 0, n - 1 do
    -- A page load (Accept: text/html): HAProxy's wake policy lets only those reach the spawner.
    requests[k + 1] = wrk.format("GET", "/", {["X-Forwarded-Preferred-Username"] = prefix .. (k + offset),
                                              ["Accept"] = "text/html"})
  end
  count = n
  index = 0
  if args[4] == "once" then
    -- Defined only here: a response() callback costs a Lua call per response in measured runs.
    response = function()
      responses = responses + 1
      if responses == count then
        io.write("COVERED\n")
        io.flush()
        wrk.thread:stop()
      end
    end
  end
end

function request()
  index = index + 1
  if index > count then index = 1 end
  return requests[index]
end

function done(summary, latency, _)
  io.write(string.format(
    'BENCH {"requests": %d, "duration_us": %d, "p50_us": %d, "p99_us": %d, "max_us": %d, ' ..
    '"errors": {"connect": %d, "read": %d, "write": %d, "status": %d, "timeout": %d}}\n',
    summary.requests, summary.duration, latency:percentile(50), latency:percentile(99), latency.max,
    summary.errors.connect, summary.errors.read, summary.errors.write, summary.errors.status,
    summary.errors.timeout))
end
