-- POST one fixed body (read from BENCH_BODY) with fixed headers; report as one JSON line.
local body_file = assert(io.open(os.getenv("BENCH_BODY"), "rb"))
wrk.method = "POST"
wrk.body = body_file:read("*a")
body_file:close()
wrk.headers["Content-Type"] = os.getenv("BENCH_CONTENT_TYPE") or "application/json"
if os.getenv("BENCH_TOKEN") then
  wrk.headers["Authorization"] = "Bearer " .. os.getenv("BENCH_TOKEN")
end
if os.getenv("BENCH_HEADER_LENGTH") then
  wrk.headers["Inference-Header-Content-Length"] = os.getenv("BENCH_HEADER_LENGTH")
end

-- The time of the last response, so that the rate is requests over the time they took. wrk
-- stops at its deadline and counts what was answered by then; a server that answers in batches
-- (M3: 16 rows every ~0.45 s, ~11 batches in a cell) spends the end of the window on a batch
-- that is not counted, on average half a batch per cell (~5% at M3). Costs wrk 2-5 µs a request.
local ffi = require("ffi")
ffi.cdef [[
typedef struct { long tv_sec; long tv_nsec; } bench_timespec;
int clock_gettime(int clock, bench_timespec *now);
]]
local now = ffi.new("bench_timespec")
local function monotonic_us()
  ffi.C.clock_gettime(1, now)  -- CLOCK_MONOTONIC
  return tonumber(now.tv_sec) * 1000000 + tonumber(now.tv_nsec) / 1000
end

local threads = {}
function setup(thread) table.insert(threads, thread) end
function init(args) first_us, last_us = monotonic_us(), 0 end
function response(status, headers, body) last_us = monotonic_us() end

function done(summary, latency, requests)
  local e = summary.errors
  local active = 0
  for _, thread in ipairs(threads) do
    active = math.max(active, thread:get("last_us") - thread:get("first_us"))
  end
  io.write(string.format(
    'BENCH_RESULT {"requests": %d, "duration_us": %d, "active_us": %d, "p50_us": %d, "p95_us": %d, ' ..
    '"p99_us": %d, "errors": %d, "non_2xx": %d, "timeouts": %d}\n',
    summary.requests, summary.duration, math.max(active, 0), latency:percentile(50), latency:percentile(95),
    latency:percentile(99), e.connect + e.read + e.write + e.timeout + e.status, e.status, e.timeout))
end
