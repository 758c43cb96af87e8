-- wrk script: every request POSTs the same prebuilt multipart body.
--   BENCH_BODY      file holding the complete multipart/form-data body
--   BENCH_BOUNDARY  its boundary
--   BENCH_KEY       the X-Security-Key header (sent to every server alike)
--   BENCH_TOKEN     an upload token instead: sent as Authorization: Bearer,
--                   and no key
local function slurp(path)
  local f = assert(io.open(path, "rb"))
  local data = f:read("*a")
  f:close()
  return data
end

wrk.method = "POST"
wrk.path = "/do.ashx?action=upload"
wrk.body = slurp(os.getenv("BENCH_BODY"))
wrk.headers["Content-Type"] = "multipart/form-data; boundary=" .. os.getenv("BENCH_BOUNDARY")
local token = os.getenv("BENCH_TOKEN")
if token and token ~= "" then
  wrk.headers["Authorization"] = "Bearer " .. token
else
  wrk.headers["X-Security-Key"] = os.getenv("BENCH_KEY") or ""
end

-- A 200 answer that does not say success would be a silent failure: count it
-- per thread, and add the threads' counts up at the end.
local threads = {}
function setup(thread)
  table.insert(threads, thread)
end

failed = 0
function response(status, headers, body)
  if status ~= 200 or not string.find(body, "<success>1</success>", 1, true) then
    failed = failed + 1
    if failed <= 3 then
      io.stderr:write("bad answer: " .. status .. " " .. string.sub(body, 1, 300) .. "\n")
    end
  end
end

function done(summary, latency, requests)
  local unsuccessful = 0
  for _, t in ipairs(threads) do
    unsuccessful = unsuccessful + (t:get("failed") or 0)
  end
  -- Machine-readable lines for run.sh (latency in microseconds).
  io.write(string.format("BENCH requests=%d duration_us=%d rps=%.1f p50_us=%d p99_us=%d errors=%d unsuccessful=%d\n",
    summary.requests, summary.duration,
    summary.requests / (summary.duration / 1e6),
    latency:percentile(50), latency:percentile(99),
    summary.errors.connect + summary.errors.read + summary.errors.write
      + summary.errors.status + summary.errors.timeout,
    unsuccessful))
end
