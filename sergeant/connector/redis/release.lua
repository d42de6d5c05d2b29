-- Give leased tasks back to the front of their ready list, in the order they were leased.
-- KEYS[1] ready high list, KEYS[2] ready normal list, KEYS[3] leased hash, KEYS[4] lease deadlines zset
-- ARGV[1..] lease ids
-- Returns how many were given back.
local ids = {}
for index, lease_id in ipairs(ARGV) do
    ids[index] = tonumber(lease_id)
end
-- Lease ids grow in lease order, so pushing the newest to the front first restores the original order.
table.sort(ids, function(left, right) return left > right end)
local released = 0
for _, lease_id in ipairs(ids) do
    local value = redis.call('HGET', KEYS[3], lease_id)
    if value then
        local colon = string.find(value, ':', 2, true)
        local ready_key = string.sub(value, 1, 1) == 'H' and KEYS[1] or KEYS[2]
        redis.call('LPUSH', ready_key, string.sub(value, colon + 1))
        redis.call('HDEL', KEYS[3], lease_id)
        redis.call('ZREM', KEYS[4], lease_id)
        released = released + 1
    end
end
return released
