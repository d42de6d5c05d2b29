-- At-most-once fetch: promote due delayed tasks, then take expired leases, then ready tasks (HIGH first).
-- KEYS[1] ready high list, KEYS[2] ready normal list, KEYS[3] delayed zset,
-- KEYS[4] leased hash (lease id -> value), KEYS[5] lease deadlines zset (lease id -> ms)
-- ARGV[1] now (ms), ARGV[2] how many to take
-- Returns the payloads.
local now, count = ARGV[1], tonumber(ARGV[2])
promote_due(KEYS[3], KEYS[1], KEYS[2], now)
local taken = {}
local expired = redis.call('ZRANGEBYSCORE', KEYS[5], '-inf', now, 'LIMIT', 0, count)
if #expired > 0 then
    local values = redis.call('HMGET', KEYS[4], unpack(expired))
    for _, value in ipairs(values) do
        if value then
            local _, _, payload = parse_leased(value)
            taken[#taken + 1] = payload
        end
    end
    redis.call('HDEL', KEYS[4], unpack(expired))
    redis.call('ZREMRANGEBYRANK', KEYS[5], 0, #expired - 1)
end
local ready = pop_ready(KEYS[1], KEYS[2], count - #taken)
for _, payload in ipairs(ready) do
    taken[#taken + 1] = payload
end
return taken
