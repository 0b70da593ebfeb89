-- wrk script for the baseline: POST the same 100-event body to a constant endpoint.
local parts = {}
for i = 1, 100 do
  parts[i] = '{"event_id":"e' .. i .. '","type":"product_view","anonymous_id":"a1",'
    .. '"timestamp":"2026-11-20T10:00:00Z","properties":{"product_id":"p1"}}'
end
wrk.method = "POST"
wrk.body = "[" .. table.concat(parts, ",") .. "]"
wrk.headers["Content-Type"] = "application/json"

done = function(summary, latency, requests)
  io.write(string.format('{"requests": %d, "seconds": %.3f, "p50_ms": %.2f, "p99_ms": %.2f}\n',
    summary.requests, summary.duration / 1e6, latency:percentile(50) / 1000,
    latency:percentile(99) / 1000))
end
