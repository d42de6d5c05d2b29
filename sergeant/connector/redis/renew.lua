-- Move the deadline of leases that are still held.
-- KEYS[1] lease deadlines zset
-- ARGV[1] new deadline (ms), ARGV[2..] lease ids
-- Returns how many leases were still held.
local deadline = ARGV[1]
local renewed = 0
for start = 2, #ARGV, 1000 do
    local stop = math.min(start + 999, #ARGV)
    local scores = redis.call('ZMSCORE', KEYS[1], unpack(ARGV, start, stop))
    local updates = {}
    for offset, score in ipairs(scores) do
        if score then
            updates[#updates + 1] = deadline
            updates[#updates + 1] = ARGV[start + offset - 1]
        end
    end
    if #updates > 0 then
        redis.call('ZADD', KEYS[1], 'XX', unpack(updates))
        renewed = renewed + #updates / 2
    end
end
return renewed
