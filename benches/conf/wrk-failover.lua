-- benches/failover.sh's load: wrk -s wrk-failover.lua URL -- COOKIE_NAME MADE_UP LIVE...
-- Per four requests: two GET /dashboard/live with one of the LIVE session ids (in turn), one
-- GET /public without a cookie, one GET /dashboard/made-up with the MADE_UP id. The upstream
-- (conf/nginx-echo-upstream.conf.tmpl) echoes the path and the user doorman sent, so each
-- answer is judged alone (wrk does not pair answers with requests):
--   wrong: a 200 on /dashboard/* that is not /dashboard/live seen as "bench" (or a 200 the
--   upstream did not answer), a 503 whose Set-Cookie deletes doorman's cookie, any status but
--   200, 401 and 503.
-- done() prints one line: WRKFAIL requests= non2xx= s200= s401= s503= other= wrong= deleted=
-- sockerr= timeouts= p99_ms= max_ms=
local name, madeup, live = nil, nil, {}
local n = 0
s200, s401, s503, other, wrong, deleted = 0, 0, 0, 0, 0, 0
local threads = {}

function setup(thread)
  table.insert(threads, thread)
end

function init(args)
  name = args[1]
  madeup = name .. "=" .. args[2]
  for i = 3, #args do live[#live + 1] = name .. "=" .. args[i] end
end

function request()
  n = n + 1
  local k = n % 4
  if k == 1 then
    return wrk.format("GET", "/public")
  elseif k == 3 then
    return wrk.format("GET", "/dashboard/made-up", { Cookie = madeup })
  end
  return wrk.format("GET", "/dashboard/live", { Cookie = live[(n % #live) + 1] })
end

function response(status, headers, body)
  local path, user, cookie = nil, nil, nil
  for k, v in pairs(headers) do
    local l = string.lower(k)
    if l == "x-seen-path" then path = v
    elseif l == "x-seen-auth-user" then user = v
    elseif l == "set-cookie" then cookie = v end
  end
  if status == 200 then
    s200 = s200 + 1
    if path == nil or (string.sub(path, 1, 10) == "/dashboard" and (path ~= "/dashboard/live" or user ~= "bench")) then
      wrong = wrong + 1
    end
  elseif status == 401 then
    s401 = s401 + 1
  elseif status == 503 then
    s503 = s503 + 1
    if cookie ~= nil and string.find(cookie, name .. "=", 1, true) == 1 and string.find(string.lower(cookie), "max-age=0", 1, true) then
      deleted = deleted + 1
      wrong = wrong + 1
    end
  else
    other = other + 1
    wrong = wrong + 1
  end
end

function done(summary, latency, requests)
  local t = { s200 = 0, s401 = 0, s503 = 0, other = 0, wrong = 0, deleted = 0 }
  for _, thread in ipairs(threads) do
    for k, _ in pairs(t) do t[k] = t[k] + thread:get(k) end
  end
  local e = summary.errors
  io.write(string.format(
    "WRKFAIL requests=%d non2xx=%d s200=%d s401=%d s503=%d other=%d wrong=%d deleted=%d sockerr=%d timeouts=%d p99_ms=%d max_ms=%d\n",
    summary.requests, e.status, t.s200, t.s401, t.s503, t.other, t.wrong, t.deleted,
    e.connect + e.read + e.write + e.timeout, e.timeout,
    latency:percentile(99) / 1000, latency.max / 1000))
end
