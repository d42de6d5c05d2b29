-- Give leased tasks back to the front of their ready list (HIGH ones to HIGH), in the order they were
-- leased, as if they had not been fetched; the released items count as done for their lease.
-- KEYS[1] ready high list, KEYS[2] ready normal list, KEYS[3] lease meta hash, KEYS[4] lease deadlines zset,
-- KEYS[5] leased counter, KEYS[6] lease key prefix: each lease's list '<prefix><id>' and set
--         '<prefix><id>.acked' are built from it (same node; see _functions.lua)
-- ARGV[1..] receipts as runs: lease id, first index, last index (runs of one lease adjacent)
-- Returns how many tasks were given back.
local lease = {meta = KEYS[3], deadlines = KEYS[4], prefix = KEYS[6]}

local function push_front(key, items)
    -- LPUSH puts each argument in front of the previous one: push backwards to keep the order.
    for stop = #items, 1, -CHUNK do
        local chunk = {}
        for index = stop, math.max(stop - CHUNK + 1, 1), -1 do
            chunk[#chunk + 1] = items[index]
        end
        redis.call('LPUSH', key, unpack(chunk))
    end
end

-- Group the runs by lease; newer leases go back first so older ones end up in front of them.
local groups = {}
local position = 1
while position <= #ARGV do
    local last_run = position
    while ARGV[last_run + 3] == ARGV[position] do
        last_run = last_run + 3
    end
    groups[#groups + 1] = {first_run = position, last_run = last_run, id = tonumber(ARGV[position])}
    position = last_run + 3
end
table.sort(groups, function(left, right) return left.id > right.id end)

local released = 0
for _, group in ipairs(groups) do
    local lease_id = ARGV[group.first_run]
    local meta = redis.call('HGET', KEYS[3], lease_id)
    if meta then
        local _, high, size = parse_meta(meta)
        local list_key = KEYS[6] .. lease_id
        local acked_key = list_key .. '.acked'
        local done = done_indexes(acked_key)
        local already = redis.call('SCARD', acked_key)
        local wanted = {}
        for run = group.first_run, group.last_run, 3 do
            for index = tonumber(ARGV[run + 1]), math.min(tonumber(ARGV[run + 2]), size - 1) do
                if not done[index] then
                    done[index] = true
                    wanted[#wanted + 1] = index
                end
            end
        end
        if #wanted > 0 then
            table.sort(wanted)
            local items = redis.call('LRANGE', list_key, 0, -1)
            local to_high, to_normal = {}, {}
            for _, index in ipairs(wanted) do
                if index < high then
                    to_high[#to_high + 1] = items[index + 1]
                else
                    to_normal[#to_normal + 1] = items[index + 1]
                end
            end
            push_front(KEYS[1], to_high)
            push_front(KEYS[2], to_normal)
            if already + #wanted >= size then
                forget_lease(lease, lease_id)
            else
                for start = 1, #wanted, CHUNK do
                    redis.call('SADD', acked_key, unpack(wanted, start, math.min(start + CHUNK - 1, #wanted)))
                end
            end
            released = released + #wanted
        end
    end
end
if released > 0 then
    redis.call('DECRBY', KEYS[5], released)
end
return released
