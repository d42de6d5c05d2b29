-- Move the deadline of leases that are still held.
-- KEYS[1] lease deadlines zset
-- ARGV[1] new deadline (ms), ARGV[2..] pairs: lease id, how many receipts of it are renewed
-- Returns how many receipts belong to leases still held.
local deadline = ARGV[1]
local renewed = 0
for start = 2, #ARGV, 2000 do
    local stop = math.min(start + 1999, #ARGV)
    local ids = {}
    for position = start, stop, 2 do
        ids[#ids + 1] = ARGV[position]
    end
    local scores = redis.call('ZMSCORE', KEYS[1], unpack(ids))
    local updates = {}
    for offset, score in ipairs(scores) do
        if score then
            updates[#updates + 1] = deadline
            updates[#updates + 1] = ids[offset]
            renewed = renewed + tonumber(ARGV[start + 2 * offset - 1])
        end
    end
    if #updates > 0 then
        redis.call('ZADD', KEYS[1], 'XX', unpack(updates))
    end
end
return renewed
