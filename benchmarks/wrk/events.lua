-- wrk script: POST batches of 100 fresh events to /v1/events.
-- The key comes from the environment (TK_KEY); each request gets new event ids.
local key = os.getenv("TK_KEY") or ""
local thread_id = 0
local counter = 0
local threads = {}

function setup(thread)
  thread_id = thread_id + 1
  thread:set("tid", thread_id)
  table.insert(threads, thread)
end

local function uuid()
  counter = counter + 1
  return string.format("%08x-%04x-4%03x-8%03x-%012x", math.random(0, 0x7fffffff), tid or 0,
    math.random(0, 0xfff), math.random(0, 0xfff), counter)
end

local template = '{"event_id":"%s","type":"product_view","anonymous_id":"a%d",'
  .. '"timestamp":"2026-11-20T10:00:00Z","properties":{"product_id":"p%d","price":19.9,'
  .. '"category":"shoes"},"context":{"page":{"url":"https://shop.example/p"},'
  .. '"user_agent":"Mozilla/5.0","locale":"de-DE"}}'

request = function()
  local parts = {}
  for i = 1, 100 do
    parts[i] = string.format(template, uuid(), math.random(1, 100000), math.random(1, 400))
  end
  return wrk.format("POST", "/v1/events",
    {["Content-Type"] = "application/json", ["Authorization"] = "Bearer " .. key},
    "[" .. table.concat(parts, ",") .. "]")
end

accepted_total = 0
response = function(status, headers, body)
  local n = string.match(body, '"accepted":(%d+)')
  if n then accepted_total = accepted_total + tonumber(n) end
end

done = function(summary, latency, requests)
  local accepted = 0
  for _, thread in ipairs(threads) do accepted = accepted + thread:get("accepted_total") end
  io.write(string.format('{"requests": %d, "errors_status": %d, "errors_socket": %d, '
    .. '"accepted": %d, "seconds": %.3f, "p50_ms": %.2f, "p99_ms": %.2f}\n',
    summary.requests, summary.errors.status,
    summary.errors.connect + summary.errors.read + summary.errors.write + summary.errors.timeout,
    accepted, summary.duration / 1e6, latency:percentile(50) / 1000,
    latency:percentile(99) / 1000))
end
