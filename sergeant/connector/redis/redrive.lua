-- Move the oldest dead letters back to the end of the ready normal list.
-- KEYS[1] dead letter list (msgpack [payload, reason, buried_at] entries), KEYS[2] ready normal list
-- ARGV[1] how many at most, negative for all
-- Returns how many were moved.
local limit = tonumber(ARGV[1])
local total = redis.call('LLEN', KEYS[1])
if limit < 0 or limit > total then
    limit = total
end
local moved = 0
while moved < limit do
    local batch = math.min(1000, limit - moved)
    local entries = redis.call('LRANGE', KEYS[1], 0, batch - 1)
    local payloads = {}
    for index, entry in ipairs(entries) do
        payloads[index] = cmsgpack.unpack(entry)[1]
    end
    redis.call('RPUSH', KEYS[2], unpack(payloads))
    redis.call('LTRIM', KEYS[1], batch, -1)
    moved = moved + batch
end
return moved
