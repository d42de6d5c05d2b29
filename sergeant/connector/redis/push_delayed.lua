-- Store payloads that become visible at a given time.
-- KEYS[1] delayed zset, KEYS[2] sequence counter
-- ARGV[1] due time (ms), ARGV[2] priority letter 'H' or 'N', ARGV[3..] payloads
-- Returns how many were stored.
local count = #ARGV - 2
if count <= 0 then
    return 0
end
local first_id = redis.call('INCRBY', KEYS[2], count) - count + 1
local due, priority = ARGV[1], ARGV[2]
for start = 3, #ARGV, 1000 do
    local members = {}
    for index = start, math.min(start + 999, #ARGV) do
        members[#members + 1] = due
        members[#members + 1] = string.format('%016d', first_id + index - 3) .. priority .. ARGV[index]
    end
    redis.call('ZADD', KEYS[1], unpack(members))
end
return count
