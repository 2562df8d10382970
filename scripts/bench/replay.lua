-- wrk driver of bench/load.py (wrk -t 1): sends each delivery of BENCH_MANIFEST ("offset
-- length guid" lines into BENCH_REQUESTS) exactly once (delay() hands out a ticket per
-- delivery, request() never sends without one), then writes to BENCH_OUT "done",
-- "results.txt" and, with BENCH_SENT_LOG, "sent.txt" ("<guid> <us>", CLOCK_MONOTONIC).
-- Latency is each request's (wrk's histogram is "corrected" with -d): request() stamps
-- the GUID, response() finds it in the JSON answer or an X-GitHub-Delivery header.

local ffi = require("ffi")
ffi.cdef([[
typedef struct { long tv_sec; long tv_nsec; } bench_timespec;
int clock_gettime(int clock_id, bench_timespec *tp);
]])
local timespec = ffi.new("bench_timespec")

local function now_us()
    ffi.C.clock_gettime(1, timespec) -- CLOCK_MONOTONIC
    return tonumber(timespec.tv_sec) * 1000000 + math.floor(tonumber(timespec.tv_nsec) / 1000)
end

local the_thread
function setup(thread) the_thread = thread end

local function write_list(out, prefix, list)
    for _, item in ipairs(list) do out:write(prefix, item, "\n") end
end

function done(summary, latency, requests)
    local t, dir = the_thread, os.getenv("BENCH_OUT")
    local out = assert(io.open(dir .. "/results.txt", "w"))
    out:write("span ", t:get("answered"), " ", t:get("first_us"), " ", t:get("last_us"), "\n")
    for code, count in pairs(t:get("statuses")) do out:write("status ", code, " ", count, "\n") end
    write_list(out, "lat ", t:get("latencies"))
    write_list(out, "ok ", t:get("ok_guids"))
    out:close()
    if os.getenv("BENCH_SENT_LOG") then
        local sent = assert(io.open(dir .. "/sent.txt", "w"))
        write_list(sent, "", t:get("sent_log"))
        sent:close()
    end
end

-- Globals, so that done() can read them with thread:get().
share, sent, answered, first_us, last_us = 0, 0, 0, 0, 0
latencies, ok_guids, statuses, sent_log = {}, {}, {}, {}

local offsets, lengths, guids, started = {}, {}, {}, {}
local tickets, requests_file, head, fallback = 0, nil, nil, nil
local log_sent = os.getenv("BENCH_SENT_LOG") ~= nil

function init(args)
    for line in io.lines(os.getenv("BENCH_MANIFEST")) do
        local offset, length, guid = line:match("^(%d+) (%d+) (%S+)$")
        share = share + 1
        offsets[share], lengths[share], guids[share] = tonumber(offset), tonumber(length), guid
    end
    requests_file = assert(io.open(os.getenv("BENCH_REQUESTS"), "rb"))
    local host = wrk.host .. (wrk.port and (":" .. wrk.port) or "")
    head = "POST " .. wrk.path .. " HTTP/1.1\r\nHost: " .. host .. "\r\n"
    -- What request() returns without a ticket: never a delivery.
    fallback = "GET /healthz HTTP/1.1\r\nHost: " .. host .. "\r\n\r\n"
end

function delay()
    if tickets >= share then return 86400000 end
    tickets = tickets + 1
    return 0
end

function request()
    if sent >= tickets then
        -- No ticket: wrk's start-up call that counts the requests in the string (before
        -- any delay()), or a reconnect after a socket error.
        return fallback
    end
    sent = sent + 1
    requests_file:seek("set", offsets[sent])
    local chunk, now = requests_file:read(lengths[sent]), now_us()
    if first_us == 0 then first_us = now end
    started[guids[sent]] = now
    if log_sent then sent_log[#sent_log + 1] = guids[sent] .. " " .. now end
    return head .. chunk
end

function response(status, headers, body)
    local now = now_us()
    answered, last_us = answered + 1, now
    statuses[status] = (statuses[status] or 0) + 1
    local guid = body:match('"guid":"([^"]+)"') or headers["x-github-delivery"]
    local start = guid and started[guid]
    if start then
        started[guid] = nil
        latencies[#latencies + 1] = now - start
        if status >= 200 and status < 300 then ok_guids[#ok_guids + 1] = guid end
    end
    if answered == share then -- (exactly once)
        local marker = assert(io.open(os.getenv("BENCH_OUT") .. "/done", "w"))
        marker:write(answered, "\n")
        marker:close()
    end
end
