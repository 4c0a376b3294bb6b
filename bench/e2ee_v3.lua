-- wrk script for bench/run's E2EE v3 cases: sends each pre-generated envelope (bench/e2ee_v3_requests.py,
-- one body a line) once, in file order. Environment: E2EE_V3_REQUESTS (the file), TOKEN. Run it with one
-- wrk thread: each thread reads the file from the start, and an encapsulation sent twice is a replay (400).
local requests_file = os.getenv("E2EE_V3_REQUESTS")
local token = os.getenv("TOKEN")
local headers = { ["Content-Type"] = "application/json", ["Authorization"] = "Bearer " .. token }
for line in io.lines(requests_file .. ".headers") do
    local name, value = line:match("^([^\t]+)\t(.*)$")
    headers[name] = value
end
local lines = io.lines(requests_file)
local exhausted = false

function request()
    local body = lines()
    if body == nil then
        -- Out of fresh requests: start over (the proxy answers 400 replay, which bench/run reports).
        if not exhausted then io.stderr:write("e2ee_v3.lua: ran out of pre-generated requests\n") end
        exhausted = true
        lines = io.lines(requests_file)
        body = lines()
    end
    return wrk.format("POST", "/v1/chat/completions", headers, body)
end
