-- Acknowledge leased tasks for good. Receipts of a lease that is gone (acknowledged already, or
-- expired and re-issued under a new id) are ignored.
-- KEYS[1] lease meta hash, KEYS[2] lease deadlines zset, KEYS[3] leased counter,
-- KEYS[4] lease key prefix: each lease's list '<prefix><id>' and set '<prefix><id>.acked' are built
--         from it (same node; see _functions.lua)
-- ARGV[1..] receipts as runs: lease id, first index, last index (runs of one lease adjacent)
-- Returns how many tasks were acknowledged.
local lease = {meta = KEYS[1], deadlines = KEYS[2], prefix = KEYS[4]}
local acknowledged = acknowledge(lease, ARGV, 1)
if acknowledged > 0 then
    redis.call('DECRBY', KEYS[3], acknowledged)
end
return acknowledged
