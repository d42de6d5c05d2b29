-- Delete every ready, delayed and leased task of a queue; dead letters and the sequence stay
-- (keeping the sequence means a stale receipt can never match a later lease).
-- KEYS[1] ready high list, KEYS[2] ready normal list, KEYS[3] delayed zset, KEYS[4] lease meta hash,
-- KEYS[5] lease deadlines zset, KEYS[6] leased counter, KEYS[7] lease key prefix: each lease's list
-- '<prefix><id>' and set '<prefix><id>.acked' are built from it (same node; see _functions.lua)
-- Returns how many tasks were deleted.
local removed = redis.call('LLEN', KEYS[1]) + redis.call('LLEN', KEYS[2]) + redis.call('ZCARD', KEYS[3])
    + tonumber(redis.call('GET', KEYS[6]) or 0)
local lease_ids = redis.call('HKEYS', KEYS[4])
for start = 1, #lease_ids, 500 do
    local lease_keys = {}
    for position = start, math.min(start + 499, #lease_ids) do
        lease_keys[#lease_keys + 1] = KEYS[7] .. lease_ids[position]
        lease_keys[#lease_keys + 1] = KEYS[7] .. lease_ids[position] .. '.acked'
    end
    redis.call('DEL', unpack(lease_keys))
end
redis.call('DEL', KEYS[1], KEYS[2], KEYS[3], KEYS[4], KEYS[5], KEYS[6])
return removed
