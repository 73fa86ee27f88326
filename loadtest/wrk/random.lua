-- Random-path requests for loadtest/run's "random" cell. loadtest/run prepends
--   local PATHS_FILE = "/abs/path/to/paths.txt"
-- and appends report.lua, writing the result to loadtest/work/wrk-random.lua.
-- The seed is fixed so every server sees the same sequence of paths.
local paths = {}
for line in io.lines(PATHS_FILE) do
  if #line > 0 then paths[#paths + 1] = line end
end
assert(#paths > 0, "no paths in " .. PATHS_FILE)
math.randomseed(20240607)

request = function()
  return wrk.format(nil, paths[math.random(#paths)])
end
