-- Every request carries a Host header never seen before.
local threads = 0
setup = function(thread)
  thread:set("id", threads)
  threads = threads + 1
end
local n = 0
request = function()
  n = n + 1
  return wrk.format("GET", "/api/teachers/7/sessions", { ["Host"] = "h" .. id .. "-" .. n .. ".example" })
end
