-- bench/e2e.ts --lua: tallies wrk's responses by what they mean, reading the
-- body of each 500 (the frontend answers "spoe_error=N" when the SPOE failed).
-- Each wrk thread counts in its own Lua state; done() sums them and prints
--   E2E <200s> <403s> <500 spoe_error> <other> <last spoe_error body or other status>
-- Defining response() makes wrk hand every response to Lua, which costs wrk
-- CPU (and the 2 cores are shared): the default counts from HAProxy's stats.

local threads = {}

function setup(thread)
  table.insert(threads, thread)
end

function init(args)
  ok, denied, spoe, other, last = 0, 0, 0, 0, "-"
end

function response(status, headers, body)
  if status == 200 then
    ok = ok + 1
  elseif status == 403 then
    denied = denied + 1
  elseif status == 500 and body and string.find(body, "spoe_error=", 1, true) then
    spoe = spoe + 1
    last = string.gsub(body, "%s+", "")
  else
    other = other + 1
    last = "status=" .. tostring(status)
  end
end

function done(summary, latency, requests)
  local a, b, c, d, l = 0, 0, 0, 0, "-"
  for _, t in ipairs(threads) do
    a = a + t:get("ok")
    b = b + t:get("denied")
    c = c + t:get("spoe")
    d = d + t:get("other")
    if t:get("last") ~= "-" then l = t:get("last") end
  end
  io.write(string.format("E2E %d %d %d %d %s\n", a, b, c, d, l))
end
