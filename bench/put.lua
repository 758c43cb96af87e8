-- wrk script: PUTs the same body to presigned S3 URLs, one new object key per
-- request (the direct-PUT baseline of bench/s3.sh).
--   BENCH_BODY   file holding the object's bytes (the 140 KB JPEG)
--   BENCH_URLS   file of presigned path?query lines (bench/presign.py)
--   BENCH_THREADS  wrk's -t (each thread starts at its own line and steps
--                  over the others'; wrk calls init before the next thread
--                  exists, so the count cannot be learnt here)
-- Threads take interleaved lines, so no two requests write the same key
-- until the list wraps around.
local function slurp(path)
  local f = assert(io.open(path, "rb"))
  local data = f:read("*a")
  f:close()
  return data
end

local threads = {}
local count = 0
function setup(thread)
  thread:set("tid", count)
  count = count + 1
  table.insert(threads, thread)
end

local body, paths, step, n
function init(args)
  body = slurp(os.getenv("BENCH_BODY"))
  paths = {}
  for line in io.lines(os.getenv("BENCH_URLS")) do
    paths[#paths + 1] = line
  end
  step = tonumber(os.getenv("BENCH_THREADS") or "2")
  n = tid
end

function request()
  local path = paths[(n % #paths) + 1]
  n = n + step
  return wrk.format("PUT", path, { ["Content-Type"] = "image/jpeg" }, body)
end

failed = 0
function response(status, headers, answer)
  if status ~= 200 then
    failed = failed + 1
    if failed <= 3 then
      io.stderr:write("bad answer: " .. status .. " " .. string.sub(answer, 1, 300) .. "\n")
    end
  end
end

function done(summary, latency, requests)
  local unsuccessful = 0
  for _, t in ipairs(threads) do
    unsuccessful = unsuccessful + (t:get("failed") or 0)
  end
  io.write(string.format("BENCH requests=%d duration_us=%d rps=%.1f p50_us=%d p99_us=%d errors=%d unsuccessful=%d\n",
    summary.requests, summary.duration,
    summary.requests / (summary.duration / 1e6),
    latency:percentile(50), latency:percentile(99),
    summary.errors.connect + summary.errors.read + summary.errors.write
      + summary.errors.status + summary.errors.timeout,
    unsuccessful))
end
