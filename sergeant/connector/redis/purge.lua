-- Delete every ready, delayed and leased task of a queue; dead letters and the sequence stay
-- (keeping the sequence means a stale receipt can never match a later lease).
-- KEYS[1] ready high list, KEYS[2] ready normal list, KEYS[3] delayed zset, KEYS[4] leased hash,
-- KEYS[5] lease deadlines zset
-- Returns how many tasks were deleted.
local removed = redis.call('LLEN', KEYS[1]) + redis.call('LLEN', KEYS[2]) + redis.call('ZCARD', KEYS[3])
    + redis.call('HLEN', KEYS[4])
redis.call('DEL', KEYS[1], KEYS[2], KEYS[3], KEYS[4], KEYS[5])
return removed
