-- Delete leased tasks for good. A lease id that was re-leased (or never existed) is ignored.
-- KEYS[1] leased hash, KEYS[2] lease deadlines zset
-- ARGV[1..] lease ids
-- Returns how many were deleted.
local deleted = 0
for start = 1, #ARGV, 1000 do
    local stop = math.min(start + 999, #ARGV)
    deleted = deleted + redis.call('HDEL', KEYS[1], unpack(ARGV, start, stop))
    redis.call('ZREM', KEYS[2], unpack(ARGV, start, stop))
end
return deleted
