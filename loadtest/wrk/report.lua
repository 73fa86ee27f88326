-- wrk reporter used by loadtest/run: prints one machine-readable line at the end.
-- wrk calls done() once, in the main thread, after all threads finish.
-- summary.errors.status counts responses with status >= 400 (wrk's definition);
-- latency values are microseconds.
done = function(summary, latency, requests)
  local e = summary.errors
  local n = summary.requests
  local function pct(q)
    if n > 0 then return latency:percentile(q) else return 0 end
  end
  local mean, stdev = 0, 0
  if n > 0 then mean, stdev = latency.mean, latency.stdev end
  if mean ~= mean then mean = 0 end   -- NaN guard
  if stdev ~= stdev then stdev = 0 end
  io.write(string.format(
    'WRKJSON {"requests":%d,"duration_us":%d,"bytes":%d,' ..
    '"errors_connect":%d,"errors_read":%d,"errors_write":%d,' ..
    '"errors_status":%d,"errors_timeout":%d,' ..
    '"latency_mean_us":%.1f,"latency_stdev_us":%.1f,"latency_max_us":%d,' ..
    '"p50_us":%d,"p90_us":%d,"p99_us":%d,"p999_us":%d}\n',
    n, summary.duration, summary.bytes,
    e.connect, e.read, e.write, e.status, e.timeout,
    mean, stdev, (n > 0) and latency.max or 0,
    pct(50), pct(90), pct(99), pct(99.9)))
end
