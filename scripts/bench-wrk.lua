-- wrk script for `CLIENT=wrk scripts/bench-webhooks`: GitLab issue deliveries (the secret token
-- in `X-Gitlab-Token`, no signature), each a different issue with its own `X-Gitlab-Event-UUID`,
-- about 520 bytes, as issue 11 first measured with wrk. Each thread stops once it has had its
-- share of the responses, so that a run is a burst of a fixed number of deliveries.
--
-- wrk's main thread sleeps for its whole -d whatever its threads do, so each thread dates its
-- first request and its last response (LuaJIT's ffi, CLOCK_MONOTONIC) and writes WRK_DONE.<id>
-- once it has stopped; the script that runs wrk then interrupts it. The rate is the deliveries
-- answered over the span from the first request to the last response.
--
-- Environment: WRK_TOKEN (the integration's token), WRK_REQUESTS (in all), WRK_THREADS (wrk's
-- -t), WRK_TAG (a prefix that makes this run's delivery ids unique), WRK_DONE (a path prefix).

local threads = {}
local token = os.getenv("WRK_TOKEN")
local total = tonumber(os.getenv("WRK_REQUESTS"))
local nthreads = tonumber(os.getenv("WRK_THREADS"))
local tag = os.getenv("WRK_TAG")
local done_prefix = os.getenv("WRK_DONE")
local counter = 1

local ffi = require("ffi")
ffi.cdef [[
  typedef struct { long tv_sec; long tv_nsec; } timespec;
  int clock_gettime(int clk_id, timespec *tp);
]]
local ts = ffi.new("timespec")
local function now_us()
  ffi.C.clock_gettime(1, ts) -- CLOCK_MONOTONIC
  return tonumber(ts.tv_sec) * 1e6 + tonumber(ts.tv_nsec) / 1e3
end

function setup(thread)
  thread:set("id", counter)
  table.insert(threads, thread)
  counter = counter + 1
end

function init(args)
  sent = 0
  answered = 0
  non2xx = 0
  share = math.floor(total / nthreads)
  if id == nthreads then share = total - share * (nthreads - 1) end
  pad = string.rep("p", 300)
end

function request()
  if sent == 0 then first_us = now_us() end
  sent = sent + 1
  local n = id * 10000000 + sent
  local body = '{"object_kind":"issue","event_type":"issue","project":{"name":"checkout",'
    .. '"path_with_namespace":"acme/checkout"},"object_attributes":{"iid":' .. n
    .. ',"title":"Checkout latency above the SLO","state":"opened","action":"open",'
    .. '"description":"' .. pad .. '"}}'
  return wrk.format("POST", nil, {
    ["Content-Type"] = "application/json",
    ["X-Gitlab-Event"] = "Issue Hook",
    ["X-Gitlab-Token"] = token,
    ["X-Gitlab-Event-UUID"] = tag .. "-" .. n,
  }, body)
end

function response(status, headers, body)
  answered = answered + 1
  if status ~= 200 and status ~= 202 then non2xx = non2xx + 1 end
  if answered == share then
    last_us = now_us()
    local f = io.open(done_prefix .. "." .. id, "w")
    f:write("done\n")
    f:close()
    wrk.thread:stop()
  end
end

function done(summary, latency, requests)
  local answered_all, non2xx_all, first, last = 0, 0, nil, nil
  for _, t in ipairs(threads) do
    answered_all = answered_all + t:get("answered")
    non2xx_all = non2xx_all + t:get("non2xx")
    local f, l = t:get("first_us"), t:get("last_us")
    if f and (not first or f < first) then first = f end
    if l and (not last or l > last) then last = l end
  end
  local secs = summary.duration / 1e6
  if first and last then secs = (last - first) / 1e6 end
  io.write(string.format("wrk: %d answered (%d not 2xx) in %.2f s: %.0f acknowledged/s\n",
    answered_all, non2xx_all, secs, (answered_all - non2xx_all) / secs))
  io.write(string.format("wrk: latency p50 %.2f ms  p99 %.2f ms  p99.9 %.2f ms  max %.2f ms\n",
    latency:percentile(50) / 1e3, latency:percentile(99) / 1e3,
    latency:percentile(99.9) / 1e3, latency.max / 1e3))
end
