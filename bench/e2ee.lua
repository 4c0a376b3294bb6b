-- wrk script for bench/run's E2EE v2 case: sends each pre-generated request (bench/e2ee_requests.py)
-- once, in file order. Environment: E2EE_REQUESTS (the file), TOKEN. Run it with one wrk thread: each
-- thread reads the file from the start, and a nonce sent twice is a replay (400).
local requests_file = os.getenv("E2EE_REQUESTS")
local token = os.getenv("TOKEN")
local headers = { ["Content-Type"] = "application/json", ["Authorization"] = "Bearer " .. token }
for line in io.lines(requests_file .. ".headers") do
    local name, value = line:match("^([^\t]+)\t(.*)$")
    headers[name] = value
end
local lines = io.lines(requests_file)
local exhausted = false

function request()
    local line = lines()
    if line == nil then
        -- Out of fresh requests: start over (the proxy answers 400 replay, which bench/run reports).
        if not exhausted then io.stderr:write("e2ee.lua: ran out of pre-generated requests\n") end
        exhausted = true
        lines = io.lines(requests_file)
        line = lines()
    end
    local nonce, timestamp, body = line:match("^([^\t]+)\t([^\t]+)\t(.*)$")
    headers["X-E2EE-Nonce"] = nonce
    headers["X-E2EE-Timestamp"] = timestamp
    return wrk.format("POST", "/v1/chat/completions", headers, body)
end
