-- wrk script of the benchmarks: every request carries one of the bearer tokens listed in a
-- file (one per line), taken in turn; each thread starts at a different place in the list.
-- Usage: wrk ... -s bench/wrk/tokens.lua <url> -- <tokens file>
-- At the end it prints two lines the runner parses:
--   bench-summary requests=.. sent=.. non2xx3xx=.. connect=.. read=.. write=.. timeout=..
--                 duration_us=.. bytes=.. mean_us=.. p50_us=.. p99_us=.. max_us=..
--   bench-quantiles <latency in µs at the 0.05th, 0.15th, ... 99.95th percentile>
-- `requests` are the responses wrk read in time; `sent` the requests it wrote (a request
-- written just before the end may be served after wrk stopped reading). The 1,000 quantiles
-- let the runner merge the latency distributions of several runs.

local threads = {}
local next_id = 0

function setup(thread)
  thread:set("id", next_id)
  next_id = next_id + 1
  table.insert(threads, thread)
end

function init(args)
  local tokens = {}
  for line in io.lines(args[1]) do
    if line ~= "" then
      tokens[#tokens + 1] = line
    end
  end
  assert(#tokens > 0, "no tokens in " .. args[1])
  requests_by_token = {}
  for i, token in ipairs(tokens) do
    requests_by_token[i] = wrk.format(nil, nil, { ["Authorization"] = "Bearer " .. token })
  end
  position = (id * 7919) % #tokens
  sent = 0
end

function request()
  position = position % #requests_by_token + 1
  sent = sent + 1
  return requests_by_token[position]
end

function done(summary, latency, requests)
  local sent_total = 0
  for _, thread in ipairs(threads) do
    sent_total = sent_total + thread:get("sent")
  end
  local e = summary.errors
  io.write(string.format(
    "bench-summary requests=%d sent=%d non2xx3xx=%d connect=%d read=%d write=%d timeout=%d "
      .. "duration_us=%d bytes=%d mean_us=%.1f p50_us=%d p99_us=%d max_us=%d\n",
    summary.requests, sent_total, e.status, e.connect, e.read, e.write, e.timeout,
    summary.duration, summary.bytes, latency.mean, latency:percentile(50),
    latency:percentile(99), latency.max))
  local quantiles = {}
  for i = 0, 999 do
    quantiles[#quantiles + 1] = string.format("%d", latency:percentile(i / 10 + 0.05))
  end
  io.write("bench-quantiles " .. table.concat(quantiles, " ") .. "\n")
end
