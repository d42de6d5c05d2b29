-- Queue sizes, read together so they are consistent with each other.
-- KEYS[1] ready high list, KEYS[2] ready normal list, KEYS[3] delayed zset, KEYS[4] leased counter,
-- KEYS[5] dead letter list
-- ARGV[1] now (ms)
-- Returns {ready, delayed, leased, dead}; delayed tasks already due count as ready.
local due = redis.call('ZCOUNT', KEYS[3], '-inf', ARGV[1])
return {
    redis.call('LLEN', KEYS[1]) + redis.call('LLEN', KEYS[2]) + due,
    redis.call('ZCARD', KEYS[3]) - due,
    tonumber(redis.call('GET', KEYS[4]) or 0),
    redis.call('LLEN', KEYS[5]),
}
