-- At-most-once fetch: promote due delayed tasks, then take the remaining items of expired leases,
-- then ready tasks (HIGH first).
-- KEYS[1] ready high list, KEYS[2] ready normal list, KEYS[3] delayed zset,
-- KEYS[4] lease meta hash, KEYS[5] lease deadlines zset, KEYS[6] leased counter, KEYS[7] lease id counter (node-wide),
-- KEYS[8] lease key prefix: each lease's list '<prefix><id>' and set '<prefix><id>.acked' are built
--         from it (same node; see _functions.lua)
-- ARGV[1] now (ms), ARGV[2] how many to take
-- Returns the payloads.
local now, count = ARGV[1], tonumber(ARGV[2])
local lease = {meta = KEYS[4], deadlines = KEYS[5], ids = KEYS[7], prefix = KEYS[8]}
promote_due(KEYS[3], KEYS[1], KEYS[2], now)
local taken = {}
local wanted = count
local expired = redis.call('ZRANGEBYSCORE', KEYS[5], '-inf', now, 'WITHSCORES', 'LIMIT', 0, count)
for position = 1, #expired, 2 do
    if wanted <= 0 then
        break
    end
    local items, _, _, whole_key = take_expired(lease, expired[position], expired[position + 1], wanted)
    if whole_key then
        redis.call('DEL', whole_key)
    end
    for _, item in ipairs(items) do
        taken[#taken + 1] = item
    end
    wanted = wanted - #items
end
if #taken > 0 then
    redis.call('DECRBY', KEYS[6], #taken)
end
if wanted <= 0 then
    return taken
end
local ready = pop_ready(KEYS[1], KEYS[2], wanted)
if #taken == 0 then
    return ready
end
for _, payload in ipairs(ready) do
    taken[#taken + 1] = payload
end
return taken
