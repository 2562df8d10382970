-- wrk driver for scripts/bench_ingest.py: replays N pre-generated, signed deliveries,
-- each exactly once, and records every request's ack latency.
--
-- Not meant to be run by hand; bench_ingest.py sets these environment variables:
--   BENCH_MANIFEST  one "offset length guid" line per delivery, in send order
--   BENCH_REQUESTS  the requests back to back: the header lines after Host, a blank
--                   line, the body (offset/length in the manifest point into it)
--   BENCH_THREADS   wrk's -t value
--   BENCH_OUT       a directory: "done.<thread>" markers and "results.txt" go there
--
-- How each delivery is sent exactly once:
--   * thread k (0-based) owns deliveries k, k+T, k+2T, ... (T = BENCH_THREADS), so the
--     threads never send the same delivery and the global order is roughly kept;
--   * wrk calls delay() before every request() of a connection. delay() hands out one
--     "ticket" per owned delivery and, once they are all handed out, parks the
--     connection for a day; request() never runs without a ticket, so no connection
--     sends more than the thread's share;
--   * when a thread has all its responses it writes done.<k>; bench_ingest.py then
--     stops wrk with SIGINT (wrk itself would sleep for the whole -d duration).
--
-- Latency is measured here, not taken from wrk's histogram: wrk "corrects" its
-- histogram for coordinated omission using the -d run time, which skews percentiles
-- of a closed-loop run that is stopped early. request() stamps the GUID it sends,
-- response() finds the GUID in the JSON answer ({"guid": ...}) and records the
-- difference (the same instants wrk uses: just before the write, on the last byte).
-- Answers without a GUID (errors) are counted, but have no latency.

local ffi = require("ffi")
ffi.cdef([[
typedef struct { long tv_sec; long tv_nsec; } bench_ingest_timespec;
int clock_gettime(int clock_id, bench_ingest_timespec *tp);
]])
local CLOCK_MONOTONIC = 1
local timespec = ffi.new("bench_ingest_timespec")

local function now_us()
    ffi.C.clock_gettime(CLOCK_MONOTONIC, timespec)
    return tonumber(timespec.tv_sec) * 1000000 + math.floor(tonumber(timespec.tv_nsec) / 1000)
end

local PARK_MS = 86400000

-- ---------------------------------------------------------------- setup / done (main env)

local threads = {}

function setup(thread)
    thread:set("id", #threads)
    table.insert(threads, thread)
end

function done(summary, latency, requests)
    local out = assert(io.open(os.getenv("BENCH_OUT") .. "/results.txt", "w"))
    local e = summary.errors
    out:write(string.format("summary %d %d %d %d %d %d %d %d\n", summary.duration,
        summary.requests, summary.bytes, e.connect, e.read, e.write, e.status, e.timeout))
    out:write(string.format("wrk_latency %d %d %d %d\n", latency:percentile(50),
        latency:percentile(99), latency.max, latency.mean))
    for _, thread in ipairs(threads) do
        local id = thread:get("id")
        out:write(string.format("thread %d %d %d %d %d %d %d\n", id, thread:get("share"),
            thread:get("sent"), thread:get("answered"), thread:get("unmatched"),
            thread:get("first_us"), thread:get("last_us")))
        for code, count in pairs(thread:get("statuses")) do
            out:write(string.format("status %d %d\n", code, count))
        end
        for second, count in pairs(thread:get("per_second")) do
            out:write(string.format("second %d %d\n", second, count))
        end
        for _, us in ipairs(thread:get("latencies")) do
            out:write("lat ", us, "\n")
        end
        for _, guid in ipairs(thread:get("ok_guids")) do
            out:write("ok ", guid, "\n")
        end
    end
    out:close()
end

-- ---------------------------------------------------------------- running (thread envs)

-- Globals, so that done() can read them with thread:get().
share, sent, answered, unmatched, first_us, last_us = 0, 0, 0, 0, 0, 0
latencies, ok_guids, statuses, per_second = {}, {}, {}, {}

local offsets, lengths, guids = {}, {}, {}
local tickets = 0
local started = {}
local requests_file
local head
local fallback

function init(args)
    local nthreads = assert(tonumber(os.getenv("BENCH_THREADS")), "BENCH_THREADS is not set")
    local index = 0
    for line in io.lines(os.getenv("BENCH_MANIFEST")) do
        if index % nthreads == id then
            local offset, length, guid = line:match("^(%d+) (%d+) (%S+)$")
            assert(guid, "bad manifest line: " .. line)
            share = share + 1
            offsets[share], lengths[share], guids[share] = tonumber(offset), tonumber(length), guid
        end
        index = index + 1
    end
    requests_file = assert(io.open(os.getenv("BENCH_REQUESTS"), "rb"))
    local host = wrk.host .. (wrk.port and (":" .. wrk.port) or "")
    head = "POST " .. wrk.path .. " HTTP/1.1\r\nHost: " .. host .. "\r\n"
    -- What request() returns when it has no ticket (see there); never a delivery.
    fallback = "GET /healthz HTTP/1.1\r\nHost: " .. host .. "\r\n\r\n"
end

function delay()
    if tickets >= share then
        return PARK_MS
    end
    tickets = tickets + 1
    return 0
end

function request()
    if sent >= tickets then
        -- No ticket: wrk's start-up call that counts the requests in the string (thread
        -- 0 only, before any delay()), or a reconnect after a socket error.
        return fallback
    end
    sent = sent + 1
    requests_file:seek("set", offsets[sent])
    local chunk = requests_file:read(lengths[sent])
    local now = now_us()
    if first_us == 0 then
        first_us = now
    end
    started[guids[sent]] = now
    return head .. chunk
end

function response(status, headers, body)
    local now = now_us()
    answered = answered + 1
    last_us = now
    statuses[status] = (statuses[status] or 0) + 1
    local second = math.floor((now - first_us) / 1000000)
    per_second[second] = (per_second[second] or 0) + 1
    local guid = body:match('"guid":"([^"]+)"')
    local start = guid and started[guid]
    if start then
        started[guid] = nil
        latencies[#latencies + 1] = now - start
        if status >= 200 and status < 300 then
            ok_guids[#ok_guids + 1] = guid
        end
    else
        unmatched = unmatched + 1
    end
    if answered == share then  -- (exactly once)
        local marker = assert(io.open(os.getenv("BENCH_OUT") .. "/done." .. id, "w"))
        marker:write(answered, "\n")
        marker:close()
    end
end
