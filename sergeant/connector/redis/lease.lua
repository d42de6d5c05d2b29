-- At-least-once fetch: acknowledge the previous batch, promote due delayed tasks, re-lease expired
-- leases under new lease ids (so the old holder's receipt no longer matches), then lease ready tasks.
-- KEYS[1] ready high list, KEYS[2] ready normal list, KEYS[3] delayed zset,
-- KEYS[4] leased hash (lease id -> value), KEYS[5] lease deadlines zset (lease id -> ms), KEYS[6] sequence counter
-- ARGV[1] now (ms), ARGV[2] new deadline (ms), ARGV[3] how many to lease, ARGV[4..] lease ids to acknowledge
-- Returns a flat array: lease id, deliveries, payload, lease id, deliveries, payload, ...
local now, deadline, count = ARGV[1], ARGV[2], tonumber(ARGV[3])
for start = 4, #ARGV, CHUNK do
    local stop = math.min(start + CHUNK - 1, #ARGV)
    redis.call('HDEL', KEYS[4], unpack(ARGV, start, stop))
    redis.call('ZREM', KEYS[5], unpack(ARGV, start, stop))
end
if count <= 0 then
    return {}
end
promote_due(KEYS[3], KEYS[1], KEYS[2], now)

local result = {}
local expired = redis.call('ZRANGEBYSCORE', KEYS[5], '-inf', now, 'LIMIT', 0, count)
if #expired > 0 then
    local values = redis.call('HMGET', KEYS[4], unpack(expired))
    redis.call('HDEL', KEYS[4], unpack(expired))
    redis.call('ZREMRANGEBYRANK', KEYS[5], 0, #expired - 1)
    local next_id = redis.call('INCRBY', KEYS[6], #expired) - #expired + 1
    for _, value in ipairs(values) do
        if value then
            local priority, deliveries, payload = parse_leased(value)
            deliveries = deliveries + 1
            redis.call('HSET', KEYS[4], next_id, priority .. deliveries .. ':' .. payload)
            redis.call('ZADD', KEYS[5], deadline, next_id)
            result[#result + 1] = next_id
            result[#result + 1] = deliveries
            result[#result + 1] = payload
            next_id = next_id + 1
        end
    end
end

local ready, from_high = pop_ready(KEYS[1], KEYS[2], count - #result / 3)
if #ready > 0 then
    local first_id = redis.call('INCRBY', KEYS[6], #ready) - #ready + 1
    for start = 1, #ready, CHUNK do
        local values, deadlines = {}, {}
        for index = start, math.min(start + CHUNK - 1, #ready) do
            local lease_id = first_id + index - 1
            local priority = index <= from_high and 'H' or 'N'
            values[#values + 1] = lease_id
            values[#values + 1] = priority .. '1:' .. ready[index]
            deadlines[#deadlines + 1] = deadline
            deadlines[#deadlines + 1] = lease_id
            result[#result + 1] = lease_id
            result[#result + 1] = 1
            result[#result + 1] = ready[index]
        end
        redis.call('HSET', KEYS[4], unpack(values))
        redis.call('ZADD', KEYS[5], unpack(deadlines))
    end
end
return result
