-- wrk script: POST canonical alerts. DEDUP=distinct gives every request its own dedup key;
-- DEDUP=storm sends copies of one alert. Counts non-202 answers so the bench can refuse them.
-- ALERTS=N: once N answers are in, says ENOUGH on its output and stops sending (the bench then
-- interrupts wrk, whose summary covers the time until then).
local threads = {}

function setup(thread)
  thread:set("id", #threads)
  table.insert(threads, thread)
end

function init(args)
  counter = 0
  answered = 0
  failures = 0
  enough = tonumber(os.getenv("ALERTS") or "0")
  mode = os.getenv("DEDUP") or "distinct"
  tag = os.getenv("TAG") or "bench"
  wrk.headers["Content-Type"] = "application/json"
  wrk.headers["Authorization"] = "Bearer " .. (os.getenv("KEY") or "")
end

function request()
  counter = counter + 1
  local key = tag .. "-storm"
  if mode == "distinct" then
    key = string.format("%s-%d-%d", tag, id, counter)
  end
  local body = string.format(
    '{"title":"Alert %d","service":"bench","severity":"warning","dedup_key":"%s"}', counter, key)
  return wrk.format("POST", "/v1/alerts", nil, body)
end

function response(status, headers, body)
  if status ~= 202 then
    failures = failures + 1
  end
  answered = answered + 1
  if answered == enough then
    io.write("ENOUGH\n")
    io.flush()
    wrk.thread:stop()
  end
end

function done(summary, latency, requests)
  local failed = 0
  for _, thread in ipairs(threads) do
    failed = failed + thread:get("failures")
  end
  io.write(string.format("RESULT requests=%d seconds=%.3f p50_us=%d p99_us=%d failed=%d errors=%d\n",
    summary.requests, summary.duration / 1e6, latency:percentile(50), latency:percentile(99), failed,
    summary.errors.connect + summary.errors.read + summary.errors.write + summary.errors.status
      + summary.errors.timeout))
end
