-- wrk driver for scripts/bench_push.py (the slow-clients measurement): exactly
-- scripts/bench_ingest.lua (every delivery sent once, ack latencies recorded), plus the
-- instant each delivery was sent, so that bench_push.py can compute how long each
-- Socket.IO event took to reach the reading clients (CLOCK_MONOTONIC is shared by every
-- process of the machine, and Python's time.monotonic() reads the same clock).
--
-- Not meant to be run by hand; bench_push.py sets the bench_ingest.lua variables and
-- writes "sent.txt" ("<guid> <microseconds>" per delivery) next to "results.txt".

local here = debug.getinfo(1, "S").source:match("^@(.*/)") or "./"
dofile(here .. "bench_ingest.lua")

local ffi = require("ffi")
-- bench_ingest.lua has declared the struct and clock_gettime (a second cdef would fail).
local timespec = ffi.new("bench_ingest_timespec")

local function now_us()
    ffi.C.clock_gettime(1, timespec) -- CLOCK_MONOTONIC
    return tonumber(timespec.tv_sec) * 1000000 + math.floor(tonumber(timespec.tv_nsec) / 1000)
end

local ingest_setup, ingest_request, ingest_done = setup, request, done
local push_threads = {}

function setup(thread)
    ingest_setup(thread)
    table.insert(push_threads, thread)
end

-- A global, so that done() can read it with thread:get().
sent_log = {}

function request()
    local req = ingest_request()
    -- The headers come first, so this finds the GUID within the first few hundred bytes;
    -- the fallback request (GET /healthz) has none and is not logged.
    local guid = req:match("\r\nX%-GitHub%-Delivery: ([^\r]+)\r\n")
    if guid then
        sent_log[#sent_log + 1] = guid .. " " .. now_us()
    end
    return req
end

function done(summary, latency, requests)
    ingest_done(summary, latency, requests)
    local out = assert(io.open(os.getenv("BENCH_OUT") .. "/sent.txt", "w"))
    for _, thread in ipairs(push_threads) do
        for _, line in ipairs(thread:get("sent_log")) do
            out:write(line, "\n")
        end
    end
    out:close()
end
