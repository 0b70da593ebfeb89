-- wrk script: POST /v1/decide as visits (a user asks on 5 pages in a row, users drawn
-- from 10,000), like benchmarks/decide_http.py's own client.
-- Env: TK_KEY (ingest key); TK_RATE (requests/s of each wrk thread; 0 = as fast as the
-- connections go). With a rate, requests are paced open-loop on a fixed schedule
-- (request i is due at start + i / rate, on whichever connection is free): wrk measures
-- latency from when a request is sent, so requests sent more than 1 ms after their due
-- time (no connection was free) are counted as "late"; a run with late requests did
-- not sustain its rate.
local ffi = require("ffi")
ffi.cdef[[
typedef struct { long tv_sec; long tv_nsec; } timespec;
int clock_gettime(int clk_id, timespec *tp);
]]
local ts = ffi.new("timespec")
local function now_ms()
  ffi.C.clock_gettime(1, ts)  -- CLOCK_MONOTONIC
  return tonumber(ts.tv_sec) * 1000 + tonumber(ts.tv_nsec) / 1e6
end
local key = os.getenv("TK_KEY") or ""
local rate = tonumber(os.getenv("TK_RATE") or "0")
local countries = {"DE", "FR", "US", "GB", "AT"}
local devices = {"mobile", "desktop"}
local threads = {}

function setup(thread)
  table.insert(threads, thread)
end

local user, country, device, page = 0, "DE", "mobile", 5
local headers = {["Content-Type"] = "application/json", ["Authorization"] = "Bearer " .. key}

function init(args)
  math.randomseed(os.time() + math.random(1, 1000000))
end

request = function()
  if page >= 5 then
    user, country, device, page = math.random(0, 9999), countries[math.random(1, 5)],
      devices[math.random(1, 2)], 0
  end
  page = page + 1
  local body = string.format('{"user_id":"user-%d","attributes":{"country":"%s"},'
    .. '"context":{"device":"%s","path":"/page/%d"}}', user, country, device, page)
  return wrk.format("POST", "/v1/decide", headers, body)
end

next_due, late = nil, 0  -- globals: done() reads each thread's count
if rate > 0 then
  local interval = 1000 / rate
  delay = function()  -- wrk calls it before each request and waits that many ms
    local now = now_ms()
    local slot = next_due or now
    next_due = slot + interval
    if slot < now - 1 then late = late + 1 end
    return math.max(0, slot - now)
  end
end

done = function(summary, latency, requests)
  local total_late = 0
  for _, thread in ipairs(threads) do total_late = total_late + thread:get("late") end
  io.write(string.format('{"requests": %d, "errors_status": %d, "errors_socket": %d, '
    .. '"late": %d, "seconds": %.3f, "p50_ms": %.3f, "p99_ms": %.3f, "max_ms": %.3f}\n',
    summary.requests, summary.errors.status,
    summary.errors.connect + summary.errors.read + summary.errors.write + summary.errors.timeout,
    total_late, summary.duration / 1e6, latency:percentile(50) / 1000,
    latency:percentile(99) / 1000, latency.max / 1000))
end
